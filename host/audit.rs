//! The decision audit log (`[audit]`, off by default): one JSON line per answered
//! HTLC, with the HTLC (every request field but the onion blob, see
//! [`crate::record`]), the verdict, who chose it, and each plugin's step, fuel and
//! time. `htlcgate replay` reads it back.
//!
//! Writing never slows an answer: the gate hands each decided HTLC to a bounded
//! queue without waiting ([`AuditLog::record`] is a `try_send`) after its answer is
//! queued for LND; a dedicated thread formats and writes the lines, flushing
//! whenever the queue runs empty. When the queue is full the line is dropped,
//! counted (`htlcgate_audit_dropped_total`) and a warning is logged at most every
//! [`WARN_EVERY`].
//!
//! Rotation by size: before a line would take the file past `max_bytes`, the file
//! is renamed to `PATH.1` (`PATH.1` to `PATH.2`, ..., up to `keep` files; the oldest
//! is deleted) and a new one started. A line is never split across files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::chain::{DecidedBy, Decision};
use crate::circuit::Scid;
use crate::metrics::Metrics;
use crate::record::HtlcRecord;
use crate::wasm::input::HtlcInput;
use crate::wasm::plugin::Step;

/// At most one "audit lines dropped" warning per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// `[audit]`: where and how big.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The log file (`path`, relative to the config file's directory).
    pub path: PathBuf,
    /// Size at which the file is rotated (`max_bytes`, default 100 MiB).
    pub max_bytes: u64,
    /// Rotated files kept: `PATH.1` .. `PATH.keep` (`keep`, default 5; 0 keeps none).
    pub keep: u32,
    /// Lines that may wait for the writer before new ones are dropped (`queue`,
    /// default 65,536).
    pub queue: usize,
}

/// Defaults of `[audit]`.
pub mod defaults {
    /// Rotate at 100 MiB.
    pub const MAX_BYTES: u64 = 100 << 20;
    /// Keep 5 rotated files.
    pub const KEEP: u32 = 5;
    /// Queue up to 65,536 lines.
    pub const QUEUE: usize = 65_536;
    /// Bytes the queued lines may hold (their HTLCs, onions included), whatever
    /// `queue` allows: 64 MiB, some 40,000 lines of full-size onions.
    pub const MAX_QUEUED_BYTES: usize = 64 << 20;
}

/// The audit log could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened for appending.
    #[error("cannot open the audit log {path}: {reason}; check the directory and its permissions, or change `audit.path` (or remove [audit] to turn the log off)")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit log writer thread: {0}")]
    Thread(String),
}

/// One plugin's step in an audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStep {
    /// The plugin.
    pub plugin: String,
    /// `next`, a verdict kind, `fault` or `quarantined`.
    pub step: String,
    /// The fault's reason (`fuel`, `trap`, ...), for a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Fuel units used.
    pub fuel: u64,
    /// Wall-clock time of the call in µs.
    pub us: u64,
}

/// One audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// When the answer was queued, RFC 3339 UTC with µs.
    pub time: String,
    /// Circuit key, `chan:htlc`.
    pub key: String,
    /// Incoming channel, `BLOCKxTXxOUT`.
    pub scid_in: String,
    /// Requested outgoing channel, `BLOCKxTXxOUT` (`0x0x0`: a payment to this node).
    pub scid_out: String,
    /// `resume`, `fail`, `settle` or `resume-modified`.
    pub verdict: String,
    /// The verdict in full (`fail(TemporaryChannelFailure)`, `resume-modified(out=..)`).
    pub detail: String,
    /// The deciding plugin, or `default`, `budget`, `replay`.
    pub decided_by: String,
    /// `plugin`, `on_fault`, `default`, `budget` or `replay`.
    pub source: String,
    /// Chain time in µs (0 for a replay).
    pub us: u64,
    /// Fuel used by the whole chain.
    pub fuel: u64,
    /// Each plugin's step, in chain order (empty for a replay or a budget verdict).
    pub plugins: Vec<AuditStep>,
    /// The HTLC.
    pub htlc: HtlcRecord,
}

/// The `decided_by` and `source` words for a decision.
pub fn decided_by(by: &DecidedBy) -> (String, &'static str) {
    match by {
        DecidedBy::Plugin(p) => (p.to_string(), "plugin"),
        DecidedBy::FaultPolicy(p) => (p.to_string(), "on_fault"),
        DecidedBy::Default => ("default".into(), "default"),
        DecidedBy::Budget => ("budget".into(), "budget"),
        DecidedBy::Replay => ("replay".into(), "replay"),
        DecidedBy::HoldExpiry(p) => (p.to_string(), "on_hold_expiry"),
    }
}

/// The step words for a plugin's step.
pub fn step_words(step: &Step) -> (String, Option<String>) {
    match step {
        Step::Next => ("next".into(), None),
        Step::Verdict(v) => (v.kind().into(), None),
        Step::Fault(f) => ("fault".into(), Some(f.reason().into())),
        Step::Quarantined => ("quarantined".into(), None),
        Step::Hold(after) => (format!("hold {} ms", after.as_millis()), None),
    }
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

impl AuditLine {
    /// The line for one answered HTLC.
    pub fn new(time: SystemTime, input: &HtlcInput, decision: &Decision) -> AuditLine {
        let (by, source) = decided_by(&decision.by);
        let plugins: Vec<AuditStep> = decision
            .trace
            .iter()
            .map(|t| {
                let (step, fault) = step_words(&t.step);
                AuditStep {
                    plugin: t.plugin.to_string(),
                    step,
                    fault,
                    fuel: t.cost.fuel,
                    us: t.cost.elapsed.as_micros() as u64,
                }
            })
            .collect();
        AuditLine {
            time: rfc3339(time),
            key: input.key.to_string(),
            scid_in: Scid(input.key.chan_id).to_string(),
            scid_out: Scid(input.record.outgoing_requested_chan_id).to_string(),
            verdict: decision.verdict.kind().into(),
            detail: decision.verdict.to_string(),
            decided_by: by,
            source: source.into(),
            us: decision.elapsed.as_micros() as u64,
            fuel: plugins.iter().map(|p| p.fuel).sum(),
            plugins,
            htlc: HtlcRecord::from_input(input),
        }
    }
}

/// The audit log at `path` after its `n`th rotation: `PATH.n`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// A decided HTLC waiting for the writer: formatted on the writer's thread.
struct Entry {
    time: SystemTime,
    input: Arc<HtlcInput>,
    decision: Decision,
    /// What it holds ([`entry_bytes`]), given back when it is written.
    bytes: usize,
}

/// About what a queued line holds in memory: the entry, its HTLC (onion and
/// custom records) and its decision's trace.
fn entry_bytes(input: &HtlcInput, decision: &Decision) -> usize {
    let records: usize = input
        .record
        .custom_records
        .iter()
        .chain(&input.record.in_wire_custom_records)
        .map(|r| r.value.len() + 32)
        .sum();
    std::mem::size_of::<Entry>()
        + std::mem::size_of::<HtlcInput>()
        + input.onion_blob.len()
        + records
        + decision.trace.len() * std::mem::size_of::<crate::chain::Trace>()
}

enum Msg {
    Line(Box<Entry>),
    /// Write and flush everything before this, then acknowledge.
    Flush(mpsc::Sender<()>),
}

struct Shared {
    metrics: Option<Arc<Metrics>>,
    /// What the queued lines hold ([`entry_bytes`]), at most
    /// [`defaults::MAX_QUEUED_BYTES`].
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    /// Drops not yet reported in a warning.
    unreported: AtomicU64,
    /// Milliseconds since `epoch` of the last warning (0: never).
    last_warn_ms: AtomicU64,
    epoch: Instant,
    path: PathBuf,
}

impl Shared {
    fn drop_line(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.audit_dropped(1);
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64)
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let n = self.unreported.swap(0, Ordering::Relaxed);
            tracing::warn!(
                path = %self.path.display(),
                dropped = n,
                "audit log writer is behind (or cannot write): lines dropped; answers are not affected (raise `audit.queue` or use a faster disk)"
            );
        }
    }
}

/// The audit log. Cheap to clone; the writer thread ends when the last clone is
/// dropped, after writing what is queued.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn open(cfg: &AuditConfig, metrics: Option<Arc<Metrics>>) -> Result<AuditLog, AuditError> {
        let file = Sink::open(cfg)?;
        let (log, rx) = AuditLog::unstarted(cfg, metrics);
        let shared = log.shared.clone();
        std::thread::Builder::new()
            .name("htlcgate-audit".into())
            .spawn(move || writer(rx, file, shared))
            .map_err(|e| AuditError::Thread(e.to_string()))?;
        Ok(log)
    }

    /// The handle and the queue's receiving end, with no writer yet.
    fn unstarted(cfg: &AuditConfig, metrics: Option<Arc<Metrics>>) -> (AuditLog, Receiver<Msg>) {
        let (tx, rx) = mpsc::sync_channel(cfg.queue.max(1));
        let shared = Arc::new(Shared {
            metrics,
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            path: cfg.path.clone(),
        });
        (AuditLog { tx, shared }, rx)
    }

    /// Queues one answered HTLC; never waits. A full queue drops the line (counted
    /// and warned about).
    pub fn record(&self, input: Arc<HtlcInput>, decision: Decision) {
        let bytes = entry_bytes(&input, &decision);
        let queued = self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if queued + bytes > defaults::MAX_QUEUED_BYTES {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.shared.drop_line();
            return;
        }
        let entry = Box::new(Entry {
            time: SystemTime::now(),
            input,
            decision,
            bytes,
        });
        match self.tx.try_send(Msg::Line(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.shared.drop_line()
            }
        }
    }

    /// Waits (at most `timeout`) until every line queued before is written and
    /// flushed to the file. Blocks: not for async code (use `spawn_blocking`).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::channel();
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Flush(ack);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// The file being written, its size and the rotation settings.
/// After a failed rotation, how long lines go on into the current file before
/// rotating is tried again.
const ROTATE_RETRY: Duration = Duration::from_secs(60);

struct Sink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: Option<BufWriter<File>>,
    size: u64,
    /// A rotation failed: lines go on into the current file, and rotating is
    /// tried again from this moment on.
    rotate_after: Option<Instant>,
}

impl Sink {
    fn open(cfg: &AuditConfig) -> Result<Sink, AuditError> {
        let mut sink = Sink {
            path: cfg.path.clone(),
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            out: None,
            size: 0,
            rotate_after: None,
        };
        sink.reopen().map_err(|e| AuditError::Open {
            path: cfg.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(sink)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                // A line cut short (a crash, a full disk): end it, so that the
                // next line is one of its own (`replay` reads whole lines).
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        self.size = size;
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    /// `PATH.n`.
    fn rotated(&self, n: u32) -> PathBuf {
        rotated_path(&self.path, n)
    }

    /// Closes the file, shifts `PATH.n` to `PATH.n+1` (dropping the oldest) and
    /// `PATH` to `PATH.1`, and opens a new `PATH`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            match std::fs::remove_file(self.rotated(self.keep)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }

    /// Writes one line (with its newline), rotating first if it would not fit.
    /// Returns whether the file was rotated.
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<bool> {
        let len = line.len() as u64;
        let mut rotated = false;
        if self.out.is_none() {
            self.reopen()?;
        }
        let may_rotate = self.rotate_after.is_none_or(|t| Instant::now() >= t);
        if self.size > 0 && self.size + len > self.max_bytes && may_rotate {
            if let Err(e) = self.rotate() {
                // Keep appending to the current file (reopened if the rotation
                // closed it) and try again in a while: an audit log that cannot
                // rotate still gets every line.
                tracing::error!(path = %self.path.display(), "cannot rotate the audit log: {e}; appending to it meanwhile, retrying in {} s", ROTATE_RETRY.as_secs());
                self.rotate_after = Some(Instant::now() + ROTATE_RETRY);
                if self.out.is_none() {
                    self.reopen()?;
                }
            } else {
                self.rotate_after = None;
                rotated = true;
            }
        }
        let out = self.out.as_mut().expect("opened above");
        if let Err(e) = out.write_all(line) {
            // A write error may leave the buffer half-written: start over.
            self.out = None;
            return Err(e);
        }
        self.size += len;
        Ok(rotated)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    /// When the last write error was logged (errors are logged every WARN_EVERY).
    last_error: Option<Instant>,
}

impl Writer {
    fn error(&mut self, what: &str, e: &std::io::Error) {
        if self.last_error.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            self.last_error = Some(Instant::now());
            tracing::error!(path = %self.sink.path.display(), "cannot {what} the audit log: {e}; lines are dropped until it works again (answers are not affected)");
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(e) => {
                let e = *e;
                // Its HTLC is let go at the end of this arm.
                self.shared
                    .queued_bytes
                    .fetch_sub(e.bytes, Ordering::Relaxed);
                self.buf.clear();
                let line = AuditLine::new(e.time, &e.input, &e.decision);
                if serde_json::to_writer(&mut self.buf, &line).is_err() {
                    self.shared.drop_line();
                    return;
                }
                self.buf.push(b'\n');
                match self.sink.write_line(&self.buf) {
                    Ok(rotated) => {
                        if let Some(m) = &self.shared.metrics {
                            m.audit_written();
                            if rotated {
                                m.audit_rotated();
                            }
                        }
                    }
                    Err(e) => {
                        self.error("write", &e);
                        self.shared.drop_line();
                    }
                }
            }
            Msg::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.sink.flush() {
            self.error("flush", &e);
        }
    }
}

fn writer(rx: Receiver<Msg>, sink: Sink, shared: Arc<Shared>) {
    let mut w = Writer {
        sink,
        shared,
        buf: Vec::with_capacity(4096),
        last_error: None,
    };
    while let Ok(first) = rx.recv() {
        w.handle(first);
        // Write whatever queued up meanwhile, then flush once.
        loop {
            match rx.try_recv() {
                Ok(m) => w.handle(m),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        w.flush();
    }
    w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_lnd::sample_request;
    use crate::verdict::{FailCode, Verdict};
    use crate::wasm::fault::PluginFault;
    use crate::wasm::plugin::Cost;

    fn input(id: u64) -> Arc<HtlcInput> {
        Arc::new(HtlcInput::from_request(sample_request(812_345 << 40 | 1 << 16, id)).unwrap())
    }

    fn decision() -> Decision {
        Decision {
            hold: None,
            verdict: Verdict::Fail(FailCode::TemporaryChannelFailure),
            by: DecidedBy::Plugin(Arc::from("fee-floor")),
            trace: vec![
                crate::chain::Trace {
                    plugin: Arc::from("trap"),
                    step: Step::Fault(PluginFault::Trap {
                        message: "boom".into(),
                    }),
                    cost: Cost {
                        fuel: 10,
                        elapsed: Duration::from_micros(3),
                    },
                },
                crate::chain::Trace {
                    plugin: Arc::from("fee-floor"),
                    step: Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure)),
                    cost: Cost {
                        fuel: 3_390,
                        elapsed: Duration::from_micros(6),
                    },
                },
            ],
            elapsed: Duration::from_micros(15),
        }
    }

    fn cfg(dir: &Path, max_bytes: u64, keep: u32) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit.jsonl"),
            max_bytes,
            keep,
            queue: 1024,
        }
    }

    fn lines(p: &Path) -> Vec<AuditLine> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_line_holds_the_htlc_the_verdict_and_each_plugins_cost() {
        let i = input(7);
        let line = AuditLine::new(
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            &i,
            &decision(),
        );
        assert_eq!(line.time, "2023-11-14T22:13:20.123456Z");
        assert_eq!(line.key, format!("{}:7", 812_345u64 << 40 | 1 << 16));
        assert_eq!(line.scid_in, "812345x1x0");
        assert_eq!(line.verdict, "fail");
        assert_eq!(line.decided_by, "fee-floor");
        assert_eq!(line.source, "plugin");
        assert_eq!(line.fuel, 3_400);
        assert_eq!(line.us, 15);
        assert_eq!(line.plugins[0].step, "fault");
        assert_eq!(line.plugins[0].fault.as_deref(), Some("trap"));
        assert_eq!(line.plugins[1].step, "fail");
        assert_eq!(
            line.htlc.to_request().incoming_circuit_key.unwrap().htlc_id,
            7
        );
        let json = serde_json::to_string(&line).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<AuditLine>(&json).unwrap(), line);
    }

    #[test]
    fn lines_are_written_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&cfg(dir.path(), 1 << 20, 2), None).unwrap();
        for id in 0..10 {
            log.record(input(id), decision());
        }
        assert!(log.flush(Duration::from_secs(10)));
        let got = lines(log.path());
        assert_eq!(got.len(), 10);
        assert_eq!(got[3].htlc.htlc_id, 3);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_file_rotates_before_it_passes_max_bytes_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&AuditLine::new(SystemTime::now(), &input(0), &decision()))
            .unwrap()
            .len() as u64
            + 1;
        // Three lines fit in one file, a fourth does not.
        let c = cfg(dir.path(), one * 3 + one / 2, 2);
        let metrics = Arc::new(Metrics::new());
        let log = AuditLog::open(&c, Some(metrics.clone())).unwrap();
        for id in 0..14 {
            log.record(input(id), decision());
        }
        assert!(log.flush(Duration::from_secs(10)));
        let p = &c.path;
        let rot = |n: u32| PathBuf::from(format!("{}.{n}", p.display()));
        // 14 lines: files of 3 lines; the newest two in PATH (14 = 4 * 3 + 2).
        let ids = |p: &Path| lines(p).iter().map(|l| l.htlc.htlc_id).collect::<Vec<_>>();
        assert_eq!(ids(p), vec![12, 13]);
        assert_eq!(ids(&rot(1)), vec![9, 10, 11]);
        assert_eq!(ids(&rot(2)), vec![6, 7, 8]);
        assert!(!rot(3).exists(), "only `keep` rotated files");
        for f in [p.clone(), rot(1), rot(2)] {
            assert!(std::fs::metadata(&f).unwrap().len() <= c.max_bytes);
        }
        let text = metrics.encode();
        assert!(
            text.contains("htlcgate_audit_rotations_total 4\n"),
            "{text}"
        );
        assert!(text.contains("htlcgate_audit_lines_total 14\n"), "{text}");
    }

    #[test]
    fn keep_zero_starts_over_without_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 10, 0);
        let log = AuditLog::open(&c, None).unwrap();
        for id in 0..3 {
            log.record(input(id), decision());
        }
        assert!(log.flush(Duration::from_secs(10)));
        // Every line is longer than max_bytes: each one alone, never split.
        assert_eq!(lines(&c.path).len(), 1);
        assert!(!PathBuf::from(format!("{}.1", c.path.display())).exists());
    }

    #[test]
    fn a_full_queue_drops_lines_without_waiting_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 1 << 20, 1);
        c.queue = 2;
        let metrics = Arc::new(Metrics::new());
        // No writer: the queue fills and stays full.
        let (log, _rx) = AuditLog::unstarted(&c, Some(metrics.clone()));
        // A blocking send would never return here: record must not wait.
        for id in 0..5 {
            log.record(input(id), decision());
        }
        assert_eq!(log.dropped(), 3);
        assert!(metrics
            .encode()
            .contains("htlcgate_audit_dropped_total 3\n"));
    }

    /// Each queued line holds its HTLC (onion included) until it is written: a
    /// stalled disk with a long queue held gigabytes. The bytes queued are
    /// bounded too, whatever `queue` says.
    #[test]
    fn the_bytes_a_stalled_queue_holds_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), 1 << 20, 1);
        c.queue = 1_000_000;
        let (log, _rx) = AuditLog::unstarted(&c, None);
        let one = input(1);
        let per_line = entry_bytes(&one, &decision());
        assert!(per_line > one.onion_blob.len(), "{per_line}");
        let lines = defaults::MAX_QUEUED_BYTES / per_line + 100;
        for id in 0..lines as u64 {
            log.record(input(id), decision());
        }
        assert!(log.dropped() >= 100, "{} dropped", log.dropped());
        assert!(log.dropped() <= 101, "{} dropped", log.dropped());
    }

    #[test]
    fn an_unwritable_path_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(&dir.path().join("missing-dir"), 1 << 20, 1);
        let err = AuditLog::open(&c, None).unwrap_err().to_string();
        assert!(err.contains("missing-dir/audit.jsonl"), "{err}");
        assert!(err.contains("audit.path"), "{err}");
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_ended_before_new_lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 1);
        let whole =
            serde_json::to_string(&AuditLine::new(SystemTime::now(), &input(1), &decision()))
                .unwrap();
        std::fs::write(&c.path, format!("{whole}\n{}", &whole[..whole.len() / 2])).unwrap();
        let log = AuditLog::open(&c, None).unwrap();
        log.record(input(2), decision());
        assert!(log.flush(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&c.path).unwrap();
        let last: AuditLine = serde_json::from_str(text.lines().last().unwrap())
            .unwrap_or_else(|e| panic!("the new line is glued to the cut one: {e}"));
        assert_eq!(last.htlc.htlc_id, 2);
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn lines_keep_coming_when_the_file_cannot_be_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&AuditLine::new(SystemTime::now(), &input(0), &decision()))
            .unwrap()
            .len() as u64
            + 1;
        let c = cfg(dir.path(), one * 2 + one / 2, 1);
        // `PATH.1` cannot be replaced: rotation fails every time.
        let blocker = PathBuf::from(format!("{}.1", c.path.display()));
        std::fs::create_dir(&blocker).unwrap();
        std::fs::write(blocker.join("x"), b"x").unwrap();
        let log = AuditLog::open(&c, None).unwrap();
        for id in 0..6 {
            log.record(input(id), decision());
        }
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.dropped(), 0);
        let ids: Vec<u64> = lines(&c.path).iter().map(|l| l.htlc.htlc_id).collect();
        assert_eq!(
            ids,
            (0..6).collect::<Vec<_>>(),
            "lines lost while rotation fails"
        );
    }

    #[test]
    fn an_existing_log_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 1);
        for round in 0..2 {
            let log = AuditLog::open(&c, None).unwrap();
            log.record(input(round), decision());
            assert!(log.flush(Duration::from_secs(10)));
        }
        assert_eq!(lines(&c.path).len(), 2);
    }
}
