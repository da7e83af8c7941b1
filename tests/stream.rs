//! htlcgate's interceptor loop against the mock LND over real TLS gRPC on loopback:
//! every HTLC answered exactly once and validly, faults contained, replays, budget,
//! shutdown.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{forward, plugin, plugin_with};
use htlcgate::chain::{Chain, DecidedBy};
use htlcgate::config::{ChainConfig, DefaultVerdict, OnFault, PluginConfig, SandboxConfig};
use htlcgate::gate::{DecisionEvent, Gate};
use htlcgate::lnd::proto::lnrpc::failure::FailureCode;
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptResponse, ResolveHoldForwardAction};
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::verdict::Verdict;
use htlcgate::wasm::engine::Sandbox;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

struct Harness {
    mock: MockLnd,
    gate: Arc<Gate>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    events: mpsc::UnboundedReceiver<DecisionEvent>,
    _dir: tempfile::TempDir,
}

async fn start(plugins: Vec<PluginConfig>, chain: ChainConfig, require: bool) -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path());
    opts.require_interceptor = require;
    let mock = MockLnd::start(opts).await.unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let loaded = Chain::load(&sandbox, &plugins, chain.default_verdict.verdict())
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, events) = mpsc::unbounded_channel();
    let gate = Gate::new(
        loaded,
        chain,
        htlcgate::journal::Journal::in_memory(),
        Some(tx),
    );
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(htlcgate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        stop_rx,
    ));
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    Harness {
        mock,
        gate,
        stop,
        task,
        events,
        _dir: dir,
    }
}

impl Harness {
    /// Responses accepted by the mock, by key; panics on a key answered twice.
    fn answers(&self) -> HashMap<(u64, u64), ForwardHtlcInterceptResponse> {
        common::answers(&self.mock)
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

    async fn shutdown(self) -> MockLnd {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("shutdown finished")
            .unwrap();
        self.mock
    }
}

fn action(r: &ForwardHtlcInterceptResponse) -> ResolveHoldForwardAction {
    r.action()
}

/// The example policy in plain Rust, to check htlcgate's verdicts against.
fn expected(out: u64, incoming: u64) -> ResolveHoldForwardAction {
    let fee = incoming.saturating_sub(out) as u128;
    let floor = 1000u128 + (out as u128) * 100 / 1_000_000;
    if out > 5_000_000_000 || fee < floor {
        ResolveHoldForwardAction::Fail
    } else {
        ResolveHoldForwardAction::Resume
    }
}

fn example_chain() -> Vec<PluginConfig> {
    vec![
        plugin_with("max-htlc", &[("max_msat", "5000000000")]),
        plugin_with("fee-floor", &[("base_msat", "1000"), ("ppm", "100")]),
    ]
}

fn mixed(id: u64) -> (u64, u64) {
    let mut rng = fastrand::Rng::with_seed(id);
    let out = match id % 7 {
        0 => 1,
        1 => u64::MAX / 2,
        2 => 5_000_000_000,
        3 => 5_000_000_001,
        _ => rng.u64(1_000..3_000_000_000),
    };
    let floor = 1000 + out / 10_000;
    let fee = match id % 5 {
        0 => floor,
        1 => floor - 1,
        2 => 0,
        _ => rng.u64(0..floor * 3),
    };
    (out, fee)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_htlcs_are_each_answered_exactly_once_and_validly() {
    let h = start(example_chain(), ChainConfig::default(), false).await;
    let mut sent = HashMap::new();
    for id in 0..1000u64 {
        let (out, fee) = mixed(id);
        let req = forward(id, out, fee);
        sent.insert((1, id), (out, req.incoming_amount_msat));
        h.mock.send_htlc(req);
    }
    h.mock
        .wait_resolved(1000, Duration::from_secs(60))
        .await
        .unwrap();
    let answers = h.answers();
    assert_eq!(answers.len(), 1000);
    for (key, (out, incoming)) in &sent {
        let r = &answers[key];
        assert_eq!(
            action(r),
            expected(*out, *incoming),
            "key {key:?} out={out} in={incoming}"
        );
        if action(r) == ResolveHoldForwardAction::Fail {
            assert_eq!(r.failure_code(), FailureCode::TemporaryChannelFailure);
            assert!(r.failure_message.is_empty());
        }
    }
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_chain_gives_every_htlc_the_default_verdict() {
    let cfg = ChainConfig {
        default_verdict: DefaultVerdict::Fail,
        ..ChainConfig::default()
    };
    let h = start(vec![], cfg, false).await;
    for id in 0..20 {
        h.mock.send_htlc(forward(id, 1000, 0));
    }
    h.mock
        .wait_resolved(20, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(h
        .answers()
        .values()
        .all(|r| action(r) == ResolveHoldForwardAction::Fail));
    h.assert_stream_never_ended();
    h.shutdown().await;
}

fn fixture(name: &str, on_fault: OnFault) -> PluginConfig {
    let mut p = plugin(name);
    p.on_fault = on_fault;
    p.max_faults = 1000;
    if name == "memory-hog" {
        p.memory_bytes = 2 << 20;
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_fixture_is_contained_by_its_on_fault_policy() {
    for name in ["spin-forever", "trap", "memory-hog", "wrong-preimage"] {
        for (policy, want) in [
            (OnFault::Fail, ResolveHoldForwardAction::Fail),
            (OnFault::Resume, ResolveHoldForwardAction::Resume),
            // skip: the next plugin (fixed-verdict: fail) decides, an answer that
            // differs from the chain's default (resume), so the skip is visible.
            (OnFault::Skip, ResolveHoldForwardAction::Fail),
        ] {
            let mut chain = vec![fixture(name, policy)];
            if policy == OnFault::Skip {
                chain.push(plugin_with("fixed-verdict", &[("verdict", "fail")]));
            }
            let h = start(chain, ChainConfig::default(), false).await;
            for id in 0..4 {
                h.mock.send_htlc(forward(id, 1000, 2000));
            }
            h.mock
                .wait_resolved(4, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{name} {policy:?}: {e}"));
            for r in h.answers().values() {
                assert_eq!(action(r), want, "{name} with on_fault {policy:?}");
            }
            h.assert_stream_never_ended();
            h.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_preimage_settle_never_reaches_lnd() {
    let mut h = start(
        vec![fixture("wrong-preimage", OnFault::Skip)],
        ChainConfig::default(),
        false,
    )
    .await;
    for id in 0..10 {
        h.mock.send_htlc(forward(id, 1000, 2000));
    }
    h.mock
        .wait_resolved(10, Duration::from_secs(20))
        .await
        .unwrap();
    for r in h.answers().values() {
        assert_ne!(action(r), ResolveHoldForwardAction::Settle);
        assert!(r.preimage.is_empty());
    }
    let ev = h.events.recv().await.unwrap();
    assert!(matches!(
        ev.decision.trace[0].step,
        htlcgate::wasm::plugin::Step::Fault(_)
    ));
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_plugin_is_no_longer_called_and_forwarding_goes_on() {
    let mut p = plugin("spin-forever");
    p.max_faults = 2;
    let mut h = start(vec![p], ChainConfig::default(), false).await;
    for id in 0..6 {
        h.mock.send_htlc(forward(id, 1000, 2000));
    }
    h.mock
        .wait_resolved(6, Duration::from_secs(20))
        .await
        .unwrap();
    let mut steps = Vec::new();
    for _ in 0..6 {
        let ev = h.events.recv().await.unwrap();
        assert_eq!(ev.decision.verdict, Verdict::Resume);
        steps.push(ev.decision.trace[0].step.clone());
    }
    let quarantined = steps
        .iter()
        .filter(|s| matches!(s, htlcgate::wasm::plugin::Step::Quarantined))
        .count();
    assert_eq!(quarantined, 4, "{steps:?}");
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_slower_than_its_budget_gets_the_on_budget_verdict() {
    let mut slow = plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(1500);
    let cfg = ChainConfig {
        budget: Duration::from_millis(200),
        on_budget: DefaultVerdict::Fail,
        ..ChainConfig::default()
    };
    let mut h = start(vec![slow], cfg, false).await;
    h.mock.send_htlc(forward(1, 1000, 2000));
    h.mock
        .wait_resolved(1, Duration::from_secs(5))
        .await
        .unwrap();
    let ev = h.events.recv().await.unwrap();
    assert_eq!(ev.decision.by, DecidedBy::Budget);
    assert_eq!(
        action(&h.answers()[&(1, 1)]),
        ResolveHoldForwardAction::Fail
    );
    h.assert_stream_never_ended();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_stream_then_replay_gives_the_same_verdicts_and_no_double_answer() {
    let h = start(example_chain(), ChainConfig::default(), true).await;
    let mut sent = HashMap::new();
    for id in 0..600u64 {
        let (out, fee) = mixed(id);
        let req = forward(id, out, fee);
        sent.insert((1, id), (out, req.incoming_amount_msat));
        h.mock.send_htlc(req);
        if id == 300 {
            assert!(h.mock.disconnect());
        }
    }
    // HTLCs that arrive while htlcgate is reconnecting are failed back by LND itself
    // (requireinterceptor); every other one is answered by htlcgate exactly once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while h.mock.resolution_count() + h.mock.lnd_outcomes().len() < 600 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every HTLC was resolved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.mock.connects() >= 2, "htlcgate reconnected");
    let answers = h.answers();
    let by_lnd: Vec<_> = h.mock.lnd_outcomes().iter().map(|o| o.key).collect();
    assert_eq!(answers.len() + by_lnd.len(), 600);
    assert!(
        answers.len() >= 300,
        "{} answered by htlcgate",
        answers.len()
    );
    for key in &by_lnd {
        assert!(!answers.contains_key(key), "{key:?} resolved twice");
    }
    for (key, r) in &answers {
        let (out, incoming) = sent[key];
        assert_eq!(action(r), expected(out, incoming), "key {key:?}");
    }
    assert!(h.mock.violations().is_empty(), "{:?}", h.mock.violations());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_htlcs_in_flight_then_closes_the_stream() {
    let mut slow = plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(100);
    slow.max_faults = 1000;
    slow.on_fault = OnFault::Fail;
    let h = start(vec![slow], ChainConfig::default(), true).await;
    for id in 0..5 {
        h.mock.send_htlc(forward(id, 1000, 2000));
    }
    // Wait until htlcgate has taken all five (requests still unread when the stop
    // comes are new HTLCs, which it rightly does not take).
    for _ in 0..500 {
        if h.gate.in_flight() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(h.gate.in_flight(), 5);
    let mock = h.shutdown().await;
    assert_eq!(mock.resolution_count(), 5, "every HTLC in flight answered");
    assert_eq!(mock.held_count(), 0);
    assert!(mock.violations().is_empty());
}

/// A reload that shortened the budget does not shorten the shutdown drain for a
/// decision still running on the older chain, under its longer budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_decision_on_an_older_chain_with_a_longer_budget() {
    let mut slow = plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(1500);
    slow.on_fault = OnFault::Fail;
    let long = ChainConfig {
        budget: Duration::from_secs(3),
        ..ChainConfig::default()
    };
    let h = start(vec![slow], long, true).await;
    h.mock.send_htlc(forward(1, 1000, 2000));
    for _ in 0..500 {
        if h.gate.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(h.gate.in_flight(), 1);
    // Reloaded: new HTLCs get a chain with a 100 ms budget.
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let empty = Chain::load(&sandbox, &[], Verdict::Resume).unwrap();
    let short = ChainConfig {
        budget: Duration::from_millis(100),
        ..ChainConfig::default()
    };
    h.gate.swap(empty, short);
    let mock = h.shutdown().await;
    // Decided at ~1.5 s (the plugin's deadline, on_fault fail), within the old
    // chain's 3 s budget: answered before the stream closed.
    assert_eq!(
        mock.resolution_count(),
        1,
        "the decision on the older chain was cut off"
    );
    assert!(mock.violations().is_empty());
}
