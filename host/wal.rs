//! The verdict journal's write-ahead log: the file a verdict is durable in before
//! it is sent.
//!
//! A redb commit costs ~100 µs of CPU even on tmpfs and ~250 µs on this project's
//! disk (p99 ~1 ms), and at low rates every HTLC paid one before its answer left.
//! Appending a few dozen bytes and `fdatasync`ing them costs the sync alone (~95 µs
//! on disk, nothing on tmpfs). So the journal's writer appends each group commit
//! here, releases its verdicts, and moves the log's contents into the redb file in
//! large transactions now and then (a checkpoint), after which the log is emptied.
//!
//! Format: a sequence of records, each `[payload length: u32 LE][crc32 of the
//! payload: u32 LE][payload]`, the payload being `[seq: u64 LE][entry count: u32
//! LE][entries]`. Sequence numbers increase by one per record; the redb file
//! remembers the highest one it has absorbed, so a record seen again after a crash
//! between a checkpoint and the emptying of the log is skipped. Reading stops at
//! the first record that is short or fails its checksum: only the last record can
//! be torn (a crash while appending it), and nothing in it was released.
//!
//! A checkpoint runs beside the appends: the log is rotated first (renamed to
//! `<path>.old`, a fresh `<path>` takes the next appends) and the old file is
//! deleted once the redb file holds its records. Opening reads `.old` (if a crash
//! left one) before the current file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::circuit::CircuitKey;
use crate::kv::KvOp;

/// Largest payload accepted when reading (a corrupt length must not allocate).
const MAX_PAYLOAD: u32 = 256 << 20;

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

/// One group commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    /// Its sequence number.
    pub seq: u64,
    /// Its changes, in order.
    pub entries: Vec<WalEntry>,
}

/// The open log.
pub struct Wal {
    /// The file.
    file: File,
    /// Its path, for messages.
    path: PathBuf,
    /// Bytes of valid records (the next record goes here).
    len: u64,
    /// A rotation failed halfway and could not be undone: this log's file is now
    /// named `<path>.old` (appends still go to it). Never delete that file.
    stuck: bool,
    /// Appends still to fail, as a full or failing disk would (tests).
    #[cfg(test)]
    pub fail_appends: u32,
}

/// The log's path for a journal at `journal`: beside it, `.wal` appended.
pub fn path_for(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

/// Where a rotated log waits for its checkpoint: `<path>.old`.
pub fn old_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".old");
    PathBuf::from(p)
}

/// Makes the directory entries of `path`'s directory durable (a new or renamed
/// file is not found after a power loss until its directory is synced).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens (or creates) the log at `path` and reads its records: those of a
    /// rotated log left at `<path>.old` first, then its own. A torn or corrupt tail
    /// is reported as the number of bytes ignored.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<WalRecord>, u64)> {
        let mut records = Vec::new();
        let mut ignored = 0;
        match std::fs::read(old_path(path)) {
            Ok(bytes) => {
                let (old, valid) = parse(&bytes);
                refuse_hole(&old_path(path), &bytes, valid, &old)?;
                records.extend(old);
                ignored += bytes.len() as u64 - valid;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if !existed {
            sync_dir(path)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (own, valid) = parse(&bytes);
        refuse_hole(path, &bytes, valid, &own)?;
        records.extend(own);
        ignored += bytes.len() as u64 - valid;
        Ok((
            Wal {
                file,
                path: path.to_path_buf(),
                len: valid,
                stuck: false,
                #[cfg(test)]
                fail_appends: 0,
            },
            records,
            ignored,
        ))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the log.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Appends `record` and syncs it to the disk; on return it survives a crash.
    /// On failure the log is cut back to its previous end (best effort), so the
    /// next record follows the last good one.
    pub fn append(&mut self, record: &WalRecord) -> std::io::Result<()> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends `records` with one write and one sync. Refuses (nothing written) a
    /// record whose payload the reader would not accept.
    pub fn append_all(&mut self, records: &[WalRecord]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for r in records {
            let b = encode(r);
            if b.len() - 8 > MAX_PAYLOAD as usize {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "log record {} of {} bytes is above the {MAX_PAYLOAD}-byte limit",
                        r.seq,
                        b.len()
                    ),
                ));
            }
            bytes.extend_from_slice(&b);
        }
        let res = self.write_at_end(&bytes);
        match res {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    fn write_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        #[cfg(test)]
        if self.fail_appends > 0 {
            self.fail_appends -= 1;
            return Err(std::io::Error::other("test: the disk is full"));
        }
        self.file.write_all_at(bytes, self.len)?;
        self.file.sync_data()
    }

    /// Empties the log and removes a rotated one (after all their records are
    /// in the redb file).
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        self.file.flush()?;
        self.file.sync_data()?;
        Wal::remove_old(&self.path)
    }

    /// Moves the log aside to `<path>.old` (which must be gone: its records in the
    /// redb file) and starts an empty one; returns the old file's path. Appends
    /// after this go to the new file.
    pub fn rotate(&mut self) -> std::io::Result<PathBuf> {
        let old = old_path(&self.path);
        match std::fs::symlink_metadata(&old) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Its records may not be in the redb file yet: never replace it.
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} is still waiting for its checkpoint", old.display()),
                ))
            }
            Err(e) => return Err(e),
        }
        // Cut whatever a failed append left after the last good record: the
        // rotated file must hold nothing but whole records.
        self.file.set_len(self.len)?;
        std::fs::rename(&self.path, &old)?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) => {
                // Back as it was: the log keeps its name and its appends.
                if std::fs::rename(&old, &self.path).is_err() {
                    self.stuck = true;
                }
                return Err(e);
            }
        };
        // The rename and the new file must survive a power loss before a record
        // in the new file is called durable. If that fails, appends stay in the
        // old file (now at `<path>.old`, read at the next start) for good.
        if let Err(e) = sync_dir(&self.path) {
            self.stuck = true;
            return Err(e);
        }
        self.file = file;
        self.len = 0;
        Ok(old)
    }

    /// Whether a rotation failed halfway (the live log is at `<path>.old`).
    pub fn is_stuck(&self) -> bool {
        self.stuck
    }

    /// Deletes the rotated log of `path`, if any.
    pub fn remove_old(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(old_path(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Bytes `e` takes in a record.
pub fn entry_len(e: &WalEntry) -> usize {
    match e {
        WalEntry::Verdict { entry, .. } => 1 + 24 + 4 + entry.len(),
        WalEntry::Kv(op) => {
            1 + 12 + op.ns.len() + op.key.len() + op.value.as_ref().map_or(0, Vec::len)
        }
    }
}

/// Encodes `record` with its length and checksum.
pub fn encode(record: &WalRecord) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 * record.entries.len() + 12);
    p.extend_from_slice(&record.seq.to_le_bytes());
    p.extend_from_slice(&(record.entries.len() as u32).to_le_bytes());
    for e in &record.entries {
        match e {
            WalEntry::Verdict { key, time, entry } => {
                p.push(1);
                p.extend_from_slice(&key.chan_id.to_le_bytes());
                p.extend_from_slice(&key.htlc_id.to_le_bytes());
                p.extend_from_slice(&time.to_le_bytes());
                put_bytes(&mut p, entry);
            }
            WalEntry::Kv(op) => {
                p.push(if op.value.is_some() { 2 } else { 3 });
                put_bytes(&mut p, op.ns.as_bytes());
                put_bytes(&mut p, &op.key);
                if let Some(v) = &op.value {
                    put_bytes(&mut p, v);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(p.len() + 8);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

fn put_bytes(p: &mut Vec<u8>, b: &[u8]) {
    p.extend_from_slice(&(b.len() as u32).to_le_bytes());
    p.extend_from_slice(b);
}

/// Refuses a log whose unreadable part (from byte `valid` on) is followed by a
/// whole record numbered after the readable ones: that is damage in the middle,
/// not a torn tail, and the records after it were fsync'd and their verdicts
/// sent. Dropping them (as a torn tail is) could give a replayed HTLC a new
/// verdict, so the operator decides.
fn refuse_hole(path: &Path, bytes: &[u8], valid: u64, read: &[WalRecord]) -> std::io::Result<()> {
    let last = read.last().map_or(0, |r| r.seq);
    let Some((at, seq)) = record_after(bytes, valid as usize, last) else {
        return Ok(());
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{} is damaged at byte {valid}, and a whole record (record {seq}, at byte {at}) follows the damage: not a torn end but a hole: the records after it were written later, and their verdicts may have been sent. Refusing to drop them. Keep a copy of the file; then restore it from a backup, or move it aside to start without it (HTLCs it holds verdicts for are decided again if LND replays them)",
            path.display()
        ),
    ))
}

/// The first whole record (offset, number) in `bytes` after byte `from` that is
/// numbered after `last` (a record's number comes first in its payload: cheap
/// to check before its checksum).
fn record_after(bytes: &[u8], from: usize, last: u64) -> Option<(usize, u64)> {
    (from + 1..bytes.len().saturating_sub(8 + 8)).find_map(|at| {
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
        (crc32fast::hash(payload) == crc && decode_payload(payload).is_some()).then_some((at, seq))
    })
}

/// The records at the start of `bytes` and how many bytes they take.
pub fn parse(bytes: &[u8]) -> (Vec<WalRecord>, u64) {
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
        let Some(record) = decode_payload(payload) else {
            break;
        };
        records.push(record);
        at += 8 + len as usize;
    }
    (records, at as u64)
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

fn decode_payload(payload: &[u8]) -> Option<WalRecord> {
    let mut r = Reader::new(payload);
    let seq = r.u64()?;
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
    Some(WalRecord { seq, entries })
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

    #[test]
    fn records_survive_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, recs, ignored) = Wal::open(&path).unwrap();
            assert!(recs.is_empty());
            assert_eq!(ignored, 0);
            for s in 1..=3 {
                wal.append(&record(s)).unwrap();
            }
        }
        let (wal, recs, ignored) = Wal::open(&path).unwrap();
        assert_eq!(recs, vec![record(1), record(2), record(3)]);
        assert_eq!(ignored, 0);
        assert_eq!(wal.len_bytes(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let full = [encode(&record(1)), encode(&record(2))].concat();
        // Every cut inside the second record: the first survives, the rest is ignored.
        let first = encode(&record(1)).len();
        for cut in first..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (mut wal, recs, ignored) = Wal::open(&path).unwrap();
            assert_eq!(recs, vec![record(1)], "cut at {cut}");
            assert_eq!(ignored, (cut - first) as u64);
            // The next append goes right after the good record.
            wal.append(&record(7)).unwrap();
            drop(wal);
            let (_, recs, ignored) = Wal::open(&path).unwrap();
            assert_eq!(recs, vec![record(1), record(7)], "cut at {cut}");
            assert_eq!(ignored, 0, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_stops_reading_at_its_record() {
        let a = encode(&record(1));
        let mut bytes = [a.clone(), encode(&record(2)), encode(&record(3))].concat();
        bytes[a.len() + 20] ^= 0x10;
        let (recs, valid) = parse(&bytes);
        assert_eq!(recs, vec![record(1)]);
        assert_eq!(valid, a.len() as u64);
        // A corrupt length must not be trusted either.
        let mut huge = a.clone();
        huge[3] = 0xff;
        assert_eq!(parse(&huge), (Vec::new(), 0));
    }

    #[test]
    fn damage_followed_by_valid_records_refuses_to_open_naming_the_place_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let a = encode(&record(1));
        let mut bytes = [a.clone(), encode(&record(2)), encode(&record(3))].concat();
        // Not a torn tail: record 3 was written (and fsync'd, and its verdicts
        // sent) after the damaged record 2.
        bytes[a.len() + 20] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = Wal::open(&path).err().expect("opened a log with a hole");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let msg = err.to_string();
        for part in [&format!("byte {}", a.len()), "record 3", "move it aside"] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
        // Untouched: the operator decides.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // A tail of zeros (a preallocated or torn write-back) is still a torn tail.
        let zeros = [a.clone(), vec![0; 4096]].concat();
        std::fs::write(&path, &zeros).unwrap();
        let (_, recs, ignored) = Wal::open(&path).unwrap();
        assert_eq!(recs, vec![record(1)]);
        assert_eq!(ignored, 4096);
    }

    #[test]
    fn reset_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        let (mut wal, _, _) = Wal::open(&path).unwrap();
        wal.append(&record(1)).unwrap();
        wal.reset().unwrap();
        wal.append(&record(2)).unwrap();
        drop(wal);
        let (_, recs, _) = Wal::open(&path).unwrap();
        assert_eq!(recs, vec![record(2)]);
    }

    #[test]
    fn a_rotated_log_is_read_before_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.wal");
        {
            let (mut wal, _, _) = Wal::open(&path).unwrap();
            wal.append(&record(1)).unwrap();
            wal.append(&record(2)).unwrap();
            let old = wal.rotate().unwrap();
            assert_eq!(old, old_path(&path));
            wal.append(&record(3)).unwrap();
        }
        // A crash before the checkpoint deleted the old file: both are read, old first.
        let (mut wal, recs, _) = Wal::open(&path).unwrap();
        assert_eq!(recs, vec![record(1), record(2), record(3)]);
        wal.reset().unwrap();
        assert!(!old_path(&path).exists());
        drop(wal);
        let (_, recs, _) = Wal::open(&path).unwrap();
        assert!(recs.is_empty());
    }

    #[test]
    fn the_log_sits_beside_the_journal() {
        assert_eq!(
            path_for(Path::new("/var/lib/htlcgate/journal.redb")),
            PathBuf::from("/var/lib/htlcgate/journal.redb.wal")
        );
    }
}
