//! The gate's one-answer-per-request rule and replays, driven directly (no network),
//! with plugins whose next decision would differ from the first.

mod common;

use std::time::Duration;

use common::{forward, plugin, plugin_with};
use htlcgate::chain::Chain;
use htlcgate::config::{ChainConfig, OnFault, PluginConfig, SandboxConfig};
use htlcgate::gate::Gate;
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptResponse, ResolveHoldForwardAction};
use htlcgate::verdict::Verdict;
use htlcgate::wasm::engine::Sandbox;
use tokio::sync::mpsc;

fn gate(plugins: Vec<PluginConfig>) -> std::sync::Arc<Gate> {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let chain = Chain::load(&sandbox, &plugins, Verdict::Resume).unwrap();
    Gate::new(
        chain,
        ChainConfig::default(),
        htlcgate::journal::Journal::in_memory(),
        None,
    )
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<ForwardHtlcInterceptResponse>,
) -> ForwardHtlcInterceptResponse {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an answer in time")
        .expect("stream open")
}

fn nothing_more(rx: &mut mpsc::UnboundedReceiver<ForwardHtlcInterceptResponse>) {
    assert!(rx.try_recv().is_err(), "a second answer was sent");
}

/// Traps on every second call of an instance, with on_fault = fail: the first
/// decision is the default (resume), a second one would be fail.
fn flip_flop() -> PluginConfig {
    let mut p = plugin_with("trap", &[("every", "2")]);
    p.on_fault = OnFault::Fail;
    p
}

/// Loops until its 150 ms deadline, then on_fault = fail.
fn slow() -> PluginConfig {
    let mut p = plugin("spin-forever");
    p.fuel = u64::MAX / 2;
    p.timeout = Duration::from_millis(150);
    p.on_fault = OnFault::Fail;
    p.max_faults = 1000;
    p
}

#[tokio::test]
async fn replayed_htlc_gets_the_same_verdict_not_a_new_decision() {
    let gate = gate(vec![flip_flop()]);
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let s1 = gate.open_stream(tx1);
    gate.on_request(s1, forward(1, 1000, 2000));
    assert_eq!(
        next(&mut rx1).await.action(),
        ResolveHoldForwardAction::Resume
    );
    gate.close_stream(s1);

    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let s2 = gate.open_stream(tx2);
    gate.on_request(s2, forward(1, 1000, 2000));
    let replayed = next(&mut rx2).await;
    assert_eq!(replayed.action(), ResolveHoldForwardAction::Resume);
    assert_eq!(replayed.incoming_circuit_key.unwrap().htlc_id, 1);
    // A new key now gets the plugin's second behaviour: the replay above was not
    // a new decision.
    gate.on_request(s2, forward(2, 1000, 2000));
    assert_eq!(
        next(&mut rx2).await.action(),
        ResolveHoldForwardAction::Fail
    );
    nothing_more(&mut rx2);
}

#[tokio::test]
async fn a_key_sent_twice_while_deciding_is_answered_once() {
    let gate = gate(vec![slow()]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let s = gate.open_stream(tx);
    gate.on_request(s, forward(1, 1000, 2000));
    gate.on_request(s, forward(1, 1000, 2000));
    assert_eq!(next(&mut rx).await.action(), ResolveHoldForwardAction::Fail);
    tokio::time::sleep(Duration::from_millis(400)).await;
    nothing_more(&mut rx);
}

#[tokio::test]
async fn a_decision_that_outlives_its_stream_is_sent_once_on_the_next() {
    let gate = gate(vec![slow()]);
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let s1 = gate.open_stream(tx1);
    gate.on_request(s1, forward(1, 1000, 2000));
    gate.close_stream(s1);
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let s2 = gate.open_stream(tx2);
    // LND replays the key while the first decision is still running.
    gate.on_request(s2, forward(1, 1000, 2000));
    assert_eq!(
        next(&mut rx2).await.action(),
        ResolveHoldForwardAction::Fail
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    nothing_more(&mut rx2);
    assert!(rx1.try_recv().is_err(), "nothing sent on the closed stream");
    assert_eq!(gate.in_flight(), 0);
}

#[tokio::test]
async fn a_decision_for_a_closed_stream_is_not_sent_anywhere() {
    let gate = gate(vec![slow()]);
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let s1 = gate.open_stream(tx1);
    gate.on_request(s1, forward(1, 1000, 2000));
    gate.close_stream(s1);
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let _s2 = gate.open_stream(tx2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // LND did not send the key on stream 2 (it no longer holds it): no answer.
    assert!(rx1.try_recv().is_err());
    assert!(rx2.try_recv().is_err());
}

/// The chain's verdict (the slow plugin's `on_fault` fail after its 150 ms
/// deadline) and the budget's (resume) fall due at nearly the same time, across a
/// range of budgets (100-400 ms) on both sides of it, one gate (and plugin thread) per
/// budget, all at once: whichever side claims an HTLC first decides it (one
/// decision journaled, observed and answered), the other never does, whether the
/// chain's thread or the gate's task gets there first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_finishing_as_its_budget_runs_out_is_decided_and_answered_once() {
    use htlcgate::config::DefaultVerdict;
    use htlcgate::gate::GateOptions;
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut gates = Vec::new();
    for budget_ms in (100..=400).step_by(20) {
        let chain = Chain::load(&sandbox, &[slow()], Verdict::Resume).unwrap();
        let cfg = ChainConfig {
            budget: Duration::from_millis(budget_ms),
            on_budget: DefaultVerdict::Resume,
            ..ChainConfig::default()
        };
        let (obs_tx, observed) = mpsc::unbounded_channel();
        let gate = Gate::with_options(
            chain,
            cfg,
            htlcgate::journal::Journal::in_memory(),
            GateOptions {
                observer: Some(obs_tx),
                ..GateOptions::default()
            },
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let s = gate.open_stream(tx);
        gates.push((gate, s, rx, observed));
    }
    for (gate, s, _, _) in &gates {
        gate.on_request(*s, forward(1, 1000, 2000));
    }
    for (_, _, rx, _) in &mut gates {
        let answer = next(rx).await;
        assert!(
            matches!(
                answer.action(),
                ResolveHoldForwardAction::Fail | ResolveHoldForwardAction::Resume
            ),
            "{answer:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    for (gate, _, rx, observed) in &mut gates {
        nothing_more(rx);
        assert_eq!(gate.in_flight(), 0);
        let first = observed.try_recv().expect("the decision was observed");
        assert!(
            observed.try_recv().is_err(),
            "a second decision for the key after {first:?}",
            first = first.decision.by
        );
    }
}

/// The value of the metric line that starts with `series` (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Every round of a held HTLC reaches the metrics, not only the last one: the
/// faults, fuel and call time of the rounds that ended in a hold count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hold_round_of_an_htlc_is_counted_in_the_metrics_once() {
    use htlcgate::gate::GateOptions;
    use htlcgate::metrics::Metrics;
    let mut trap = plugin("trap");
    trap.on_fault = OnFault::Skip;
    trap.max_faults = 1000;
    let mut holder = plugin_with("hold-fixture", &[("holds", "2"), ("hold_ms", "5")]);
    holder.grants = vec!["kv".into()];
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let chain = Chain::load(&sandbox, &[trap, holder], Verdict::Resume).unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let (obs_tx, mut observed) = mpsc::unbounded_channel();
    let gate = Gate::with_options(
        chain,
        ChainConfig::default(),
        htlcgate::journal::Journal::in_memory(),
        GateOptions {
            observer: Some(obs_tx),
            metrics: Some(metrics.clone()),
            ..GateOptions::default()
        },
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let s = gate.open_stream(tx);
    gate.on_request(s, forward(1, 1000, 2000));
    assert_eq!(
        next(&mut rx).await.action(),
        ResolveHoldForwardAction::Resume
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), observed.recv())
        .await
        .unwrap()
        .unwrap();
    // Three rounds: trap faults and hold-fixture holds; hold-fixture holds again
    // (asked from the holder on: trap is not asked again); hold-fixture passes.
    assert_eq!(ev.input.unwrap().record.attempt, 3);
    let text = metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"htlcgate_plugin_faults_total{plugin="trap",reason="trap"}"#
        ),
        1,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"htlcgate_plugin_fuel_count{plugin="hold-fixture"}"#
        ),
        3,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"htlcgate_plugin_fuel_count{plugin="trap"}"#),
        1,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"htlcgate_plugin_call_seconds_count{plugin="hold-fixture"}"#
        ),
        3,
        "{text}"
    );
}
