//! Adversarial plugins (issue 5, "Hostile input"): log spam, deep recursion, a
//! memory.grow to the cap, a long `init`, a huge custom-record list. Each is loaded
//! on its own into the real sandbox, then run in a chain against the mock LND over
//! TLS gRPC: every HTLC is answered by the plugin's `on_fault` policy, the next HTLC
//! is decided too, and the stream never ends.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{forward, input, plugin_with};
use htlcgate::chain::{Chain, DecidedBy};
use htlcgate::config::{ChainConfig, OnFault, PluginConfig, SandboxConfig};
use htlcgate::gate::{DecisionEvent, Gate};
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptResponse, ResolveHoldForwardAction};
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::verdict::{InvalidVerdict, Verdict};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::fault::PluginFault;
use htlcgate::wasm::plugin::{LoadError, Plugin, Step};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The host's log limiter (`host/wasm/imports.rs`): lines a plugin may write in a
/// burst, and lines per second after it.
const LOG_BURST: f64 = 50.0;
const LOG_RATE: f64 = 10.0;
/// Longest line the host writes (`MAX_LINE` in `host/wasm/imports.rs`).
const MAX_LINE: usize = 1024;

/// Captures htlcgate's own tracing events (the operator's log) for assertions.
mod capture {
    use std::fmt;
    use std::sync::{Mutex, Once};

    use tracing::field::{Field, Visit};
    use tracing::subscriber::Interest;
    use tracing::{Event, Level, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// One event.
    #[derive(Clone, Debug)]
    pub struct Line {
        pub target: String,
        pub level: Level,
        pub plugin: Option<String>,
        pub message: String,
    }

    static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();

    struct Capture;

    fn ours(meta: &Metadata<'_>) -> bool {
        meta.target().starts_with("htlcgate")
    }

    impl<S: Subscriber> Layer<S> for Capture {
        fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
            if ours(meta) {
                Interest::always()
            } else {
                Interest::never()
            }
        }

        fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
            ours(meta)
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let meta = event.metadata();
            LINES.lock().unwrap_or_else(|p| p.into_inner()).push(Line {
                target: meta.target().to_owned(),
                level: *meta.level(),
                plugin: fields.plugin,
                message: fields.message,
            });
        }
    }

    #[derive(Default)]
    struct Fields {
        plugin: Option<String>,
        message: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "plugin" => self.plugin = Some(value.to_owned()),
                "message" => self.message = value.to_owned(),
                _ => {}
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            match field.name() {
                "plugin" => self.plugin = Some(format!("{value:?}")),
                "message" => self.message = format!("{value:?}"),
                _ => {}
            }
        }
    }

    /// Installs the capturing subscriber as the global default (once per test
    /// binary; plugins log from their own threads).
    pub fn install() {
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
                .expect("no other global subscriber in this test binary");
        });
    }

    /// Lines a plugin wrote (log import, stdout, stderr) that reached the log,
    /// without the host's own notes about dropped lines.
    pub fn plugin_lines(plugin: &str) -> Vec<Line> {
        LINES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| {
                l.target == "htlcgate::wasm::imports"
                    && l.plugin.as_deref() == Some(plugin)
                    && l.message != "plugin log lines dropped by the rate limit"
            })
            .cloned()
            .collect()
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(&SandboxConfig::default()).unwrap()
}

fn load(cfg: PluginConfig) -> Plugin {
    Plugin::load(&sandbox(), cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixture entry named `name` (unique per test, so log lines can be told apart)
/// that is never quarantined during a test.
fn fixture(file: &str, name: &str, config: &[(&str, &str)]) -> PluginConfig {
    let mut p = plugin_with(file, config);
    p.name = name.to_owned();
    p.max_faults = 1000;
    p
}

/// Most lines the limiter lets through in `elapsed` from a full bucket (one more
/// for rounding at the edges).
fn log_allowance(elapsed: Duration) -> usize {
    (LOG_BURST + LOG_RATE * elapsed.as_secs_f64()).floor() as usize + 1
}

fn is_cut_off(step: &Step) -> bool {
    matches!(
        step,
        Step::Fault(PluginFault::FuelExhausted { .. } | PluginFault::Deadline { .. })
    )
}

// ---------------------------------------------------------------------------
// log-spam
// ---------------------------------------------------------------------------

#[test]
fn log_spam_is_cut_off_and_the_log_gets_at_most_the_burst() {
    capture::install();
    let started = Instant::now();
    // Defaults: a million 100 KB lines each through log, stdout and stderr.
    let mut p = load(fixture("log-spam", "log-spam-burst", &[]));
    let (step, _) = p.decide(&input(forward(1, 1000, 10)));
    let elapsed = started.elapsed();
    assert!(is_cut_off(&step), "{step:?}");
    let lines = capture::plugin_lines("log-spam-burst");
    assert!(
        !lines.is_empty(),
        "the capture saw no line at all: it would prove nothing"
    );
    assert!(
        lines.len() <= log_allowance(elapsed),
        "{} lines reached the log in {elapsed:?}",
        lines.len()
    );
    for l in &lines {
        assert!(
            l.message.len() <= MAX_LINE,
            "a {}-byte line",
            l.message.len()
        );
    }
    // The instance was replaced after the fault; the plugin still answers.
    assert!(!p.is_quarantined());
    assert!(is_cut_off(&p.decide(&input(forward(2, 1000, 10))).0));
}

#[test]
fn log_spam_that_finishes_answers_and_stays_within_the_rate_over_calls() {
    capture::install();
    for (via, level) in [
        ("log", tracing::Level::INFO),
        ("stdout", tracing::Level::INFO),
        ("stderr", tracing::Level::WARN),
    ] {
        let name = format!("log-spam-finish-{via}");
        let started = Instant::now();
        let mut cfg = fixture(
            "log-spam",
            &name,
            &[("lines", "500"), ("line_bytes", "100"), ("via", via)],
        );
        cfg.fuel = 1_000_000_000;
        cfg.timeout = Duration::from_secs(10);
        let mut p = load(cfg);
        for id in 0..3 {
            let (step, _) = p.decide(&input(forward(id, 1000, 10)));
            assert_eq!(step, Step::Next, "via {via}, call {id}");
        }
        let elapsed = started.elapsed();
        let lines = capture::plugin_lines(&name);
        // The bucket starts full, so at least the burst went out; 1500 lines were
        // written, so the limiter is what stopped the rest.
        assert!(
            lines.len() >= LOG_BURST as usize,
            "via {via}: {}",
            lines.len()
        );
        assert!(
            lines.len() <= log_allowance(elapsed),
            "via {via}: {} lines reached the log in {elapsed:?}",
            lines.len()
        );
        assert!(lines.iter().all(|l| l.level == level), "via {via}");
    }
}

/// A trapped instance gets a new store, but the log limiter belongs to the plugin:
/// spamming and then faulting does not refill the burst.
#[test]
fn log_spam_cannot_refill_its_burst_by_faulting() {
    capture::install();
    let started = Instant::now();
    let mut p = load(fixture("log-spam", "log-spam-refill", &[]));
    for id in 0..5 {
        assert!(is_cut_off(&p.decide(&input(forward(id, 1000, 10))).0));
    }
    let elapsed = started.elapsed();
    let lines = capture::plugin_lines("log-spam-refill");
    assert!(
        lines.len() <= log_allowance(elapsed),
        "{} lines reached the log in {elapsed:?} over 5 faulting calls",
        lines.len()
    );
}

// ---------------------------------------------------------------------------
// deep-recursion
// ---------------------------------------------------------------------------

#[test]
fn unbounded_recursion_is_a_stack_overflow_fault_and_the_plugin_recovers() {
    let mut p = load(fixture("deep-recursion", "deep-recursion", &[]));
    for id in 0..3 {
        let (step, _) = p.decide(&input(forward(id, 1000, 10)));
        assert_eq!(step, Step::Fault(PluginFault::StackOverflow), "call {id}");
    }
    assert!(!p.is_quarantined());
}

#[test]
fn bounded_recursion_answers() {
    let mut p = load(fixture(
        "deep-recursion",
        "deep-recursion-bounded",
        &[("depth", "1000")],
    ));
    assert_eq!(p.decide(&input(forward(1, 1000, 10))).0, Step::Next);
    assert_eq!(p.decide(&input(forward(2, 1000, 10))).0, Step::Next);
}

#[test]
fn recursion_with_frames_in_linear_memory_is_contained() {
    // Each level also holds 1 KiB on the guest's shadow stack, in linear memory:
    // whichever stack runs out first, the call faults and the next one runs.
    let mut p = load(fixture(
        "deep-recursion",
        "deep-recursion-array",
        &[("frame", "array")],
    ));
    for id in 0..2 {
        let (step, _) = p.decide(&input(forward(id, 1000, 10)));
        assert!(
            matches!(
                step,
                Step::Fault(PluginFault::StackOverflow | PluginFault::Trap { .. })
            ),
            "{step:?}"
        );
    }
    assert!(!p.is_quarantined());
}

// ---------------------------------------------------------------------------
// grow-to-cap
// ---------------------------------------------------------------------------

const CAP_BYTES: usize = 4 << 20;
const CAP_PAGES: usize = CAP_BYTES / 65536;

fn grow_to_cap(name: &str, config: &[(&str, &str)]) -> PluginConfig {
    let mut p = fixture("grow-to-cap", name, config);
    p.memory_bytes = CAP_BYTES;
    p
}

#[test]
fn one_grow_past_the_cap_is_a_memory_fault() {
    for (name, key, pages) in [
        ("grow-cap-plus-one", "pages", CAP_PAGES + 1),
        ("grow-huge-delta", "delta_pages", 1000),
    ] {
        let mut p = load(grow_to_cap(name, &[(key, &pages.to_string())]));
        for id in 0..2 {
            let (step, _) = p.decide(&input(forward(id, 1000, 10)));
            assert_eq!(
                step,
                Step::Fault(PluginFault::MemoryCap {
                    limit_bytes: CAP_BYTES
                }),
                "{name} call {id}"
            );
        }
    }
}

#[test]
fn growing_to_exactly_the_cap_or_just_below_it_answers() {
    for pages in [CAP_PAGES, CAP_PAGES - 1] {
        let mut p = load(grow_to_cap(
            &format!("grow-to-{pages}"),
            &[("pages", &pages.to_string())],
        ));
        for id in 0..3 {
            let (step, _) = p.decide(&input(forward(id, 1000, 10)));
            assert_eq!(step, Step::Next, "{pages} pages, call {id}");
        }
    }
}

// ---------------------------------------------------------------------------
// slow-init
// ---------------------------------------------------------------------------

fn init_fault(cfg: PluginConfig) -> PluginFault {
    let name = cfg.name.clone();
    let path = cfg.path.clone();
    match Plugin::load(&sandbox(), cfg) {
        Ok(_) => panic!("{name}: a never-ending init loaded"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("plugin `{name}`")), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            match e {
                LoadError::InitFault { plugin, fault, .. } => {
                    assert_eq!(plugin, name);
                    fault
                }
                other => panic!("not an init fault: {other}"),
            }
        }
    }
}

#[test]
fn an_init_that_never_ends_is_refused_by_init_fuel() {
    let mut cfg = fixture("slow-init", "slow-init-fuel", &[("spins", "forever")]);
    cfg.init_fuel = 20_000_000;
    cfg.init_timeout = Duration::from_secs(600);
    assert_eq!(
        init_fault(cfg),
        PluginFault::FuelExhausted { fuel: 20_000_000 }
    );
}

#[test]
fn an_init_that_never_ends_is_refused_by_init_timeout() {
    let mut cfg = fixture("slow-init", "slow-init-deadline", &[]);
    cfg.init_fuel = u64::MAX / 2;
    cfg.init_timeout = Duration::from_millis(100);
    assert_eq!(
        init_fault(cfg),
        PluginFault::Deadline {
            timeout: Duration::from_millis(100)
        }
    );
}

#[test]
fn an_init_that_never_ends_refuses_the_whole_chain_before_lnd() {
    let mut cfg = fixture("slow-init", "slow-init-chain", &[]);
    cfg.init_fuel = 20_000_000;
    let chain = vec![plugin_with("fixed-verdict", &[("verdict", "resume")]), cfg];
    let err = Chain::load(&sandbox(), &chain, Verdict::Resume)
        .err()
        .expect("the chain must not load");
    assert!(
        matches!(&err, LoadError::InitFault { plugin, .. } if plugin == "slow-init-chain"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// sleep (a wait in WASI host code, where fuel and the epoch do not run)
// ---------------------------------------------------------------------------

/// Runs `f` on its own thread and gives up after `limit` (the bug these tests
/// catch is a call that never returns).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the call did not return: a wait in host code outlived its deadline")
}

/// Found in review: `std::thread::sleep` (a WASI `pollable.block`) ran in host
/// code, where neither fuel nor the epoch deadline counts: a plugin that slept
/// an hour held its stage for an hour, never faulted, never was quarantined,
/// and every HTLC meanwhile ran out of the chain's budget.
#[test]
fn a_sleep_in_decide_ends_at_the_timeout_as_a_deadline_fault() {
    let mut cfg = fixture("sleep", "sleep-decide", &[]);
    cfg.timeout = Duration::from_millis(200);
    let mut p = load(cfg);
    let (steps, quarantined) = within(Duration::from_secs(60), move || {
        let steps: Vec<Step> = (0..2)
            .map(|id| p.decide(&input(forward(id, 1000, 10))).0)
            .collect();
        (steps, p.is_quarantined())
    });
    for step in steps {
        assert_eq!(
            step,
            Step::Fault(PluginFault::Deadline {
                timeout: Duration::from_millis(200)
            })
        );
    }
    assert!(!quarantined);
}

#[test]
fn a_sleep_shorter_than_the_timeout_answers() {
    let mut cfg = fixture("sleep", "sleep-short", &[("decide_ms", "5")]);
    cfg.timeout = Duration::from_secs(10);
    let mut p = load(cfg);
    assert_eq!(p.decide(&input(forward(1, 1000, 10))).0, Step::Next);
}

#[test]
fn a_sleep_in_init_is_refused_at_the_init_timeout() {
    let mut cfg = fixture("sleep", "sleep-init", &[("init_ms", "3600000")]);
    cfg.init_timeout = Duration::from_millis(200);
    let fault = within(Duration::from_secs(60), move || init_fault(cfg));
    assert_eq!(
        fault,
        PluginFault::Deadline {
            timeout: Duration::from_millis(200)
        }
    );
}

/// A finite slow init (a few million iterations, well within the default
/// `init_fuel`), with a deadline generous enough for a loaded machine.
fn slow_init(name: &str, config: &[(&str, &str)]) -> PluginConfig {
    let mut p = fixture("slow-init", name, config);
    p.init_timeout = Duration::from_secs(30);
    p
}

#[test]
fn a_slow_but_finite_init_loads_and_runs_again_after_each_trap() {
    let mut p = load(slow_init("slow-init-finite", &[("spins", "2000000")]));
    assert_eq!(p.decide(&input(forward(1, 1000, 10))).0, Step::Next);

    let mut p = load(slow_init(
        "slow-init-trap",
        &[("spins", "2000000"), ("decide", "trap")],
    ));
    for id in 0..3 {
        let (step, _) = p.decide(&input(forward(id, 1000, 10)));
        // A trap, not NoInstance: the slow init ran again, within init_fuel.
        assert!(
            matches!(step, Step::Fault(PluginFault::Trap { .. })),
            "call {id}: {step:?}"
        );
    }
    assert!(!p.is_quarantined());
}

// ---------------------------------------------------------------------------
// huge-records
// ---------------------------------------------------------------------------

fn huge_records(name: &str, config: &[(&str, &str)]) -> PluginConfig {
    let mut p = fixture("huge-records", name, config);
    p.fuel = 1_000_000_000;
    p.timeout = Duration::from_secs(10);
    p
}

fn is_too_large(step: &Step) -> bool {
    matches!(
        step,
        Step::Fault(PluginFault::InvalidVerdict(
            InvalidVerdict::WireRecordsTooLarge(_)
        ))
    )
}

#[test]
fn a_huge_record_list_is_an_invalid_verdict() {
    for (name, config) in [
        ("records-100k", &[("count", "100000")][..]),
        (
            "records-8mib",
            &[("count", "1"), ("value_bytes", "8388608")][..],
        ),
        (
            "records-4x64k",
            &[("count", "4"), ("value_bytes", "65536")][..],
        ),
    ] {
        let mut p = load(huge_records(name, config));
        for id in 0..2 {
            let (step, _) = p.decide(&input(forward(id, 1000, 10)));
            assert!(is_too_large(&step), "{name} call {id}: {step:?}");
        }
        assert!(!p.is_quarantined());
    }
}

#[test]
fn a_modest_record_list_is_sent() {
    let mut p = load(huge_records(
        "records-10",
        &[("count", "10"), ("value_bytes", "100")],
    ));
    let (step, _) = p.decide(&input(forward(1, 1000, 10)));
    let Step::Verdict(Verdict::ResumeModified(m)) = step else {
        panic!("{step:?}");
    };
    assert_eq!(m.out_wire_custom_records.len(), 10);
    assert!(m
        .out_wire_custom_records
        .iter()
        .all(|(k, v)| *k >= 65536 && v.len() == 100));
}

// ---------------------------------------------------------------------------
// Each fixture in a chain against the mock LND
// ---------------------------------------------------------------------------

struct Harness {
    mock: MockLnd,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    events: mpsc::UnboundedReceiver<DecisionEvent>,
    _dir: tempfile::TempDir,
}

async fn start(plugins: Vec<PluginConfig>) -> Harness {
    start_in(&sandbox(), plugins).await
}

/// [`start`] with a sandbox of the caller's.
async fn start_in(sandbox: &Sandbox, plugins: Vec<PluginConfig>) -> Harness {
    capture::install();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    let cfg = ChainConfig::default();
    let loaded = Chain::load(sandbox, &plugins, cfg.default_verdict.verdict())
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, events) = mpsc::unbounded_channel();
    let gate = Gate::new(
        loaded,
        cfg,
        htlcgate::journal::Journal::in_memory(),
        Some(tx),
    );
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(htlcgate::lnd::stream::run(mock.endpoint(), gate, stop_rx));
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    Harness {
        mock,
        stop,
        task,
        events,
        _dir: dir,
    }
}

impl Harness {
    /// Sends `n` HTLCs one after the other (each answered before the next is
    /// sent, so "the next HTLC is still decided" is literal) and returns the
    /// answers and decisions by key.
    async fn run(
        &mut self,
        n: u64,
    ) -> HashMap<(u64, u64), (ForwardHtlcInterceptResponse, DecisionEvent)> {
        for id in 0..n {
            self.mock.send_htlc(forward(id, 1000, 2000));
            self.mock
                .wait_resolved(id as usize + 1, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "HTLC {id} unanswered: {e}; stream ends {:?}",
                        self.mock.stream_ends()
                    )
                });
        }
        let mut events = HashMap::new();
        for _ in 0..n {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("a decision event per HTLC")
                .unwrap();
            events.insert((ev.key.chan_id, ev.key.htlc_id), ev);
        }
        let mut out = HashMap::new();
        for r in self.mock.resolutions() {
            let ev = events.remove(&r.key).expect("a decision for every answer");
            assert!(
                out.insert(r.key, (r.response, ev)).is_none(),
                "key {:?} answered twice",
                r.key
            );
        }
        out
    }

    fn assert_stream_never_ended(&self) {
        assert!(
            self.mock.violations().is_empty(),
            "LND rules broken: {:?}",
            self.mock.violations()
        );
        assert_eq!(
            self.mock.connects(),
            1,
            "stream ended: {:?}",
            self.mock.stream_ends()
        );
    }

    async fn shutdown(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("shutdown finished")
            .unwrap();
        drop(self.mock);
    }
}

/// Runs `cfg` first in a chain under each `on_fault` policy (followed, for
/// `skip`, by `fixed-verdict` answering fail, so the skip is visible against the
/// chain's default resume) and checks that every HTLC got the policy's answer,
/// that the fixture's step was what `expect` says, and that the stream lived.
async fn contained(cfg: PluginConfig, expect: fn(&Step) -> bool) {
    const HTLCS: u64 = 3;
    for (policy, want) in [
        (OnFault::Fail, ResolveHoldForwardAction::Fail),
        (OnFault::Resume, ResolveHoldForwardAction::Resume),
        (OnFault::Skip, ResolveHoldForwardAction::Fail),
    ] {
        let mut fx = cfg.clone();
        fx.on_fault = policy;
        let name = fx.name.clone();
        let mut chain = vec![fx];
        if policy == OnFault::Skip {
            chain.push(plugin_with("fixed-verdict", &[("verdict", "fail")]));
        }
        let mut h = start(chain).await;
        let answers = h.run(HTLCS).await;
        assert_eq!(answers.len(), HTLCS as usize, "{name} {policy:?}");
        for (key, (resp, ev)) in &answers {
            assert_eq!(resp.action(), want, "{name} {policy:?} {key:?}");
            let step = &ev.decision.trace[0].step;
            assert!(expect(step), "{name} {policy:?} {key:?}: {step:?}");
            let by = match policy {
                OnFault::Skip => DecidedBy::Plugin("fixed-verdict".into()),
                _ => DecidedBy::FaultPolicy(name.as_str().into()),
            };
            assert_eq!(ev.decision.by, by, "{name} {policy:?} {key:?}");
        }
        h.assert_stream_never_ended();
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_spam_in_a_chain_is_contained() {
    let started = Instant::now();
    contained(fixture("log-spam", "log-spam-chain", &[]), is_cut_off).await;
    // Three chains (one per on_fault policy), each with its own plugin and so its
    // own log limiter; faults replace instances but not the limiter.
    let plugins = 3;
    let lines = capture::plugin_lines("log-spam-chain").len();
    assert!(lines > 0);
    assert!(
        lines <= plugins * log_allowance(started.elapsed()),
        "{lines} lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_spam_that_finishes_in_a_chain_is_rate_limited_and_forwarding_goes_on() {
    let started = Instant::now();
    let mut cfg = fixture(
        "log-spam",
        "log-spam-chain-finish",
        &[("lines", "300"), ("line_bytes", "100")],
    );
    cfg.fuel = 1_000_000_000;
    cfg.timeout = Duration::from_secs(10);
    let mut h = start(vec![cfg]).await;
    let answers = h.run(5).await;
    for (key, (resp, ev)) in &answers {
        // The plugin finished and said next: the chain's default (resume).
        assert_eq!(resp.action(), ResolveHoldForwardAction::Resume, "{key:?}");
        assert_eq!(ev.decision.trace[0].step, Step::Next, "{key:?}");
    }
    h.assert_stream_never_ended();
    h.shutdown().await;
    // 5 calls x 300 lines x 3 channels written; one instance, one bucket.
    let lines = capture::plugin_lines("log-spam-chain-finish").len();
    assert!(lines >= LOG_BURST as usize, "{lines}");
    assert!(
        lines <= log_allowance(started.elapsed()),
        "{lines} lines in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_in_a_chain_is_contained() {
    contained(fixture("deep-recursion", "deep-recursion", &[]), |s| {
        *s == Step::Fault(PluginFault::StackOverflow)
    })
    .await;
}

/// Found in review: the config accepted stacks up to 8 MiB, which the engine
/// refused at start, and a wasm stack near the plugin threads' own 2 MiB would
/// run off the native stack (an abort of the whole daemon) before wasmtime's
/// limit. The largest stack the config accepts must start and must still end a
/// runaway recursion as a fault on the thread that runs plugins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_with_the_largest_stack_the_config_accepts_is_contained() {
    let largest = *htlcgate::config::MAX_WASM_STACK_KB.end();
    let dir = tempfile::tempdir().unwrap();
    let cfg = htlcgate::config::Config::parse(
        &format!("[sandbox]\nmax_wasm_stack_kb = {largest}\n"),
        &dir.path().join("htlcgate.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sandbox = Sandbox::new(&cfg.sandbox).unwrap_or_else(|e| panic!("{largest} KiB: {e}"));
    let mut fx = fixture("deep-recursion", "deep-recursion-largest", &[]);
    fx.on_fault = OnFault::Fail;
    let mut h = start_in(&sandbox, vec![fx]).await;
    for (key, (resp, ev)) in &h.run(2).await {
        assert_eq!(resp.action(), ResolveHoldForwardAction::Fail, "{key:?}");
        assert_eq!(
            ev.decision.trace[0].step,
            Step::Fault(PluginFault::StackOverflow),
            "{key:?}"
        );
    }
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_past_the_cap_in_a_chain_is_contained() {
    contained(
        grow_to_cap("grow-to-cap", &[("pages", &(CAP_PAGES + 1).to_string())]),
        |s| {
            *s == Step::Fault(PluginFault::MemoryCap {
                limit_bytes: CAP_BYTES,
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_just_below_the_cap_in_a_chain_answers() {
    let mut h = start(vec![grow_to_cap(
        "grow-below-cap",
        &[("pages", &(CAP_PAGES - 1).to_string())],
    )])
    .await;
    for (key, (resp, ev)) in h.run(3).await {
        assert_eq!(resp.action(), ResolveHoldForwardAction::Resume, "{key:?}");
        assert_eq!(ev.decision.trace[0].step, Step::Next, "{key:?}");
    }
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_init_that_traps_in_decide_in_a_chain_is_contained() {
    contained(
        slow_init(
            "slow-init-trap",
            &[("spins", "2000000"), ("decide", "trap")],
        ),
        |s| matches!(s, Step::Fault(PluginFault::Trap { .. })),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_record_lists_in_a_chain_never_reach_lnd() {
    contained(
        huge_records("records-100k", &[("count", "100000")]),
        is_too_large,
    )
    .await;
    // 8 MiB in one value. Before the cap, this one was sent and ended the mock's
    // stream (tonic's default 4 MiB receive limit; LND's is 200 MiB), and LND
    // resumed the HTLC unchanged.
    contained(
        huge_records(
            "records-8mib",
            &[("count", "1"), ("value_bytes", "8388608")],
        ),
        is_too_large,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modest_record_list_in_a_chain_reaches_lnd() {
    let mut h = start(vec![huge_records(
        "records-10-chain",
        &[("count", "10"), ("value_bytes", "100")],
    )])
    .await;
    for (key, (resp, _)) in h.run(3).await {
        assert_eq!(
            resp.action(),
            ResolveHoldForwardAction::ResumeModified,
            "{key:?}"
        );
        assert_eq!(resp.out_wire_custom_records.len(), 10);
    }
    h.assert_stream_never_ended();
    h.shutdown().await;
}
