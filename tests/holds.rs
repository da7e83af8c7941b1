//! Deferred verdicts (`hold`) and HTLC outcomes, end to end: the mock LND over real
//! TLS gRPC on loopback (interceptor, HTLC events, channels, block height), the
//! gate with its node context and outcome delivery wired as `htlcgate run` wires
//! them, and the `hold-fixture` plugin (holds `holds` times for `hold_ms`, then
//! passes; counts its calls and the outcomes it is told in its key-value
//! namespace).
//!
//! No test asserts an upper bound on time: every wait has a generous timeout.

mod common;

use std::time::{Duration, Instant};

use common::live::{eventually, start, Harness, WAIT};
use common::{forward, plugin_with};
use htlcgate::chain::DecidedBy;
use htlcgate::config::{ChainConfig, DefaultVerdict, PluginConfig};
use htlcgate::lnd::feature::Feature;
use htlcgate::lnd::proto::routerrpc::ResolveHoldForwardAction;
use htlcgate::mock_lnd::{LndAction, MockLnd, MockOptions};
use htlcgate::mock_node::{Downstream, START_HEIGHT};

/// The hold fixture as plugin `name`: holds `holds` times for `hold_ms` each.
fn holder(name: &str, holds: u32, hold_ms: u32) -> PluginConfig {
    let mut p = plugin_with(
        "hold-fixture",
        &[
            ("holds", &holds.to_string()),
            ("hold_ms", &hold_ms.to_string()),
        ],
    );
    p.name = name.to_owned();
    p.grants = vec!["kv".into()];
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_htlc_is_asked_again_with_the_next_attempt_and_answered_once() {
    let mut h = start(vec![holder("holder", 3, 20)], ChainConfig::default(), None).await;
    h.mock.send_htlc(forward(1, 1_000_000, 2_000));
    let ev = h.next_decision().await;
    assert_eq!(ev.decision.by, DecidedBy::Default, "{:?}", ev.decision);
    // The plugin passes only once attempt > holds: it saw attempts 1, 2, 3, 4.
    assert_eq!(ev.input.as_ref().unwrap().record.attempt, 4);
    h.mock.wait_resolved(1, WAIT).await.unwrap();
    let answers = h.answers();
    assert_eq!(answers[&(1, 1)].action(), ResolveHoldForwardAction::Resume);
    assert_eq!(h.counter("holder", "decides"), 4);
    assert_eq!(h.gate.held(), 0);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_before_the_holder_are_not_asked_again() {
    let mut h = start(
        vec![holder("first", 0, 1), holder("second", 2, 10)],
        ChainConfig::default(),
        None,
    )
    .await;
    h.mock.send_htlc(forward(1, 1_000_000, 2_000));
    let ev = h.next_decision().await;
    assert_eq!(ev.decision.by, DecidedBy::Default);
    assert_eq!(h.counter("first", "decides"), 1);
    assert_eq!(h.counter("second", "decides"), 3);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_never_outlasts_the_cap_and_gets_on_hold_expiry() {
    let chain = ChainConfig {
        max_hold: Duration::from_millis(300),
        ..ChainConfig::default()
    };
    let forever = holder("forever", u32::MAX, 40);
    let mut lenient = holder("lenient", u32::MAX, 40);
    lenient.on_hold_expiry = DefaultVerdict::Resume;
    // Two chains in turn: the default expiry verdict (fail) and a resume one.
    for (plugin, want) in [
        (forever, ResolveHoldForwardAction::Fail),
        (lenient, ResolveHoldForwardAction::Resume),
    ] {
        let name = plugin.name.clone();
        let mut h = start(vec![plugin], chain.clone(), None).await;
        let sent = Instant::now();
        h.mock.send_htlc(forward(1, 1_000_000, 2_000));
        let ev = h.next_decision().await;
        assert_eq!(ev.decision.by, DecidedBy::HoldExpiry(name.as_str().into()));
        h.mock.wait_resolved(1, WAIT).await.unwrap();
        // Never before the cap (a lower bound: the cap is counted from arrival).
        assert!(sent.elapsed() >= Duration::from_millis(300));
        assert_eq!(h.answers()[&(1, 1)].action(), want);
        assert!(h.counter(&name, "decides") >= 2);
        h.assert_no_violation();
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_hold_margin_blocks_before_auto_fail_height() {
    let mut h = start(
        vec![holder("forever", u32::MAX, 20)],
        ChainConfig::default(),
        None,
    )
    .await;
    // Wait until the node context knows the height.
    let node_height = h.mock.node().height();
    eventually("the block height known", || {
        h.features
            .snapshot()
            .get(&Feature::BlockHeight)
            .is_some_and(|s| s.is_on())
    })
    .await;
    let mut req = forward(1, 1_000_000, 2_000);
    req.auto_fail_height = (node_height + 10) as i32;
    h.mock.send_htlc(req);
    eventually("the HTLC held", || h.gate.held() == 1).await;
    // 7 blocks: height + 3 (the default margin) reaches auto_fail_height.
    let failed = h.mock.mine(7);
    assert!(failed.is_empty(), "LND auto-failed too early: {failed:?}");
    let ev = h.next_decision().await;
    assert_eq!(ev.decision.by, DecidedBy::HoldExpiry("forever".into()));
    h.mock.wait_resolved(1, WAIT).await.unwrap();
    assert_eq!(
        h.answers()[&(1, 1)].action(),
        ResolveHoldForwardAction::Fail
    );
    // LND's own deadline comes later and finds nothing held.
    assert!(h.mock.mine(3).is_empty());
    h.assert_no_violation();
    h.shutdown().await;
}

/// HTLC 1:1 held by a plugin that holds forever, its `auto_fail_height` 100 blocks
/// ahead (outside the margin: only a jump of many blocks at once reaches it), with
/// LND's events on.
async fn held_forever_100_blocks_before_auto_fail() -> Harness {
    let h = start(
        vec![holder("forever", u32::MAX, 20)],
        ChainConfig::default(),
        None,
    )
    .await;
    h.wait_outcomes_on().await;
    let mut req = forward(1, 1_000_000, 2_000);
    req.auto_fail_height = (START_HEIGHT.max(h.mock.node().height()) + 100) as i32;
    h.mock.send_htlc(req);
    eventually("the HTLC held", || h.gate.held() == 1).await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_htlc_that_lnd_fails_itself_is_never_answered() {
    let mut h = held_forever_100_blocks_before_auto_fail().await;
    let failed = h.mock.mine(100);
    assert_eq!(failed, vec![(1, 1)]);
    assert_eq!(h.mock.lnd_outcomes()[0].action, LndAction::AutoFailed);
    eventually("the hold dropped", || {
        h.gate.held() == 0 && h.gate.in_flight() == 0
    })
    .await;
    // The plugin was told (forward_failed + final).
    eventually("the outcomes told", || {
        h.counter("forever", "outcomes") >= 2
    })
    .await;
    // Let a hold period or two pass: still no answer, no broken rule.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.mock.resolutions().is_empty());
    h.assert_no_violation();
    assert!(h.events.try_recv().is_err(), "no decision for it");
    h.shutdown().await;
}

/// LND announces a block before it fails the HTLCs due at it: if htlcgate sees a
/// height at or past an HTLC's `auto_fail_height` first, answering then could come
/// after LND's own failure ("forward does not exist" ends the stream). The hold is
/// dropped unanswered instead; LND fails the HTLC itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_htlc_past_its_auto_fail_height_is_left_to_lnd() {
    let mut h = held_forever_100_blocks_before_auto_fail().await;
    // The block only: LND has not failed the HTLC yet.
    h.mock.node().mine(100);
    eventually("the hold dropped", || {
        h.gate.held() == 0 && h.gate.in_flight() == 0
    })
    .await;
    assert!(
        h.mock.resolutions().is_empty(),
        "answered past auto_fail_height: {:?}",
        h.mock.resolutions()
    );
    assert!(h.events.try_recv().is_err(), "no decision for it");
    // Now LND fails it, and nothing htlcgate sent breaks a rule.
    assert_eq!(h.mock.mine(0), vec![(1, 1)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.mock.resolutions().is_empty());
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_survives_a_reconnect_and_is_answered_once_on_the_new_stream() {
    let mut h = start(vec![holder("holder", 6, 100)], ChainConfig::default(), None).await;
    h.mock.send_htlc(forward(1, 1_000_000, 2_000));
    eventually("the HTLC held", || h.gate.held() == 1).await;
    assert!(h.mock.disconnect());
    h.mock.wait_connects(2, WAIT).await.unwrap();
    let ev = h.next_decision().await;
    assert_eq!(ev.decision.by, DecidedBy::Default);
    h.mock.wait_resolved(1, WAIT).await.unwrap();
    let r = &h.mock.resolutions()[0];
    assert_eq!(r.stream_gen, 2, "answered on the new stream");
    assert_eq!(r.response.action(), ResolveHoldForwardAction::Resume);
    // The hold went on: not asked from attempt 1 again.
    assert_eq!(h.counter("holder", "decides"), 7);
    assert_eq!(h.answers().len(), 1);
    // The replay on the new stream ended the first stream's hold, not the rules.
    assert!(h.mock.violations().is_empty(), "{:?}", h.mock.violations());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_holds_with_their_on_hold_expiry_verdict() {
    let mut h = start(
        vec![holder("forever", u32::MAX, 50)],
        ChainConfig::default(),
        None,
    )
    .await;
    h.mock.send_htlc(forward(1, 1_000_000, 2_000));
    eventually("the HTLC held", || h.gate.held() == 1).await;
    let _ = h.stop.send(true);
    let ev = h.next_decision().await;
    assert_eq!(ev.decision.by, DecidedBy::HoldExpiry("forever".into()));
    let (mock, _dir) = h.shutdown().await;
    let r = mock.resolutions();
    assert_eq!(r.len(), 1, "answered before the stream closed");
    assert_eq!(r[0].response.action(), ResolveHoldForwardAction::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_of_decided_htlcs_reach_the_plugins_that_export_outcome() {
    let h = start(vec![holder("teller", 0, 1)], ChainConfig::default(), None).await;
    h.wait_outcomes_on().await;
    let node = h.mock.node().clone();
    let _auto = node.auto_outcomes(
        h.mock.watch_resolutions(),
        Downstream::Settle,
        Duration::from_millis(5),
    );
    node.set_downstream((1, 2), Downstream::Fail);
    for id in 1..=2 {
        h.mock.send_htlc(forward(id, 1_000_000, 2_000));
    }
    // 1: forwarded, settled, final; 2: forwarded, forward_failed, final.
    eventually("six outcomes told", || h.counter("teller", "outcomes") >= 6).await;
    assert_eq!(h.counter("teller", "outcome:forwarded"), 2);
    assert_eq!(h.counter("teller", "outcome:settled"), 1);
    assert_eq!(h.counter("teller", "outcome:forward-failed"), 1);
    assert_eq!(h.counter("teller", "outcome:final"), 2);
    // An HTLC htlcgate never decided (LND resolved it itself): not told.
    node.forward_fail_event((9, 9), None);
    node.final_event((9, 9), false, true);
    node.settle_event((1, 1), None, [0; 32]);
    eventually("the late event told", || {
        h.counter("teller", "outcome:settled") == 2
    })
    .await;
    assert_eq!(h.counter("teller", "outcomes"), 7);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_of_htlcs_decided_before_a_restart_are_still_delivered() {
    let mut h = start(vec![holder("teller", 0, 1)], ChainConfig::default(), None).await;
    h.mock.send_htlc(forward(1, 1_000_000, 2_000));
    h.next_decision().await;
    h.mock.wait_resolved(1, WAIT).await.unwrap();
    h.journal.sync().await.unwrap();
    let (mock, dir) = h.shutdown().await;
    // A new htlcgate over the same journal file: it never saw (1, 1) decided.
    let h = start(
        vec![holder("teller", 0, 1)],
        ChainConfig::default(),
        Some((mock, dir)),
    )
    .await;
    h.wait_outcomes_on().await;
    let before = h.counter("teller", "outcomes");
    h.mock.node().forward_event(
        (1, 1),
        (2, 0),
        htlcgate::lnd::proto::routerrpc::HtlcInfo::default(),
    );
    h.mock.node().settle_event((1, 1), Some((2, 0)), [7; 32]);
    h.mock.node().final_event((1, 1), true, true);
    eventually("the outcomes told after the restart", || {
        h.counter("teller", "outcomes") >= before + 3
    })
    .await;
    h.assert_no_violation();
    h.shutdown().await;
}

/// htlcgate is killed (SIGKILL) while a plugin holds an HTLC; LND
/// (`requireinterceptor`) keeps it held and replays it to the restarted
/// htlcgate, which decides it afresh from attempt 1 and answers it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_cut_by_a_kill_9_is_decided_again_after_the_restart() {
    use common::process::{read_log, spawn, wait_for_line};
    use htlcgate::mock_lnd::{MockLnd, MockOptions};

    common::live::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path().join("lnd"));
    opts.require_interceptor = true;
    let mock = MockLnd::start(opts).await.unwrap();
    let wasm = common::plugins_dir().join("hold-fixture.wasm");
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lnd]\nrpcserver = \"{}\"\ntlscertpath = \"{}\"\nmacaroonpath = \"{}\"\n\n\
             [sandbox]\ncache_dir = \"{}\"\n\n\
             [[plugin]]\nname = \"holder\"\npath = \"{}\"\ngrants = [\"kv\"]\n\
             config = {{ holds = 3, hold_ms = 400 }}\n",
            mock.addr(),
            mock.cert_path().display(),
            mock.macaroon_path().display(),
            dir.path().join("cache").display(),
            wasm.display(),
        ),
    )
    .unwrap();
    let (log1, log2) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let level = "info,htlcgate::gate=debug";
    let mut first = spawn(&cfg, &log1, level);
    mock.wait_connected(WAIT).await.unwrap();
    mock.send_htlc(forward(1, 1_000_000, 2_000));
    wait_for_line(&log1, "HTLC held by plugin").await;
    first.start_kill().unwrap(); // SIGKILL: no shutdown code runs, no answer
    first.wait().await.unwrap();
    assert!(mock.resolutions().is_empty(), "answered before the kill");
    assert!(mock.is_held((1, 1)), "LND keeps holding it");

    let mut second = spawn(&cfg, &log2, level);
    mock.wait_connects(2, WAIT).await.unwrap();
    mock.wait_resolved(1, WAIT).await.unwrap();
    second.start_kill().unwrap();
    let _ = second.wait().await;
    let r = mock.resolutions();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].stream_gen, 2);
    assert_eq!(r[0].response.action(), ResolveHoldForwardAction::Resume);
    // The restarted htlcgate asked from attempt 1 (holds are not journaled).
    let text = read_log(&log2);
    let held: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HTLC held by plugin"))
        .collect();
    assert_eq!(held.len(), 3, "{text}");
    assert!(held[0].contains("attempt=1"), "{}", held[0]);
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
}

/// LND fails an HTLC back by itself (its auto_fail_height) while the chain is
/// still deciding it: the late verdict must not be sent (LND no longer holds the
/// key: "forward does not exist" would end the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_lnd_fails_itself_while_the_chain_decides_is_never_answered() {
    let mut slow = common::plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(1500);
    slow.on_fault = htlcgate::config::OnFault::Resume;
    let mut h = start(vec![slow], ChainConfig::default(), None).await;
    h.wait_outcomes_on().await;
    let mut req = forward(1, 1_000_000, 2_000);
    req.auto_fail_height = (h.mock.node().height() + 1) as i32;
    h.mock.send_htlc(req);
    eventually("the decision running", || h.gate.in_flight() == 1).await;
    assert_eq!(h.mock.mine(1), vec![(1, 1)]);
    // The chain ends (the plugin's deadline, on_fault resume) after the event.
    let ev = h.next_decision().await;
    assert_eq!(ev.key.htlc_id, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        h.mock.resolutions().is_empty(),
        "{:?}",
        h.mock.resolutions()
    );
    h.assert_no_violation();
    assert_eq!(h.mock.connects(), 1, "{:?}", h.mock.stream_ends());
    h.shutdown().await;
}

/// A mock LND with `requireinterceptor` on, and its directory.
async fn lnd_requiring_the_interceptor() -> (MockLnd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path());
    opts.require_interceptor = true;
    (MockLnd::start(opts).await.unwrap(), dir)
}

/// Resume verdicts for `keys` in the journal the harness opens in `dir`, as left
/// by an earlier run.
async fn journaled_resumes(dir: &std::path::Path, keys: &[(u64, u64)]) {
    let j = common::live::open_journal(dir).await;
    for &(chan_id, htlc_id) in keys {
        j.record(
            htlcgate::circuit::CircuitKey { chan_id, htlc_id },
            &htlcgate::verdict::Verdict::Resume,
            0,
        )
        .await
        .unwrap();
    }
}

/// A forward arriving on incoming channel `chan_id` with HTLC id `htlc_id`.
fn on_channel(
    chan_id: u64,
    htlc_id: u64,
) -> htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest {
    let mut req = forward(htlc_id, 1_000_000, 2_000);
    req.incoming_circuit_key =
        Some(htlcgate::lnd::proto::routerrpc::CircuitKey { chan_id, htlc_id });
    req
}

/// A restart: LND replays HTLCs whose verdicts are journaled, and one of them is
/// on a channel force-closed meanwhile (on-chain flow). htlcgate answers the
/// replays at once, in order; LND refuses that one and ends the stream, so the
/// answers queued after it were never processed. Only a key whose incoming
/// channel is not active can be the refused one: the others are answered again
/// on the next stream instead of staying held until their auto_fail_height.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_on_chain_refusal_htlcs_on_active_channels_are_answered_on_the_next_stream() {
    let (mock, dir) = lnd_requiring_the_interceptor().await;
    // Channel 2 is open and active; channel 1 was force-closed (not listed).
    mock.node()
        .open_channel(htlcgate::mock_node::sample_channel(2));
    journaled_resumes(dir.path(), &[(1, 1), (2, 10), (2, 11)]).await;
    let h = start(vec![], ChainConfig::default(), Some((mock, dir))).await;
    h.wait_outcomes_on().await;
    // In one step: sent one by one, the refusal of 1:1 (answered at once from
    // the journal) could end the stream before 2:11 was offered, which LND
    // (requiring an interceptor) then fails back itself.
    h.mock.send_htlcs_at_once(vec![
        (on_channel(1, 1), true),
        (on_channel(2, 10), false),
        (on_channel(2, 11), false),
    ]);
    h.mock.wait_stream_ends(1, WAIT).await.unwrap();
    h.mock.wait_connects(2, WAIT).await.unwrap();
    h.mock.wait_resolved(2, WAIT).await.unwrap();
    let mut resolved: Vec<_> = h.mock.resolutions().iter().map(|r| r.key).collect();
    resolved.sort();
    assert_eq!(resolved, vec![(2, 10), (2, 11)]);
    assert!(h.mock.is_held((1, 1)), "the on-chain HTLC stays with LND");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.mock.violations().len(), 1, "{:?}", h.mock.violations());
    h.shutdown().await;
}

/// The same with a channel view behind LND's: the refused key's channel still
/// looks active, so it is answered again on the next stream and refused again;
/// then it is marked, and the stream ends no more than twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_chain_refusal_on_a_channel_that_looks_active_ends_the_stream_at_most_twice() {
    let (mock, dir) = lnd_requiring_the_interceptor().await;
    mock.node()
        .open_channel(htlcgate::mock_node::sample_channel(2));
    journaled_resumes(dir.path(), &[(2, 5)]).await;
    let h = start(vec![], ChainConfig::default(), Some((mock, dir))).await;
    h.wait_outcomes_on().await;
    h.mock.send_htlc_on_chain(on_channel(2, 5));
    h.mock.wait_stream_ends(2, WAIT).await.unwrap();
    h.mock.wait_connects(3, WAIT).await.unwrap();
    // LND replays it on the third stream too: no answer now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.mock.stream_ends().len(), 2, "{:?}", h.mock.stream_ends());
    assert!(h.mock.is_held((2, 5)));
    assert!(h.mock.resolutions().is_empty());
    h.shutdown().await;
}

/// LND fails an HTLC itself while an earlier plugin still decides it, and a later
/// plugin then asks to hold it: there is nothing left to hold. (Without the block
/// height, only LND's HTLC events tell htlcgate.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_lnd_fails_itself_before_a_plugin_first_holds_it_is_not_held() {
    use htlcgate::mock_node::{INFO_READ, ONCHAIN_READ};

    let (mock, dir) = lnd_requiring_the_interceptor().await;
    mock.node().deny(ONCHAIN_READ);
    mock.node().deny(INFO_READ);
    let mut slow = common::plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(600);
    slow.on_fault = htlcgate::config::OnFault::Skip;
    let h = start(
        vec![slow, holder("holder", u32::MAX, 20)],
        ChainConfig::default(),
        Some((mock, dir)),
    )
    .await;
    h.wait_outcomes_on().await;
    let mut req = forward(1, 1_000_000, 2_000);
    req.auto_fail_height = (h.mock.node().height() + 1) as i32;
    h.mock.send_htlc(req);
    eventually("the decision running", || h.gate.in_flight() == 1).await;
    assert_eq!(h.mock.mine(1), vec![(1, 1)]);
    eventually("the HTLC dropped", || h.gate.in_flight() == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        h.counter("holder", "decides") <= 1,
        "held and asked again: {}",
        h.counter("holder", "decides")
    );
    assert_eq!(h.gate.held(), 0);
    assert!(h.mock.resolutions().is_empty());
    h.assert_no_violation();
    h.shutdown().await;
}

/// A large node: ListChannels answers above gRPC's default 4 MiB message limit
/// (lncli accepts 200 MB). The channel cache must still fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_cache_fills_on_a_node_whose_channel_list_is_above_4_mib() {
    use htlcgate::mock_node::sample_channel;

    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    for scid in 1..=30_000u64 {
        mock.node().open_channel(sample_channel(scid << 16));
    }
    let h = start(vec![], ChainConfig::default(), Some((mock, dir))).await;
    h.wait_outcomes_on().await;
    h.shutdown().await;
}
