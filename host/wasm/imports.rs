//! What a plugin's store holds and what it may call: the world's host imports (log,
//! clock, onion blob, key-value state, node context), WASI with nothing granted, and
//! the memory limiter.
//!
//! The imports are implemented once, for world 0.2.0 ([`DeciderImports`]); 0.1.0
//! plugins reach the same code through `wasm::v01`.
//!
//! WASI is linked only so that components from other toolchains (Go and
//! AssemblyScript through the preview-1 adapter, Rust's std) load: the context has no
//! preopened directory, no environment, no arguments, no network; stdout and stderr
//! go into htlcgate's log, rate-limited like the `log` import.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::KvLimits;
use crate::kv::{KvError, Namespace};
use crate::lnd::node::NodeContext;
use crate::wasm::bindings::{ChannelInfo, DeciderImports, KvError as WitKvError, LogLevel};
use crate::wasm::determinism::{Determinism, ReplayMonotonic, ReplayRandom};
use crate::wasm::input::HtlcInput;

/// Longest log line kept; the rest is cut.
const MAX_LINE: usize = 1024;
/// Log lines a plugin may write in a burst.
const LOG_BURST: f64 = 50.0;
/// Log lines per second a plugin may sustain.
const LOG_RATE: f64 = 10.0;

/// A per-plugin token bucket for log lines: a plugin spamming its log costs one
/// counter increment per line, and the operator sees how many were dropped.
#[derive(Debug)]
pub struct LogLimiter {
    /// Plugin name, the `plugin` field of every line.
    plugin: Arc<str>,
    /// Tokens left.
    tokens: f64,
    /// Last refill.
    last: Instant,
    /// Lines dropped since the last line written.
    suppressed: u64,
    /// Partial line from stdout/stderr, waiting for its newline.
    partial: Vec<u8>,
}

impl LogLimiter {
    /// A full bucket for `plugin`.
    pub fn new(plugin: Arc<str>) -> LogLimiter {
        LogLimiter {
            plugin,
            tokens: LOG_BURST,
            last: Instant::now(),
            suppressed: 0,
            partial: Vec::new(),
        }
    }

    /// Writes one line if the bucket allows, else counts it.
    pub fn line(&mut self, level: LogLevel, msg: &str) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_RATE).min(LOG_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return;
        }
        self.tokens -= 1.0;
        let mut cut = msg.len().min(MAX_LINE);
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        let msg = &msg[..cut];
        let plugin = &*self.plugin;
        if self.suppressed > 0 {
            tracing::warn!(
                plugin,
                suppressed = self.suppressed,
                "plugin log lines dropped by the rate limit"
            );
            self.suppressed = 0;
        }
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{msg}"),
            LogLevel::Info => tracing::info!(plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(plugin, "{msg}"),
            LogLevel::Error => tracing::error!(plugin, "{msg}"),
        }
    }

    /// Feeds raw stdout/stderr bytes; complete lines are logged at `level`.
    fn bytes(&mut self, level: LogLevel, bytes: &[u8]) {
        let mut partial = std::mem::take(&mut self.partial);
        split_lines(&mut partial, bytes, |line| {
            self.line(level, &String::from_utf8_lossy(line))
        });
        self.partial = partial;
    }
}

/// Cuts `partial` + `bytes` into lines for `emit` (without their newline) in one
/// pass, keeping an unfinished tail in `partial`; a tail longer than
/// [`MAX_LINE`] is emitted as a line of its own. (Draining `partial` line by line
/// moved the rest of the buffer for every line: a write of newlines cost host
/// time quadratic in its size, outside fuel and the deadline.)
fn split_lines(partial: &mut Vec<u8>, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut rest = bytes;
    while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
        if partial.is_empty() {
            emit(&rest[..pos]);
        } else {
            partial.extend_from_slice(&rest[..pos]);
            emit(partial);
            partial.clear();
        }
        rest = &rest[pos + 1..];
    }
    partial.extend_from_slice(rest);
    if partial.len() > MAX_LINE {
        emit(partial);
        partial.clear();
    }
}

/// Caps linear memory and table growth; remembers that the cap was hit so that the
/// trap is reported as a memory fault, not a generic one.
#[derive(Debug)]
pub struct MemoryCap {
    /// The cap in bytes, over all the instance's linear memories together.
    pub limit_bytes: usize,
    /// Set when a grow was refused.
    pub hit: bool,
    /// Bytes of linear memory the instance has, all memories together.
    memory_bytes: usize,
    /// Table elements the instance has, all tables together.
    table_elements: usize,
}

/// Most table elements a plugin may have, all tables together.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryCap {
    /// A cap of `limit_bytes` for a fresh instance.
    pub fn new(limit_bytes: usize) -> MemoryCap {
        MemoryCap {
            limit_bytes,
            hit: false,
            memory_bytes: 0,
            table_elements: 0,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own maximum wasmtime refuses the grow (-1 to the
        // guest) after asking: nothing to count.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        // A store holds several memories (the module's, the WASI adapter's, or
        // more with multi-memory): the cap is on their sum.
        let total = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current));
        if total > self.limit_bytes {
            self.hit = true;
            // An error (not `Ok(false)`) traps the guest at once, instead of letting
            // it loop on failed grows until its fuel runs out.
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} bytes reached (asked for {total} over all memories)",
                self.limit_bytes
            )));
        }
        // A grow allowed here that then fails (no memory to map) stays counted:
        // `memory_grow_failed` is also called for grows never asked about here,
        // so taking one back there could be gamed; over-counting only errs
        // toward the cap.
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        // Components made through the preview-1 adapter hold several core instances.
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }
}

/// A plugin's wall clock (the world's `now-unix-ms` and WASI's wall clock): the
/// real one, except during a decision whose HTLC carries a recorded time
/// ([`HtlcInput::clock_ms`], set by `htlcgate replay`), when it reads that time.
/// The daemon's HTLCs never carry one. The monotonic clock is always the real one.
#[derive(Clone, Debug)]
pub struct PluginClock {
    /// The time the clock reads, in ms since the Unix epoch; [`PluginClock::REAL`]
    /// for the real clock.
    fixed_ms: Arc<AtomicU64>,
}

impl Default for PluginClock {
    fn default() -> PluginClock {
        PluginClock {
            fixed_ms: Arc::new(AtomicU64::new(PluginClock::REAL)),
        }
    }
}

impl PluginClock {
    /// The value of `fixed_ms` that means "the real clock".
    const REAL: u64 = u64::MAX;

    /// Reads `ms` (ms since the Unix epoch) from now on; `None`: the real clock.
    pub fn set(&self, ms: Option<u64>) {
        self.fixed_ms
            .store(ms.unwrap_or(PluginClock::REAL), Ordering::Relaxed);
    }

    /// The time since the Unix epoch the plugin sees.
    pub fn now(&self) -> Duration {
        match self.fixed_ms.load(Ordering::Relaxed) {
            PluginClock::REAL => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            ms => Duration::from_millis(ms),
        }
    }
}

impl wasmtime_wasi::HostWallClock for PluginClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        PluginClock::now(self)
    }
}

/// Everything one plugin instance's store holds.
pub struct PluginState {
    /// The plugin's name, for logs.
    pub plugin: Arc<str>,
    /// WASI with nothing granted.
    wasi: WasiCtx,
    /// WASI's resource table.
    table: ResourceTable,
    /// The memory cap.
    pub memory: MemoryCap,
    /// The log rate limiter, shared with stdout/stderr.
    pub log: Arc<Mutex<LogLimiter>>,
    /// The HTLC being decided, for the `onion-blob` import (`None` outside
    /// `decide`, `outcome` included); set with [`PluginState::set_current`].
    current: Option<Arc<HtlcInput>>,
    /// The wall clock the plugin reads (shared with its WASI context).
    clock: PluginClock,
    /// The plugin's key-value namespace and its limits, when granted `kv`.
    pub kv: Option<(Arc<Namespace>, KvLimits)>,
    /// The node context for `channel` and `block-height`, when the sandbox has
    /// one.
    pub node: Option<NodeContext>,
    /// The plugin called `ignore-outcomes`: its `outcome` export does nothing.
    pub ignores_outcomes: bool,
    /// When the running call must end (its timeout from its start): WASI waits
    /// end there ([`crate::wasm::wait`]), as the epoch deadline ends wasm code.
    pub deadline: Option<std::time::Instant>,
    /// Under `htlcgate replay`, the monotonic clock and randomness derived from
    /// the recorded HTLCs; `None` (the machine's) in the daemon.
    determinism: Option<Arc<Determinism>>,
}

impl PluginState {
    /// A fresh store state for `plugin` with a memory cap of `limit_bytes`.
    ///
    /// `log` is the plugin's limiter, kept across instances so that a plugin
    /// replaced after a fault does not get a fresh burst.
    pub fn new(
        plugin: Arc<str>,
        limit_bytes: usize,
        log: Arc<Mutex<LogLimiter>>,
        determinism: Option<Arc<Determinism>>,
    ) -> PluginState {
        let clock = PluginClock::default();
        let mut b = WasiCtxBuilder::new();
        if let Some(d) = &determinism {
            b.monotonic_clock(ReplayMonotonic(d.clone()))
                .secure_random(ReplayRandom(d.clone()))
                .insecure_random(ReplayRandom(d.clone()))
                .insecure_random_seed(d.insecure_seed());
        }
        b.wall_clock(clock.clone())
            .stdout(LogStream {
                log: log.clone(),
                level: LogLevel::Info,
            })
            .stderr(LogStream {
                log: log.clone(),
                level: LogLevel::Warn,
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        PluginState {
            plugin,
            wasi: b.build(),
            table: ResourceTable::new(),
            memory: MemoryCap::new(limit_bytes),
            log,
            current: None,
            clock,
            kv: None,
            node: None,
            ignores_outcomes: false,
            deadline: None,
            determinism,
        }
    }

    /// Sets the HTLC being decided (`None` after the call): the `onion-blob`
    /// import reads it, and the clock reads its recorded time if it has one.
    pub fn set_current(&mut self, current: Option<Arc<HtlcInput>>) {
        self.clock.set(current.as_ref().and_then(|h| h.clock_ms));
        if let Some(d) = &self.determinism {
            d.set_current(current.as_deref());
        }
        self.current = current;
    }

    /// Runs a key-value operation; refused (and logged) without the namespace.
    fn with_kv<T>(
        &mut self,
        op: &str,
        f: impl FnOnce(&Namespace, &KvLimits) -> Result<T, KvError>,
    ) -> Result<T, WitKvError> {
        let Some((ns, limits)) = &self.kv else {
            // Unreachable in practice: a component importing kv without the grant
            // is refused at load.
            return Err(WitKvError::Storage(
                "key-value store not granted (grants = [\"kv\"])".into(),
            ));
        };
        f(ns, limits).map_err(|e| {
            let plugin = &*self.plugin;
            match &e {
                KvError::Storage(_) => tracing::error!(plugin, op, "key-value {op} failed: {e}"),
                _ => tracing::debug!(plugin, op, "key-value {op} refused: {e}"),
            }
            match e {
                KvError::KeyTooLong { max, .. } => WitKvError::KeyTooLong(max),
                KvError::ValueTooLong { max, .. } => WitKvError::ValueTooLong(max),
                KvError::TooManyKeys { max } => WitKvError::TooManyKeys(max),
                e @ KvError::DeletionsPending { .. } => WitKvError::Storage(e.to_string()),
                KvError::Storage(m) => WitKvError::Storage(m),
            }
        })
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl DeciderImports for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        if let Ok(mut l) = self.log.lock() {
            l.line(level, &message);
        }
    }

    fn now_unix_ms(&mut self) -> u64 {
        self.clock.now().as_millis() as u64
    }

    fn onion_blob(&mut self) -> Vec<u8> {
        self.current
            .as_ref()
            .map(|h| h.onion_blob.clone())
            .unwrap_or_default()
    }

    fn kv_get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, WitKvError> {
        self.with_kv("get", |ns, l| ns.get(&key, l))
    }

    fn kv_set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), WitKvError> {
        self.with_kv("set", |ns, l| ns.set(&key, &value, l))
    }

    fn kv_delete(&mut self, key: Vec<u8>) -> Result<bool, WitKvError> {
        self.with_kv("delete", |ns, l| ns.delete(&key, l))
    }

    fn channel(&mut self, chan_id: u64) -> Option<ChannelInfo> {
        crate::wasm::node::channel(self.node.as_ref(), chan_id)
    }

    fn block_height(&mut self) -> Option<u32> {
        crate::wasm::node::block_height(self.node.as_ref())
    }

    fn ignore_outcomes(&mut self) {
        self.ignores_outcomes = true;
    }
}

/// A plugin's stdout or stderr, written into the log line by line.
#[derive(Clone)]
struct LogStream {
    log: Arc<Mutex<LogLimiter>>,
    level: LogLevel,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl LogStream {
    fn write_bytes(&self, bytes: &[u8]) {
        if let Ok(mut l) = self.log.lock() {
            l.bytes(self.level, bytes);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

/// Most bytes one `write` may carry (what `check-write` answers): each write is
/// one host call, and bounding it bounds the host time a call spends here.
const MAX_WRITE: usize = 64 * 1024;

impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        // WASI lets a stream refuse more than `check-write` allowed; wasmtime
        // passes any length through, so the limit is enforced here.
        if bytes.len() > MAX_WRITE {
            return Err(wasmtime_wasi::p2::StreamError::Trap(wasmtime::Error::msg(
                format!(
                    "wrote {} bytes to stdout/stderr at once; check-write allows {MAX_WRITE}",
                    bytes.len()
                ),
            )));
        }
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_WRITE)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // A short write: the caller writes the rest in later calls.
        let n = buf.len().min(MAX_WRITE);
        self.write_bytes(&buf[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_clock_reads_a_set_time_then_the_real_one_again() {
        let c = PluginClock::default();
        let real = |d: Duration| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.abs_diff(d) < Duration::from_secs(60)
        };
        assert!(real(c.now()));
        c.set(Some(1_700_000_000_123));
        assert_eq!(c.now(), Duration::from_millis(1_700_000_000_123));
        let wasi: &dyn wasmtime_wasi::HostWallClock = &c.clone();
        assert_eq!(wasi.now(), Duration::from_millis(1_700_000_000_123));
        c.set(None);
        assert!(real(c.now()));
    }

    fn lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        split_lines(partial, bytes, |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        });
        out
    }

    #[test]
    fn output_is_cut_into_lines_across_writes() {
        let mut partial = Vec::new();
        assert_eq!(lines(&mut partial, b"a\nbc"), ["a"]);
        assert_eq!(lines(&mut partial, b"d\n\ne"), ["bcd", ""]);
        assert_eq!(partial, b"e");
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(lines(&mut partial, &long).len(), 1);
        assert!(partial.is_empty());
        assert_eq!(lines(&mut partial, &[b'\n'; 1000]).len(), 1000);
    }

    /// Found in review: the cap was checked per memory, and a store may hold 16
    /// (a module's own, the adapter's, or multi-memory): a plugin could keep 16x
    /// its `memory_mb` resident. Tables likewise, 64 x 100,000 elements.
    #[test]
    fn the_caps_count_every_memory_and_table_of_the_instance() {
        let mut cap = MemoryCap::new(64 << 20);
        assert!(cap.memory_growing(0, 40 << 20, None).unwrap());
        assert!(cap.memory_growing(0, 16 << 20, None).unwrap());
        // 40 + 16 + 10 MiB would pass one memory's check, not the total.
        assert!(cap.memory_growing(16 << 20, 26 << 20, None).is_err());
        assert!(cap.hit);
        let mut cap = MemoryCap::new(64 << 20);
        assert!(cap.memory_growing(0, 60 << 20, None).unwrap());
        assert!(cap.memory_growing(60 << 20, 64 << 20, None).unwrap());
        assert!(!cap.hit);
        assert!(cap.table_growing(0, MAX_TABLE_ELEMENTS - 10, None).unwrap());
        assert!(!cap.table_growing(0, 20, None).unwrap());
        assert!(cap.table_growing(0, 10, None).unwrap());
    }

    /// Found in review of the summing cap: a grow the limiter allowed but the
    /// memory's own maximum refused stayed counted, and later valid grows hit a
    /// false "memory cap reached" (a memory fault, toward quarantine).
    #[test]
    fn grows_refused_by_the_memorys_own_maximum_are_not_counted() {
        let engine = wasmtime::Engine::default();
        let m = wasmtime::Module::new(
            &engine,
            r#"(module (memory 1 2) (func (export "f") (result i32)
                (drop (memory.grow (i32.const 2)))
                (drop (memory.grow (i32.const 2)))
                (memory.grow (i32.const 1))))"#,
        )
        .unwrap();
        let mut store = wasmtime::Store::new(&engine, MemoryCap::new(4 * 65536));
        store.limiter(|c| c);
        let f = wasmtime::Instance::new(&mut store, &m, &[])
            .unwrap()
            .get_typed_func::<(), i32>(&mut store, "f")
            .unwrap();
        // The third grow (1 page, to 2 of 4 allowed) succeeds: old size 1.
        assert_eq!(f.call(&mut store, ()).unwrap(), 1);
        assert!(!store.data().hit);
    }

    /// Found in review: `write` took any length (wasmtime passes it through),
    /// and one call's host time grew with it, outside fuel and the deadline.
    #[test]
    fn a_write_beyond_check_write_is_refused() {
        let mut s = LogStream {
            log: Arc::new(Mutex::new(LogLimiter::new("w".into()))),
            level: LogLevel::Info,
        };
        let allowed = s.check_write().unwrap();
        assert!(s.write(bytes::Bytes::from(vec![b'\n'; allowed])).is_ok());
        assert!(s
            .write(bytes::Bytes::from(vec![b'\n'; allowed + 1]))
            .is_err());
    }
}
