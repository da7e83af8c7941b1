//! The verdict journal's write-ahead log: the file a verdict is durable in before
//! it is sent.
//!
//! A redb commit costs ~100 µs of CPU even on tmpfs and ~250 µs on this project's
//! disk (p99 ~1 ms), and at low rates every HTLC paid one before its answer left.
//! Writing a few dozen bytes and `fdatasync`ing them costs the sync alone (~100 µs
//! on disk, nothing on tmpfs). So the journal's writer appends each group commit
//! here, releases its verdicts, and moves the log's contents into the redb file in
//! large transactions now and then (a checkpoint).
//!
//! **Two segments, reused.** The log is two files, `<path>` and `<path>.old`,
//! written in turn. At a checkpoint the writer rotates: appends go on in the other
//! segment, from its start, over records the redb file already holds, and the
//! checkpoint moves the segment just left into the redb file. A rotation is no
//! file-system operation (no rename, create, unlink or directory sync), and an
//! append over bytes already written changes no file metadata, so its `fdatasync`
//! commits no ext4 journal transaction: on the project's disk at 1,000 appends/s,
//! p50 100 / p99 185 µs against 130 / 290 µs for appends that grow a file. The
//! files keep their size across restarts (emptied at a start above 64 MiB, and cut
//! back after a failed append).
//!
//! **Format.** A segment starts with a header: `[magic: 8][key: u64][pass: u64]
//! [first record number: u64]`, all little-endian, written (and synced) each time
//! the segment is taken into use, alone in the segment's first 64 KiB (records
//! start there, so no append ever rewrites the header's sector or page; the gap is
//! a hole in the file, no disk space). The key
//! is random per use and every record carries it, so bytes left from an earlier
//! use, and payment hashes or other sender-chosen bytes inside entries, never pass
//! as a record of the current use (a sender would have to guess 64 random bits).
//! `pass` counts the uses (for people reading a log; opening orders the segments by
//! their records' numbers). Records follow: `[payload length: u32][header crc: u32]
//! [key: u64][number: u64][group first: u64][group last: u64][attempt: u64]
//! [payload crc: u32][payload]`, the header crc covering the length and the 44
//! bytes after it, the payload `[entry count: u32][entries]`. Numbers increase by
//! one; the redb file remembers the highest it has absorbed, so records seen again
//! after a crash are skipped. A header's first record number is a floor: every
//! record below it must be in the redb file (the journal refuses to open if not:
//! a segment was lost or damaged at its end).
//!
//! **Groups.** One `append_all` (one group commit, one sync) writes records
//! `first..=last`, each naming the group and the append's attempt number (a retry
//! after a failed append reuses the numbers, never the attempt). Reading a segment
//! stops at the first record that is short, fails a check, is numbered out of turn
//! or does not continue its group, and drops the records of a group whose last
//! record is missing: that append never completed, so its verdicts were not
//! released as durable (a verdict whose commit fails is sent anyway and kept in
//! memory to be written with the next commit; see the journal). A whole record of
//! the current use found *after* the point where reading stopped, in a group that
//! starts later than the record that stopped it, means damage in the middle (that
//! later group was written after the damaged one was synced and its verdicts
//! sent): the journal refuses to open if the redb file lacks those records, as it
//! does for a record number in both segments or a damaged segment header.
//!
//! What no check can catch: damage to the last synced group(s) of the newest
//! segment reads as a torn end, and the newest segment deleted or replaced by an
//! empty file goes unnoticed (nothing else knows how many records it held).
//!
//! Segments of commits 224b97c and 56638cd (magic `HGWAL2`, records from byte
//! 4096 or 64 KiB: where the use's key finds its first record) are read as such
//! and taken into use in this format at the next start.
//!
//! Logs of versions before the segments (no header, records `[len][crc][number]
//! [count][entries]`, the rotated one at `<path>.old`) are read the old way and
//! emptied at the first start. An older version cannot read this format and may
//! refuse it: after a clean stop that logged every record in the journal file,
//! delete `<path>` and `<path>.old` before starting an older version.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::circuit::CircuitKey;
use crate::kv::KvOp;

/// Largest payload accepted when reading (a corrupt length must not allocate).
const MAX_PAYLOAD: u32 = 256 << 20;
/// A segment's first bytes. The first four, read as a length by versions before
/// the segments, are above [`MAX_PAYLOAD`]: they read no record here.
const MAGIC: [u8; 8] = *b"\xffHGWAL3\n";
/// The same format with records from byte 4096 (commit 224b97c) or 64 KiB
/// (56638cd): read, then taken into use as [`MAGIC`].
const MAGIC_4K: [u8; 8] = *b"\xffHGWAL2\n";
/// Bytes of a segment's header.
const HEADER: usize = 32;
/// Where a segment's records start: the header has its own 64 KiB, so no
/// write-back of records rewrites its page (pages are 4, 16 or 64 KiB).
const DATA_START: usize = 64 << 10;
/// Bytes of a record's header (before its payload).
const RECORD_HEAD: usize = 52;
/// A segment larger than this is emptied when the log starts (it grew during an
/// outage of the checkpoint; the space is given back).
const KEEP_BYTES: u64 = 64 << 20;

/// One change in a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEntry {
    /// A verdict, as the journal encodes it.
    Verdict {
        /// The HTLC.
        key: CircuitKey,
        /// Unix seconds when it was recorded (for pruning).
        time: u64,
        /// The journal's encoding of the verdict.
        entry: Vec<u8>,
    },
    /// A plugin's key-value write or deletion.
    Kv(KvOp),
}

/// One record: a group commit, or part of a large one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// Its sequence number.
    pub seq: u64,
    /// Its changes, in order.
    pub entries: Vec<WalEntry>,
}

/// A segment's use: what its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Use {
    /// Random per use; carried by every record of the use.
    key: u64,
    /// Counts uses across both segments (higher: newer; for people reading a
    /// log, and possibly torn: opening orders segments by their records).
    pass: u64,
    /// The number its first record must have.
    first_seq: u64,
}

impl Use {
    /// A fresh use: a new random key.
    fn new(pass: u64, first_seq: u64) -> std::io::Result<Use> {
        let key = getrandom::u64()
            .map_err(|e| std::io::Error::other(format!("no random key for the log: {e}")))?;
        Ok(Use {
            key,
            pass,
            first_seq,
        })
    }

    fn header(&self) -> [u8; HEADER] {
        let mut h = [0; HEADER];
        h[..8].copy_from_slice(&MAGIC);
        h[8..16].copy_from_slice(&self.key.to_le_bytes());
        h[16..24].copy_from_slice(&self.pass.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        h
    }
}

/// One of the log's two files, open.
struct Segment {
    file: File,
    path: PathBuf,
    /// Its current use.
    at: Use,
    /// Bytes up to the end of its last record (the next record goes here).
    len: u64,
    /// Its last record's number (`first_seq - 1`: none).
    last_seq: u64,
    /// A failed append may have left bytes after `len` that were not cut.
    dirty: bool,
    /// Cuts still to fail, as a failing disk would (tests).
    #[cfg(test)]
    fail_cuts: u32,
}

impl Segment {
    /// Takes the segment into a new use (header written and synced); its records
    /// must all be in the redb file.
    fn begin(&mut self, at: Use) -> std::io::Result<()> {
        self.file.write_all_at(&at.header(), 0)?;
        self.file.sync_data()?;
        self.at = at;
        self.len = DATA_START as u64;
        self.last_seq = at.first_seq - 1;
        self.dirty = false;
        Ok(())
    }

    /// Cuts what a failed append may have left after the last record.
    fn cut(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.dirty && self.fail_cuts > 0 {
            self.fail_cuts -= 1;
            return Err(std::io::Error::other("test: the cut failed"));
        }
        if self.dirty {
            self.file.set_len(self.len)?;
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// The open log: appends go to the current segment.
pub struct Wal {
    cur: Segment,
    /// The segment left at the last rotation (or never used since the start).
    other: Segment,
    /// The next append's attempt number.
    attempt: u64,
    /// Appends still to fail before writing, as a full disk would (tests).
    #[cfg(test)]
    pub fail_appends: u32,
    /// Appends still to fail after their bytes were written, as a failing
    /// `fdatasync` would (tests).
    #[cfg(test)]
    pub fail_syncs: u32,
}

/// The log as found at open: its records, before the log takes appends
/// ([`Recovered::start`], once the records are in the redb file).
pub struct Recovered {
    /// Each file, its path, its length and whether it is of an earlier format
    /// (emptied at the start).
    files: [(File, PathBuf, u64, bool); 2],
    /// The highest `pass` found.
    pass: u64,
    /// Every record, in order.
    pub records: Vec<WalRecord>,
    /// Whole records dropped because their group's last record was missing (a
    /// crash while writing them: that append never completed).
    pub dropped: usize,
    /// Bytes after the last record of a log of an earlier version (a torn last
    /// record). Bytes after a segment's last record are not counted: they are left
    /// from its earlier uses.
    pub ignored_legacy: u64,
    /// Each segment's first record number, from its header (none: a log of an
    /// earlier version, or a header torn while it was written): every record
    /// below it must be in the redb file.
    pub floors: Vec<(PathBuf, u64)>,
    /// Damage found; it matters only if it may have cost records the redb file
    /// does not hold ([`Damage::matters`]).
    pub damage: Vec<Damage>,
}

/// Damage in the log that a torn write cannot explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Reading `path` stopped at byte `stopped_at`, and a whole record of a group
    /// written later follows (record `seq`, at byte `at`): the records between
    /// were synced and their verdicts sent.
    Hole {
        /// The file.
        path: PathBuf,
        /// Where reading stopped.
        stopped_at: usize,
        /// Where the first later record is.
        at: usize,
        /// Its number.
        seq: u64,
        /// The highest number of the later records.
        last: u64,
    },
    /// The header of `path` does not name the records after it (its magic, key
    /// or first number is damaged); records up to `last` are readable without it.
    Header {
        /// The file.
        path: PathBuf,
        /// The highest record number found.
        last: u64,
    },
    /// Records `first..=last` are in both segments.
    Twice {
        /// The segment whose records start first.
        older: PathBuf,
        /// The other.
        newer: PathBuf,
        /// The first record number in both.
        first: u64,
        /// The last.
        last: u64,
    },
}

impl Damage {
    /// Whether records the redb file does not hold (it holds every record up to
    /// `applied`) may be lost or doubtful: otherwise the damaged part is in the
    /// file already and the log is read as it is.
    pub fn matters(&self, applied: u64) -> bool {
        match self {
            Damage::Hole { last, .. } | Damage::Header { last, .. } => *last > applied,
            Damage::Twice { last, .. } => *last > applied,
        }
    }

    /// The file to name first.
    pub fn path(&self) -> &Path {
        match self {
            Damage::Hole { path, .. } | Damage::Header { path, .. } => path,
            Damage::Twice { newer, .. } => newer,
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Hole {
                path,
                stopped_at,
                at,
                seq,
                ..
            } => write!(
                f,
                "{} is damaged: reading stops at byte {stopped_at}, and a whole record (record {seq}, at byte {at}) of a later write follows: not a torn end but a hole: the records in between were synced, and their verdicts may have been sent. Refusing to drop them. {}",
                path.display(),
                WayOut(path),
            ),
            Damage::Header { path, last } => write!(
                f,
                "the header of {} is damaged: records up to {last} follow it that it does not name, so which of them were sent cannot be told. {}",
                path.display(),
                WayOut(path),
            ),
            Damage::Twice {
                older,
                newer,
                first,
                last,
            } => write!(
                f,
                "records {first} to {last} are in both {} and {} (a failed write whose cut was lost, or damage), so which copy was sent cannot be told. Keep a copy of both files; then restore them from a backup, or move both aside to start from what the journal file holds (HTLCs they hold verdicts for are decided again if LND replays them)",
                older.display(),
                newer.display(),
            ),
        }
    }
}

/// What an operator can do about damage in the log `file` belongs to, and what it
/// costs.
struct WayOut<'a>(&'a Path);

impl std::fmt::Display for WayOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = log_path(self.0);
        write!(
            f,
            "Keep a copy of the log's two files ({}, {}); then restore them from a backup, or move both aside to start from what the journal file holds (HTLCs they hold verdicts for are decided again if LND replays them)",
            log.display(),
            old_path(&log).display()
        )
    }
}

/// The log's path, given either of its files.
fn log_path(file: &Path) -> PathBuf {
    match file.to_str().and_then(|s| s.strip_suffix(".old")) {
        Some(p) => PathBuf::from(p),
        None => file.to_path_buf(),
    }
}

/// The log's path for a journal at `journal`: beside it, `.wal` appended.
pub fn path_for(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

/// The log's second segment: `<path>.old` (where versions before the segments
/// kept a rotated log).
pub fn old_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".old");
    PathBuf::from(p)
}

/// Makes the directory entries of `path`'s directory durable (a new file is not
/// found after a power loss until its directory is synced).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// What reading one file found.
struct Scan {
    /// `None`: a log of an earlier version (or an empty file).
    at: Option<Use>,
    /// The header does not name the records after it: the highest record
    /// number readable without it.
    damaged_header: Option<u64>,
    records: Vec<WalRecord>,
    /// Where reading stopped.
    valid: usize,
    dropped: usize,
}

impl Wal {
    /// Opens (or creates) the log at `path` (both segments) and reads its records,
    /// in order. Refuses a log damaged in the middle, or whose segments both hold
    /// a record of the same number, naming the file and the way out.
    pub fn open(path: &Path) -> std::io::Result<Recovered> {
        let second = old_path(path);
        let (f1, b1, new1) = open_file(path)?;
        let (f2, b2, new2) = open_file(&second)?;
        if new1 || new2 {
            sync_dir(path).map_err(|e| in_file(path, "syncing the directory of", e))?;
        }
        let s1 = scan(&b1);
        let s2 = scan(&b2);
        let last_of = |s: &Scan| s.records.last().map(|r| r.seq);
        let last = last_of(&s1).max(last_of(&s2)).unwrap_or(0);
        let mut damage = Vec::new();
        let mut ignored_legacy = 0;
        let mut floors = Vec::new();
        for (p, b, s) in [(path, &b1, &s1), (second.as_path(), &b2, &s2)] {
            damage.extend(hole(p, b, s, last));
            match (s.damaged_header, s.at) {
                (Some(last), _) => damage.push(Damage::Header {
                    path: p.to_path_buf(),
                    last,
                }),
                (None, None) => ignored_legacy += (b.len() - s.valid) as u64,
                // (A torn header: first number 0, no floor.)
                (None, Some(at)) if at.first_seq > 0 => {
                    floors.push((p.to_path_buf(), at.first_seq))
                }
                (None, Some(_)) => {}
            }
        }
        let pass = [&s1, &s2]
            .iter()
            .filter_map(|s| s.at.map(|a| a.pass))
            .max()
            .unwrap_or(0);
        let dropped = s1.dropped + s2.dropped;
        // Emptied at the start: logs of an earlier version, and `HGWAL2` segments
        // (their bytes at 4 or 64 KiB must not be found again under the new format).
        let old_format = |s: &Scan, b: &[u8]| s.at.is_none() || b.get(..8) == Some(&MAGIC_4K[..]);
        let legacy = (old_format(&s1, &b1), old_format(&s2, &b2));
        // The older segment's records first (a log of an earlier version: its
        // rotated file, `<path>.old`, holds the older ones).
        let first_of = |s: &Scan| s.records.first().map_or(u64::MAX, |r| r.seq);
        let ((older, older_path), (newer, newer_path)) = if first_of(&s2) <= first_of(&s1) {
            ((s2, second.as_path()), (s1, path))
        } else {
            ((s1, path), (s2, second.as_path()))
        };
        if let (Some(o), Some(n)) = (older.records.last(), newer.records.first()) {
            if o.seq >= n.seq {
                damage.push(Damage::Twice {
                    older: older_path.to_path_buf(),
                    newer: newer_path.to_path_buf(),
                    first: n.seq,
                    last: o.seq,
                });
            }
        }
        let mut records = older.records;
        records.extend(newer.records);
        Ok(Recovered {
            files: [
                (f1, path.to_path_buf(), b1.len() as u64, legacy.0),
                (f2, second, b2.len() as u64, legacy.1),
            ],
            pass,
            records,
            dropped,
            ignored_legacy,
            floors,
            damage,
        })
    }

    /// The current segment's path.
    pub fn path(&self) -> &Path {
        &self.cur.path
    }

    /// Bytes of records in the current segment.
    pub fn len_bytes(&self) -> u64 {
        self.cur.len - DATA_START as u64
    }

    /// Appends `record` and syncs it to the disk; on return it survives a crash.
    pub fn append(&mut self, record: &WalRecord) -> std::io::Result<()> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends `records` (numbered on from the last one appended, one group) with
    /// one write and one sync; on return they survive a crash. Refuses (nothing
    /// written) records numbered out of turn or a payload the reader would not
    /// accept. After a failure the next append goes where this one did, under a
    /// new attempt number: once that one completes, what the failed one left is
    /// never read (see the module's groups).
    pub fn append_all(&mut self, records: &[WalRecord]) -> std::io::Result<()> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let want = self.cur.last_seq + 1;
        if records
            .iter()
            .enumerate()
            .any(|(i, r)| r.seq != want + i as u64)
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "log records {}..={} do not follow record {} in {}",
                    first.seq,
                    last.seq,
                    self.cur.last_seq,
                    self.cur.path.display()
                ),
            ));
        }
        let attempt = self.attempt;
        self.attempt += 1;
        let mut bytes = Vec::with_capacity(records.iter().map(record_len).sum());
        for r in records {
            let at = bytes.len();
            encode_into(
                &mut bytes,
                r,
                self.cur.at.key,
                (first.seq, last.seq, attempt),
            );
            if bytes.len() - at - RECORD_HEAD > MAX_PAYLOAD as usize {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "log record {} of {} bytes is above the {MAX_PAYLOAD}-byte limit",
                        r.seq,
                        bytes.len() - at
                    ),
                ));
            }
        }
        match self.write_at_end(&bytes) {
            Ok(()) => {
                self.cur.len += bytes.len() as u64;
                self.cur.last_seq = last.seq;
                Ok(())
            }
            Err(e) => {
                // Best effort: what it left would not be read anyway, but a
                // rotation needs the segment to end at its last record (below).
                self.cur.dirty = true;
                if let Err(e) = self.cur.cut() {
                    tracing::warn!(path = %self.cur.path.display(), "cutting what a failed append left failed: {e}; the log is not rotated until it succeeds");
                }
                Err(e)
            }
        }
    }

    fn write_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_appends > 0 {
            self.fail_appends -= 1;
            return Err(std::io::Error::other("test: the disk is full"));
        }
        self.cur.file.write_all_at(bytes, self.cur.len)?;
        #[cfg(test)]
        if self.fail_syncs > 0 {
            self.fail_syncs -= 1;
            return Err(std::io::Error::other("test: fdatasync failed"));
        }
        self.cur.file.sync_data()
    }

    /// Switches appends to the other segment, from its start, and returns the
    /// path of the segment left (its records go to the redb file next).
    /// `in_file_through`: the highest record number the redb file durably holds.
    /// Refused, nothing changed and appends going on where they were, while the
    /// other segment holds a record above it (overwriting it could lose a verdict
    /// already sent), or while a failed append's leftovers cannot be cut from the
    /// segment left (a power loss could then leave a record of that number in
    /// both segments).
    pub fn rotate(&mut self, in_file_through: u64) -> Result<PathBuf, RotateError> {
        if self.other.last_seq > in_file_through {
            return Err(RotateError::NotCheckpointed {
                path: self.other.path.clone(),
                last: self.other.last_seq,
                in_file: in_file_through,
            });
        }
        self.cur.cut().map_err(|error| RotateError::Cut {
            path: self.cur.path.clone(),
            error,
        })?;
        let at =
            Use::new(self.cur.at.pass.wrapping_add(1), self.cur.last_seq + 1).map_err(|error| {
                RotateError::Begin {
                    path: self.other.path.clone(),
                    error,
                }
            })?;
        self.other.begin(at).map_err(|error| RotateError::Begin {
            path: self.other.path.clone(),
            error,
        })?;
        std::mem::swap(&mut self.cur, &mut self.other);
        Ok(self.other.path.clone())
    }
}

impl Recovered {
    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.files[0].1
    }

    /// Takes both segments into a new use, the next record numbered `next_seq`,
    /// appends going to `<path>`: every record read must be in the redb file.
    pub fn start(self, next_seq: u64) -> std::io::Result<Wal> {
        let [(f1, p1, l1, old1), (f2, p2, l2, old2)] = self.files;
        let blank = |file: File, path: PathBuf, len: u64, legacy: bool| {
            // A log of an earlier version is emptied (its records are in the redb
            // file; an older version must not find them again), as is a segment
            // grown during an outage of the checkpoint.
            if (legacy && len > 0) || len > KEEP_BYTES {
                file.set_len(0).map_err(|e| in_file(&path, "emptying", e))?;
            }
            Ok::<_, std::io::Error>(Segment {
                file,
                path,
                at: Use {
                    key: 0,
                    pass: 0,
                    first_seq: next_seq,
                },
                len: DATA_START as u64,
                last_seq: next_seq - 1,
                dirty: false,
                #[cfg(test)]
                fail_cuts: 0,
            })
        };
        let mut other = blank(f2, p2, l2, old2)?;
        let mut cur = blank(f1, p1, l1, old1)?;
        for (seg, pass) in [(&mut other, 1), (&mut cur, 2)] {
            let at = Use::new(self.pass.wrapping_add(pass), next_seq)?;
            let path = seg.path.clone();
            seg.begin(at)
                .map_err(|e| in_file(&path, "taking into use", e))?;
        }
        Ok(Wal {
            cur,
            other,
            attempt: 0,
            #[cfg(test)]
            fail_appends: 0,
            #[cfg(test)]
            fail_syncs: 0,
        })
    }
}

/// `error`, naming what was done to which file.
fn in_file(path: &Path, doing: &str, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{doing} {}: {error}", path.display()))
}

/// Why a rotation was refused (nothing changed; appends go on where they were).
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The other segment still holds records the redb file does not.
    #[error("{} holds records up to {last}, the journal file only up to {in_file}: it is not reused until they are in the file", path.display())]
    NotCheckpointed {
        /// The segment.
        path: PathBuf,
        /// Its highest record number.
        last: u64,
        /// The redb file's highest.
        in_file: u64,
    },
    /// A failed append's leftovers could not be cut from the segment left.
    #[error("cutting what a failed append left in {}: {error}", path.display())]
    Cut {
        /// The segment.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The other segment's header could not be written.
    #[error("taking {} into use: {error}", path.display())]
    Begin {
        /// The segment.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Opens (or creates) one file and reads it whole; whether it was created.
fn open_file(path: &Path) -> std::io::Result<(File, Vec<u8>, bool)> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| in_file(path, "opening", e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| in_file(path, "reading", e))?;
    Ok((file, bytes, !existed))
}

/// Reads one file: a segment, or a log of an earlier version.
fn scan(bytes: &[u8]) -> Scan {
    let data_start = match bytes.get(..8) {
        Some(m) if m == MAGIC => DATA_START,
        Some(m) if m == MAGIC_4K => 4096,
        _ => {
            let (records, valid) = parse_legacy(bytes);
            // Not a log of an earlier version (those start with a record): a
            // segment whose magic is gone.
            let damaged = if records.is_empty() {
                damaged_header(bytes, DATA_START, None).max(damaged_header(bytes, 4096, None))
            } else {
                None
            };
            return Scan {
                at: None,
                damaged_header: damaged,
                records,
                valid: if damaged.is_some() {
                    bytes.len()
                } else {
                    valid as usize
                },
                dropped: 0,
            };
        }
    };
    let Some(h) = bytes.get(..HEADER) else {
        // A header torn while the segment was taken into use: its records were
        // all in the redb file.
        return Scan {
            at: Some(Use {
                key: 0,
                pass: 0,
                first_seq: 0,
            }),
            damaged_header: None,
            records: Vec::new(),
            valid: bytes.len(),
            dropped: 0,
        };
    };
    let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let at = Use {
        key: word(8),
        pass: word(16),
        first_seq: word(24),
    };
    // `HGWAL2` was also written with records from 64 KiB (commit 56638cd): where
    // the use's own first record is (its key is random: conclusive).
    let data_start = if data_start == 4096
        && read_record(bytes, DATA_START, at.key).is_some_and(|(r, _, _)| r.seq == at.first_seq)
    {
        DATA_START
    } else {
        data_start
    };
    let (records, valid, dropped) = parse_use(bytes, data_start, at.key, at.first_seq);
    let damaged_header = if records.is_empty() && dropped == 0 {
        let here = damaged_header(bytes, data_start, Some(at));
        if bytes.get(..8) == Some(&MAGIC_4K[..]) {
            // Either place: a damaged key finds neither (the probe above).
            here.max(damaged_header(bytes, DATA_START, Some(at)))
                .max(damaged_header(bytes, 4096, Some(at)))
        } else {
            here
        }
    } else {
        None
    };
    Scan {
        at: Some(at),
        damaged_header,
        records,
        // A damaged header: reported as such, not as a hole after it too.
        valid: if damaged_header.is_some() {
            bytes.len()
        } else {
            valid
        },
        dropped,
    }
}

/// The whole groups of records of the use keyed `key` whose first record is
/// numbered `first_seq`, from byte `start`: the records, where the last whole
/// group ends, and how many records of an unfinished group follow it.
fn parse_use(
    bytes: &[u8],
    start: usize,
    key: u64,
    first_seq: u64,
) -> (Vec<WalRecord>, usize, usize) {
    let mut records = Vec::new();
    let mut pos = start;
    // End and count of the last whole group.
    let (mut valid, mut whole) = (start.min(bytes.len()), 0);
    let mut group: Option<Group> = None;
    while let Some((rec, g, size)) = read_record(bytes, pos, key) {
        let want = records
            .last()
            .map_or(first_seq, |r: &WalRecord| r.seq.wrapping_add(1));
        let continues = match group {
            // Inside a group: the same group (and attempt), on.
            Some(prev) if rec.seq <= prev.1 => g == prev,
            // A new group starts with this record.
            _ => g.0 == rec.seq,
        };
        if rec.seq != want || !continues {
            break;
        }
        pos += size;
        records.push(rec);
        group = Some(g);
        if records.last().map(|r| r.seq) == Some(g.1) {
            (valid, whole) = (pos, records.len());
        }
    }
    let dropped = records.len() - whole;
    records.truncate(whole);
    (records, valid, dropped)
}

/// A file whose header (`at`; `None`: no magic) names no record, but whose first
/// record place holds whole groups of a use the header does not name (not an
/// earlier use's: those are numbered below the header's first): the header's
/// magic, key or first number is damaged. The highest record number readable.
fn damaged_header(bytes: &[u8], start: usize, at: Option<Use>) -> Option<u64> {
    let key = u64::from_le_bytes(bytes.get(start + 8..start + 16)?.try_into().ok()?);
    let (first, _, _) = read_record(bytes, start, key)?;
    if let Some(at) = at {
        let earlier_use = key != at.key && first.seq < at.first_seq;
        if earlier_use || (key == at.key && first.seq == at.first_seq) {
            return None;
        }
    }
    // Only whole groups count: a torn one (a crash while it was written) was
    // never released as durable, and an earlier use's may be left after a start.
    let (records, _, _) = parse_use(bytes, start, key, first.seq);
    records.last().map(|r| r.seq)
}

/// A record's group commit: its first and last record numbers and the append's
/// attempt number.
type Group = (u64, u64, u64);

/// The record at `pos` of a use keyed `key`: the record, its group and its size,
/// or `None` if none is whole there.
fn read_record(bytes: &[u8], pos: usize, key: u64) -> Option<(WalRecord, Group, usize)> {
    let head = bytes.get(pos..pos.checked_add(RECORD_HEAD)?)?;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    // The use's key first: bytes of any other use (or planted) stop here.
    if word(8) != key {
        return None;
    }
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    if !(4..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let (seq, first, last, attempt) = (word(16), word(24), word(32), word(40));
    if !(first <= seq && seq <= last && last - first < 1 << 32) {
        return None;
    }
    if u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) != head_crc(head) {
        return None;
    }
    let payload = bytes.get(pos + RECORD_HEAD..pos + RECORD_HEAD + len as usize)?;
    if crc32fast::hash(payload) != u32::from_le_bytes(head[48..52].try_into().expect("4 bytes")) {
        return None;
    }
    let entries = decode_entries(payload)?;
    Some((
        WalRecord { seq, entries },
        (first, last, attempt),
        RECORD_HEAD + len as usize,
    ))
}

/// crc32 of a record header's length and the 44 bytes after its checksum.
fn head_crc(head: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[0..4]);
    h.update(&head[8..RECORD_HEAD]);
    h.finalize()
}

/// Damage in the middle of one file: reading stopped, and a whole record follows
/// that was written after the point where it stopped had been synced and its
/// verdicts sent. Dropping it (as a torn end is) could give a replayed HTLC a new
/// verdict, so the journal refuses if the file lacks those records. `last`: the
/// highest record number read in either file (for logs of an earlier version).
fn hole(path: &Path, bytes: &[u8], scan: &Scan, last: u64) -> Option<Damage> {
    // Every later record counts (the journal judges the damage by the highest).
    let mut later = Vec::new();
    let mut from = scan.valid;
    match scan.at {
        Some(at) => {
            // The first record not read: the last read one's successor.
            let stopped = scan.records.last().map_or(at.first_seq, |r| r.seq + 1);
            let mut pos = from;
            while pos < bytes.len() {
                match read_record(bytes, pos, at.key) {
                    // Its group started after the record where reading stopped:
                    // that one's group was synced (and sent) before this was
                    // written. In the same group, it is part of the torn end.
                    Some((rec, (first, _, _), size)) => {
                        if first > stopped {
                            later.push((pos, rec.seq));
                        }
                        pos += size;
                    }
                    None => pos += 1,
                }
            }
        }
        None => {
            from += 1;
            while let Some((at, seq)) = legacy_record_after(bytes, from, last) {
                later.push((at, seq));
                from = at + 1;
            }
        }
    }
    let &(at, seq) = later.first()?;
    Some(Damage::Hole {
        path: path.to_path_buf(),
        stopped_at: scan.valid,
        at,
        seq,
        last: later.iter().map(|&(_, s)| s).max().unwrap_or(seq),
    })
}

/// Bytes `e` takes in a record.
pub fn entry_len(e: &WalEntry) -> usize {
    match e {
        WalEntry::Verdict { entry, .. } => 1 + 24 + 4 + entry.len(),
        WalEntry::Kv(op) => {
            1 + 8 + op.ns.len() + op.key.len() + op.value.as_ref().map_or(0, |v| 4 + v.len())
        }
    }
}

/// Bytes `record` takes in the log.
pub fn record_len(record: &WalRecord) -> usize {
    RECORD_HEAD + 4 + record.entries.iter().map(entry_len).sum::<usize>()
}

/// Encodes `record` for a use keyed `key`, in `group`.
#[cfg(test)]
fn encode(record: &WalRecord, key: u64, group: Group) -> Vec<u8> {
    let mut out = Vec::with_capacity(record_len(record));
    encode_into(&mut out, record, key, group);
    out
}

/// Appends `record`, encoded for a use keyed `key` in `group`, to `out`.
fn encode_into(out: &mut Vec<u8>, record: &WalRecord, key: u64, group: Group) {
    let (first, last, attempt) = group;
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEAD]);
    out.extend_from_slice(&(record.entries.len() as u32).to_le_bytes());
    encode_entries(out, &record.entries);
    let rec = &mut out[start..];
    let len = (rec.len() - RECORD_HEAD) as u32;
    let pcrc = crc32fast::hash(&rec[RECORD_HEAD..]);
    rec[0..4].copy_from_slice(&len.to_le_bytes());
    rec[8..16].copy_from_slice(&key.to_le_bytes());
    rec[16..24].copy_from_slice(&record.seq.to_le_bytes());
    rec[24..32].copy_from_slice(&first.to_le_bytes());
    rec[32..40].copy_from_slice(&last.to_le_bytes());
    rec[40..48].copy_from_slice(&attempt.to_le_bytes());
    rec[48..52].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = head_crc(&rec[..RECORD_HEAD]);
    rec[4..8].copy_from_slice(&hcrc.to_le_bytes());
}

fn encode_entries(p: &mut Vec<u8>, entries: &[WalEntry]) {
    for e in entries {
        match e {
            WalEntry::Verdict { key, time, entry } => {
                p.push(1);
                p.extend_from_slice(&key.chan_id.to_le_bytes());
                p.extend_from_slice(&key.htlc_id.to_le_bytes());
                p.extend_from_slice(&time.to_le_bytes());
                put_bytes(p, entry);
            }
            WalEntry::Kv(op) => {
                p.push(if op.value.is_some() { 2 } else { 3 });
                put_bytes(p, op.ns.as_bytes());
                put_bytes(p, &op.key);
                if let Some(v) = &op.value {
                    put_bytes(p, v);
                }
            }
        }
    }
}

fn put_bytes(p: &mut Vec<u8>, b: &[u8]) {
    p.extend_from_slice(&(b.len() as u32).to_le_bytes());
    p.extend_from_slice(b);
}

/// Encodes `record` as versions before the segments did:
/// `[len][crc32][seq][count][entries]` (tests of the upgrade).
#[cfg(test)]
pub(crate) fn encode_legacy(record: &WalRecord) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&record.seq.to_le_bytes());
    p.extend_from_slice(&(record.entries.len() as u32).to_le_bytes());
    encode_entries(&mut p, &record.entries);
    let mut out = Vec::with_capacity(p.len() + 8);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

/// The records a log file holds and where each starts (tests).
#[cfg(test)]
pub(crate) fn read_file(path: &Path) -> (Vec<WalRecord>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let s = scan(&bytes);
    let key = s.at.expect("a segment").key;
    let mut starts = Vec::new();
    let mut pos = DATA_START;
    for _ in &s.records {
        starts.push(pos);
        pos += read_record(&bytes, pos, key).expect("a record").2;
    }
    (s.records, starts)
}

/// Writes a segment of the 4 KiB-start format by hand (tests).
#[cfg(test)]
pub(crate) fn write_segment_4k(path: &Path, first_seq: u64, records: &[WalRecord]) {
    write_segment_as(path, MAGIC_4K, 4096, 1, first_seq, records);
}

/// Where each group of a segment's records starts (tests).
#[cfg(test)]
pub(crate) fn group_starts(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let s = scan(&bytes);
    let key = s.at.expect("a segment").key;
    let mut starts = Vec::new();
    let mut pos = DATA_START;
    for r in &s.records {
        let (_, (first, _, _), size) = read_record(&bytes, pos, key).expect("a record");
        if first == r.seq {
            starts.push(pos);
        }
        pos += size;
    }
    starts
}

/// Writes a segment by hand: its use `pass`, first record `first_seq`, one group
/// per record (tests).
#[cfg(test)]
pub(crate) fn write_segment(path: &Path, pass: u64, first_seq: u64, records: &[WalRecord]) {
    write_segment_as(path, MAGIC, DATA_START, pass, first_seq, records);
}

/// Writes a segment of the format `magic` whose records start at `start`.
#[cfg(test)]
fn write_segment_as(
    path: &Path,
    magic: [u8; 8],
    start: usize,
    pass: u64,
    first_seq: u64,
    records: &[WalRecord],
) {
    let at = Use {
        key: 0x5eed,
        pass,
        first_seq,
    };
    let mut bytes = at.header().to_vec();
    bytes[..8].copy_from_slice(&magic);
    bytes.resize(start, 0);
    for (i, r) in records.iter().enumerate() {
        encode_into(&mut bytes, r, at.key, (r.seq, r.seq, i as u64));
    }
    std::fs::write(path, bytes).unwrap();
}

/// A log of an earlier version: the first whole record (offset, number) after
/// byte `from` numbered after `last` (its number comes first in its payload:
/// cheap to check before its checksum).
fn legacy_record_after(bytes: &[u8], from: usize, last: u64) -> Option<(usize, u64)> {
    (from..bytes.len().saturating_sub(8 + 8)).find_map(|at| {
        let header = &bytes[at..at + 8];
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        if !(12..=MAX_PAYLOAD).contains(&len) {
            return None;
        }
        let payload = bytes.get(at + 8..at + 8 + len as usize)?;
        let seq = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
        if seq <= last || seq > last.saturating_add(1 << 32) {
            return None;
        }
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        (crc32fast::hash(payload) == crc && decode_legacy(payload).is_some()).then_some((at, seq))
    })
}

/// A log of an earlier version: the records at the start of `bytes` and how many
/// bytes they take.
fn parse_legacy(bytes: &[u8]) -> (Vec<WalRecord>, u64) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = decode_legacy(payload) else {
            break;
        };
        records.push(record);
        at += 8 + len as usize;
    }
    (records, at as u64)
}

fn decode_legacy(payload: &[u8]) -> Option<WalRecord> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().expect("8 bytes"));
    let entries = decode_entries(&payload[8..])?;
    Some(WalRecord { seq, entries })
}

/// Reads little-endian fields off the front of a byte slice (the log's records
/// and the journal's entries); every read is `None` past the end.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }
    /// Whether every byte was read.
    pub(crate) fn is_done(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub(crate) fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(<[u8]>::to_vec)
    }
}

fn decode_entries(payload: &[u8]) -> Option<Vec<WalEntry>> {
    let mut r = Reader::new(payload);
    let n = r.u32()?;
    let mut entries = Vec::with_capacity((n as usize).min(4096));
    for _ in 0..n {
        let e = match r.u8()? {
            1 => WalEntry::Verdict {
                key: CircuitKey {
                    chan_id: r.u64()?,
                    htlc_id: r.u64()?,
                },
                time: r.u64()?,
                entry: r.bytes()?,
            },
            tag @ (2 | 3) => {
                let ns: Arc<str> = Arc::from(String::from_utf8(r.bytes()?).ok()?);
                let key = r.bytes()?;
                let value = if tag == 2 { Some(r.bytes()?) } else { None };
                WalEntry::Kv(KvOp { ns, key, value })
            }
            _ => return None,
        };
        entries.push(e);
    }
    if !r.is_done() {
        return None;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> WalRecord {
        WalRecord {
            seq,
            entries: vec![
                WalEntry::Verdict {
                    key: CircuitKey {
                        chan_id: u64::MAX,
                        htlc_id: seq,
                    },
                    time: 1_700_000_000,
                    entry: vec![1, 2, 3, seq as u8],
                },
                WalEntry::Kv(KvOp {
                    ns: Arc::from("rate-limit"),
                    key: b"peer/02ab".to_vec(),
                    value: Some(vec![0; 40]),
                }),
                WalEntry::Kv(KvOp {
                    ns: Arc::from("rate-limit"),
                    key: Vec::new(),
                    value: None,
                }),
                WalEntry::Kv(KvOp {
                    ns: Arc::from("x"),
                    key: b"k".to_vec(),
                    value: Some(Vec::new()),
                }),
            ],
        }
    }

    /// A record with one verdict whose entry bytes are `entry` (a sender can
    /// choose 32 of them: the payment hash).
    fn carrying(seq: u64, entry: Vec<u8>) -> WalRecord {
        WalRecord {
            seq,
            entries: vec![WalEntry::Verdict {
                key: CircuitKey {
                    chan_id: 1,
                    htlc_id: seq,
                },
                time: 1_700_000_000,
                entry,
            }],
        }
    }

    fn recs(range: std::ops::RangeInclusive<u64>) -> Vec<WalRecord> {
        range.map(record).collect()
    }

    /// Opens the log at `path` and starts it (records read, next numbered after them).
    fn reopen(path: &Path) -> (Wal, Vec<WalRecord>) {
        let r = Wal::open(path).unwrap();
        let next = r.records.last().map_or(1, |r| r.seq + 1);
        let records = r.records.clone();
        (r.start(next).unwrap(), records)
    }

    #[test]
    fn records_survive_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, read) = reopen(&path);
            assert!(read.is_empty());
            wal.append(&record(1)).unwrap();
            wal.append_all(&recs(2..=3)).unwrap();
        }
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, recs(1..=3));
        assert_eq!((r.dropped, r.ignored_legacy), (0, 0));
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, _) = reopen(&path);
            wal.append(&record(1)).unwrap();
            wal.append(&record(2)).unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        let two = record_len(&record(2));
        // Every cut inside record 2: record 1 survives, nothing refuses.
        for cut in full.len() - two..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let r = Wal::open(&path).unwrap();
            assert_eq!(r.records, vec![record(1)], "cut at {cut}");
            let mut wal = r.start(2).unwrap();
            wal.append(&record(2)).unwrap();
            drop(wal);
            assert_eq!(Wal::open(&path).unwrap().records, vec![record(2)]);
        }
    }

    #[test]
    fn damage_followed_by_a_later_group_is_reported_naming_the_place_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, _) = reopen(&path);
            for s in 1..=3 {
                wal.append(&record(s)).unwrap();
            }
        }
        let (_, starts) = read_file(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        // Not a torn end: record 3 was written (synced, its verdicts sent) after
        // the damaged record 2, in a group of its own.
        bytes[starts[1] + RECORD_HEAD + 6] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(1)]);
        let [d] = &r.damage[..] else {
            panic!("{:?}", r.damage);
        };
        assert!(
            matches!(
                d,
                Damage::Hole {
                    seq: 3,
                    last: 3,
                    ..
                }
            ),
            "{d:?}"
        );
        // It matters unless the journal file holds record 3 (and so 2).
        assert!(d.matters(2));
        assert!(!d.matters(3));
        let msg = d.to_string();
        for part in [
            &format!("byte {}", starts[1]),
            "record 3",
            "j.wal ",
            "j.wal.old",
            "move both aside",
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
        // Untouched: the operator decides.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // Damage in the last record is a torn end.
        let mut last = std::fs::read(&path).unwrap();
        last[starts[1] + RECORD_HEAD + 6] ^= 0x10;
        last[starts[2] + 2] ^= 0x01;
        std::fs::write(&path, &last).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!((r.records, r.damage), (recs(1..=2), vec![]));
        // A tail of zeros (a preallocated or torn write-back) is a torn end too.
        let zeros = [&last[..starts[1]], &[0; 4096][..]].concat();
        std::fs::write(&path, &zeros).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!((r.records, r.damage), (vec![record(1)], vec![]));
    }

    #[test]
    fn a_group_torn_in_its_middle_is_dropped_whole_and_is_no_hole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, _) = reopen(&path);
            wal.append(&record(1)).unwrap();
            // One group commit of three records.
            wal.append_all(&recs(2..=4)).unwrap();
        }
        let (_, starts) = read_file(&path);
        let good = std::fs::read(&path).unwrap();
        // An overwrite in place can reach the disk in any order: record 3 lost,
        // records 2 and 4 whole. None of the group was sent.
        let mut bytes = good.clone();
        bytes[starts[2] + RECORD_HEAD + 6] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(1)]);
        assert_eq!(r.dropped, 1);
        assert!(r.damage.is_empty(), "{:?}", r.damage);
        // Its last record missing: the same.
        std::fs::write(&path, &good[..starts[3] + 10]).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(1)]);
        assert_eq!(r.dropped, 2);
    }

    #[test]
    fn a_reused_segment_reads_only_its_current_use_and_never_refuses_over_its_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        // Bytes a sender can plant inside an entry (a payment hash and around):
        // a whole record of the old format numbered past everything, and
        // records of this format under keys it might guess.
        let mut planted = encode_legacy(&carrying(u32::MAX as u64, Vec::new()));
        for key in [0, 1, u64::MAX] {
            planted.extend(encode(
                &carrying(1 << 31, Vec::new()),
                key,
                (1 << 31, 1 << 31, 0),
            ));
            planted.extend(encode(&record(7), key, (5, 9, 1)));
        }
        let mut next = 1;
        let mut entry = |wal: &mut Wal, n: u64| {
            for _ in 0..n {
                wal.append(&carrying(next, planted.clone())).unwrap();
                next += 1;
            }
        };
        let (mut wal, _) = reopen(&path);
        // Uses with fewer records each: old records and planted bytes stay
        // behind every new use's end, in both segments.
        entry(&mut wal, 6);
        wal.rotate(0).unwrap();
        entry(&mut wal, 5);
        wal.rotate(6).unwrap();
        entry(&mut wal, 2);
        wal.rotate(11).unwrap();
        entry(&mut wal, 1);
        drop(wal);
        let size = std::fs::metadata(&path).unwrap().len();
        let r = Wal::open(&path).unwrap();
        let seqs: Vec<u64> = r.records.iter().map(|r| r.seq).collect();
        // 12-13 in `path`, 14 in `.old`: nothing older, nothing planted.
        assert_eq!(seqs, vec![12, 13, 14]);
        assert_eq!((r.dropped, r.ignored_legacy), (0, 0));
        // A restart keeps the segments' size (written over, not grown).
        let mut wal = r.start(15).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        wal.append(&record(15)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().records, vec![record(15)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    }

    #[test]
    fn what_a_failed_append_left_is_never_read_after_a_shorter_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append(&record(1)).unwrap();
        // Written, but the sync failed: records 2-3 were never acknowledged.
        let two = carrying(2, vec![9; 3]);
        wal.fail_syncs = 1;
        assert!(wal.append_all(&[two.clone(), record(3)]).is_err());
        // Even if the cut after it is lost: put the group back as a power loss
        // might leave it (attempt 1: record 1 was attempt 0), then retry with a
        // shorter group (the same record 2): the failed group's record 3 directly
        // follows the retry's last record (a new group must start with its
        // first record: this one does not).
        let end = wal.cur.len;
        let key = wal.cur.at.key;
        let leftover = [
            encode(&two, key, (2, 3, 1)),
            encode(&record(3), key, (2, 3, 1)),
        ]
        .concat();
        wal.cur.file.write_all_at(&leftover, end).unwrap();
        wal.append(&two).unwrap();
        drop(wal);
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(1), two.clone()]);
        assert_eq!(r.dropped, 0);
        // A retry of the same group torn halfway (its record 2 written over the
        // failed attempt's, the failed attempt's record 3 still there): the
        // records of two attempts never make a group.
        let (mut wal, _) = reopen(&path);
        wal.append(&record(3)).unwrap();
        let (end, key, attempt) = (wal.cur.len, wal.cur.at.key, wal.attempt);
        let failed = [
            encode(&record(4), key, (4, 5, attempt)),
            encode(&record(5), key, (4, 5, attempt)),
        ]
        .concat();
        wal.cur.file.write_all_at(&failed, end).unwrap();
        let retry = encode(&record(4), key, (4, 5, attempt + 1));
        wal.cur.file.write_all_at(&retry, end).unwrap();
        drop(wal);
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(3)]);
        assert_eq!(r.dropped, 1);
    }

    #[test]
    fn a_failed_cut_holds_the_rotation_until_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append(&record(1)).unwrap();
        // The sync fails, then the cut after it, then the cut at the rotation.
        wal.fail_syncs = 1;
        wal.cur.fail_cuts = 2;
        assert!(wal.append_all(&recs(2..=3)).is_err());
        let Err(e) = wal.rotate(1) else {
            panic!("rotated away from uncut leftovers");
        };
        assert!(matches!(e, RotateError::Cut { .. }), "{e:?}");
        assert!(e.to_string().contains("j.wal"), "{e}");
        // Appends go on in the same segment; the next rotation cuts and goes.
        wal.append(&record(2)).unwrap();
        assert_eq!(wal.rotate(1).unwrap(), path);
        wal.append(&record(3)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().records, recs(1..=3));
    }

    #[test]
    fn a_segment_whose_records_are_not_in_the_file_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append(&record(1)).unwrap();
        assert_eq!(wal.rotate(0).unwrap(), path);
        wal.append(&record(2)).unwrap();
        let Err(e) = wal.rotate(0) else {
            panic!("reused a segment holding record 1");
        };
        assert!(
            matches!(
                e,
                RotateError::NotCheckpointed {
                    last: 1,
                    in_file: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("j.wal"), "{e}");
        // Nothing changed: appends go on where they were.
        wal.append(&record(3)).unwrap();
        // Record 1 in the file: `path` is reused, written over from its start.
        assert_eq!(wal.rotate(1).unwrap(), old_path(&path));
        wal.append(&record(4)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().records, recs(2..=4));
    }

    #[test]
    fn one_record_number_in_both_segments_refuses_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append_all(&recs(1..=2)).unwrap();
        // As a failed sync of record 3 whose bytes reached the disk and whose
        // cut did not, before the retry went to the other segment.
        let key = wal.cur.at.key;
        let end = wal.cur.len;
        wal.rotate(0).unwrap();
        wal.append(&record(3)).unwrap();
        drop(wal);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&encode(&record(3), key, (3, 3, 9)), end)
            .unwrap();
        drop(f);
        let r = Wal::open(&path).unwrap();
        let [d] = &r.damage[..] else {
            panic!("{:?}", r.damage);
        };
        assert!(
            matches!(
                d,
                Damage::Twice {
                    first: 3,
                    last: 3,
                    ..
                }
            ),
            "{d:?}"
        );
        assert!(d.matters(2) && !d.matters(3));
        let msg = d.to_string();
        for part in [
            "records 3 to 3 are in both",
            "j.wal ",
            "j.wal.old",
            "move both aside",
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
    }

    #[test]
    fn a_damaged_segment_header_is_reported_and_the_segment_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append_all(&recs(1..=2)).unwrap();
        drop(wal);
        let good = std::fs::read(&path).unwrap();
        // The magic gone (not a log of an earlier version: a record follows), the
        // key or the first record number damaged.
        for (at, what) in [(0, "magic"), (9, "key"), (25, "first number")] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            let r = Wal::open(&path).unwrap();
            let [d] = &r.damage[..] else {
                panic!("{what}: {:?}", r.damage);
            };
            assert!(matches!(d, Damage::Header { last: 2, .. }), "{what}: {d:?}");
            // It matters unless the journal file holds records 1-2.
            assert!(d.matters(1) && !d.matters(2), "{what}");
            assert!(r.floors.iter().all(|(p, _)| p != &path), "{what}");
            let msg = d.to_string();
            for part in ["header of", "j.wal ", "j.wal.old", "move both aside"] {
                assert!(msg.contains(part), "{what}: {part:?} not in: {msg}");
            }
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}");
        }
        // A segment just taken into use over an earlier use's records is healthy.
        std::fs::write(&path, &good).unwrap();
        let (mut wal, _) = reopen(&path);
        wal.rotate(2).unwrap();
        wal.rotate(2).unwrap();
        drop(wal);
        let r = Wal::open(&path).unwrap();
        assert!(r.records.is_empty() && r.damage.is_empty());
    }

    #[test]
    fn a_torn_first_commit_left_at_a_start_is_no_damage_at_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        // A use's first commit, two records, torn (its second one cut).
        wal.append_all(&recs(1..=2)).unwrap();
        drop(wal);
        let (_, starts) = read_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..starts[1] + 10]).unwrap();
        // Started again from record 1 (nothing was read): both segments are new
        // uses numbered from 1, record 1 of the torn commit still in place.
        let r = Wal::open(&path).unwrap();
        assert!(r.records.is_empty() && r.damage.is_empty());
        assert_eq!(r.dropped, 1);
        drop(r.start(1).unwrap());
        let r = Wal::open(&path).unwrap();
        assert!(r.records.is_empty(), "{:?}", r.records);
        assert!(r.damage.is_empty(), "{:?}", r.damage);
    }

    #[test]
    fn segments_of_56638cd_with_the_same_magic_but_records_at_64k_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        for p in [path.clone(), old_path(&path)] {
            let (first, records) = if p == path {
                (1, recs(1..=3))
            } else {
                (4, recs(4..=5))
            };
            write_segment(&p, 1, first, &records);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[..8].copy_from_slice(&MAGIC_4K);
            std::fs::write(&p, bytes).unwrap();
        }
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, recs(1..=5));
        assert!(r.damage.is_empty(), "{:?}", r.damage);
        drop(r);
        // Its header's key damaged: the probe finds nothing at 64 KiB, and the
        // damage is still found there.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let r = Wal::open(&path).unwrap();
        assert!(
            matches!(r.damage[..], [Damage::Header { last: 3, .. }]),
            "{:?}",
            r.damage
        );
    }

    #[test]
    fn segments_of_the_4k_format_are_read_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        write_segment_4k(&path, 1, &recs(1..=2));
        write_segment_4k(&old_path(&path), 3, &[]);
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, recs(1..=2));
        assert!(r.damage.is_empty(), "{:?}", r.damage);
        assert_eq!(r.floors.len(), 2);
        let mut wal = r.start(3).unwrap();
        wal.append(&record(3)).unwrap();
        drop(wal);
        // Emptied at the start: none of its old bytes is left at 4 KiB.
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[HEADER..DATA_START].iter().all(|b| *b == 0));
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(3)]);
        assert!(r.damage.is_empty(), "{:?}", r.damage);
    }

    #[test]
    fn appends_out_of_turn_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append(&record(1)).unwrap();
        let e = wal.append(&record(3)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("do not follow record 1"), "{e}");
        let e = wal.append_all(&[record(2), record(4)]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        wal.append(&record(2)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().records, recs(1..=2));
    }

    #[test]
    fn a_log_of_an_earlier_version_is_read_in_order_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        // The rename scheme: a rotated log at `.old`, the current one, a torn end.
        let legacy = |r: std::ops::RangeInclusive<u64>| {
            r.map(|s| encode_legacy(&record(s)))
                .collect::<Vec<_>>()
                .concat()
        };
        std::fs::write(old_path(&path), legacy(1..=2)).unwrap();
        let torn = encode_legacy(&record(4));
        std::fs::write(&path, [legacy(3..=3), torn[..20].to_vec()].concat()).unwrap();
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, recs(1..=3));
        assert_eq!(r.ignored_legacy, 20);
        let mut wal = r.start(4).unwrap();
        wal.append(&record(4)).unwrap();
        drop(wal);
        let r = Wal::open(&path).unwrap();
        assert_eq!(r.records, vec![record(4)]);
        assert_eq!(r.ignored_legacy, 0);
        // The old files were emptied: an older version finds none of their records.
        assert_eq!(
            std::fs::metadata(old_path(&path)).unwrap().len(),
            HEADER as u64
        );
        for p in [path.clone(), old_path(&path)] {
            let bytes = std::fs::read(&p).unwrap();
            assert!(parse_legacy(&bytes).0.is_empty(), "{}", p.display());
            assert_eq!(legacy_record_after(&bytes, 1, 0), None, "{}", p.display());
        }
        // Damage in its middle still refuses.
        let mut bytes = legacy(1..=3);
        bytes[encode_legacy(&record(1)).len() + 20] ^= 0x10;
        std::fs::remove_file(old_path(&path)).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let r = Wal::open(&path).unwrap();
        assert!(
            matches!(r.damage[..], [Damage::Hole { seq: 3, .. }]),
            "{:?}",
            r.damage
        );
    }

    #[test]
    fn an_older_version_reads_no_record_from_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _) = reopen(&path);
        wal.append_all(&recs(1..=3)).unwrap();
        drop(wal);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(parse_legacy(&bytes), (Vec::new(), 0));
        assert_eq!(legacy_record_after(&bytes, 1, 0), None);
    }

    #[test]
    fn a_torn_segment_header_reads_as_an_empty_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        std::fs::write(&path, &MAGIC[..]).unwrap();
        std::fs::write(old_path(&path), [&MAGIC[..], &[7; 9]].concat()).unwrap();
        let r = Wal::open(&path).unwrap();
        assert!(r.records.is_empty());
        // No floor from a torn header, and the files are not taken for logs of
        // an earlier version (those are emptied).
        assert!(r.floors.is_empty());
        let mut wal = r.start(40).unwrap();
        wal.append(&record(40)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().records, vec![record(40)]);
    }

    #[test]
    fn a_segment_grown_past_the_keep_size_is_emptied_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (wal, _) = reopen(&path);
        drop(wal);
        let f = OpenOptions::new()
            .write(true)
            .open(old_path(&path))
            .unwrap();
        f.set_len(KEEP_BYTES + 1).unwrap();
        drop(f);
        let (_, read) = reopen(&path);
        assert!(read.is_empty());
        assert_eq!(
            std::fs::metadata(old_path(&path)).unwrap().len(),
            HEADER as u64
        );
    }

    #[test]
    fn the_log_sits_beside_the_journal() {
        assert_eq!(
            path_for(Path::new("/var/lib/htlcgate/journal.redb")),
            PathBuf::from("/var/lib/htlcgate/journal.redb.wal")
        );
    }
}
