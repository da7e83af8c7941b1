//! The `circuitbreaker` plugin on the mock LND (interceptor, HTLC events, channels
//! over real TLS gRPC on loopback), wired as `htlcgate run` wires it: per-peer
//! in-flight max with each mode, the queue released in order as outcomes arrive,
//! the token bucket refilling at its rate, blocked peers, the hold cap, and state
//! kept across a restart.
//!
//! HTLCs whose order matters are sent one at a time (the gate does not keep
//! arrival order between HTLCs sent together). No test asserts an upper bound on
//! time.

mod common;

use std::time::{Duration, Instant};

use common::live::{eventually, start, Harness, WAIT};
use common::plugin_with;
use htlcgate::chain::DecidedBy;
use htlcgate::config::{ChainConfig, KvLimits, PluginConfig};
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ResolveHoldForwardAction};
use htlcgate::mock_lnd::{sample_request, MockLnd, MockOptions};
use htlcgate::mock_node::sample_channel;

/// Channel 1: opened by us. Channel 2: opened by its peer. Different peers.
const CHAN_US: u64 = 1;
const CHAN_PEER: u64 = 2;

/// The peer pubkey (hex) behind a sample channel.
fn peer_hex(chan: u64) -> String {
    sample_channel(chan).remote_pubkey
}

fn circuitbreaker(config: &[(&str, &str)]) -> PluginConfig {
    let mut p = plugin_with("circuitbreaker", config);
    p.grants = vec!["kv".into(), "node".into()];
    p
}

/// A mock LND (requireinterceptor on) with the two sample channels.
async fn mock() -> (MockLnd, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path());
    opts.require_interceptor = true;
    let mock = MockLnd::start(opts).await.unwrap();
    let mut peer_opened = sample_channel(CHAN_PEER);
    peer_opened.initiator = false;
    mock.node()
        .set_channels(vec![sample_channel(CHAN_US), peer_opened]);
    (mock, dir)
}

async fn live(plugin: PluginConfig, chain: ChainConfig) -> Harness {
    let h = start(vec![plugin], chain, Some(mock().await)).await;
    // The HTLC event subscription and the channel cache are up (filled).
    h.wait_outcomes_on().await;
    h
}

fn htlc(chan: u64, id: u64) -> ForwardHtlcInterceptRequest {
    let mut r = sample_request(chan, id);
    r.outgoing_amount_msat = 1_000_000;
    r.incoming_amount_msat = 1_002_000;
    r
}

/// Sends one HTLC and waits for its answer.
async fn answered(h: &Harness, chan: u64, id: u64) -> ResolveHoldForwardAction {
    let before = h.mock.resolution_count();
    h.mock.send_htlc(htlc(chan, id));
    h.mock.wait_resolved(before + 1, WAIT).await.unwrap();
    let r = h
        .mock
        .resolutions()
        .into_iter()
        .find(|r| r.key == (chan, id))
        .expect("this HTLC answered");
    r.response.action()
}

/// Sends one HTLC and waits until the gate holds one more.
async fn queued(h: &Harness, chan: u64, id: u64) {
    let before = h.gate.held();
    h.mock.send_htlc(htlc(chan, id));
    eventually("the HTLC queued (held)", || h.gate.held() == before + 1).await;
}

/// HTLCs of `chan`'s peer the plugin counts as in flight (its kv `f` list:
/// a format byte, then 24 bytes per HTLC; see plugins/circuitbreaker/README.md).
fn in_flight(h: &Harness, chan: u64) -> usize {
    let mut key = vec![b'f'];
    key.extend(hex::decode(peer_hex(chan)).unwrap());
    let ns = h.journal.kv().namespace("circuitbreaker").unwrap();
    ns.get(&key, &KvLimits::default())
        .unwrap()
        .map_or(0, |v| (v.len() - 1) / 24)
}

/// LND's events for an HTLC settled downstream.
fn settle_downstream(h: &Harness, chan: u64, id: u64) {
    let node = h.mock.node();
    node.settle_event((chan, id), Some((9, id)), [1; 32]);
    node.final_event((chan, id), true, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_in_flight_max_gets_fail_until_an_outcome_frees_a_slot() {
    let h = live(
        circuitbreaker(&[("max_pending", "2"), ("max_hourly_rate", "0")]),
        ChainConfig::default(),
    )
    .await;
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    assert_eq!(
        answered(&h, CHAN_US, 2).await,
        ResolveHoldForwardAction::Resume
    );
    assert_eq!(in_flight(&h, CHAN_US), 2);
    assert_eq!(
        answered(&h, CHAN_US, 3).await,
        ResolveHoldForwardAction::Fail
    );
    // Another peer has its own slots.
    assert_eq!(
        answered(&h, CHAN_PEER, 1).await,
        ResolveHoldForwardAction::Resume
    );
    settle_downstream(&h, CHAN_US, 1);
    eventually("the slot freed", || in_flight(&h, CHAN_US) == 1).await;
    assert_eq!(
        answered(&h, CHAN_US, 4).await,
        ResolveHoldForwardAction::Resume
    );
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_htlcs_are_released_in_order_as_outcomes_arrive() {
    let h = live(
        circuitbreaker(&[
            ("mode", "queue"),
            ("max_pending", "1"),
            ("max_hourly_rate", "0"),
            ("queue_retry_ms", "10"),
        ]),
        ChainConfig::default(),
    )
    .await;
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    queued(&h, CHAN_US, 2).await;
    queued(&h, CHAN_US, 3).await;
    queued(&h, CHAN_US, 4).await;
    for (done, next) in [(1, 2), (2, 3), (3, 4)] {
        // Held ones stay held (a few retry periods pass) until a slot frees.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.mock.resolution_count(), done as usize);
        settle_downstream(&h, CHAN_US, done);
        h.mock.wait_resolved(next as usize, WAIT).await.unwrap();
        let last = h.mock.resolutions().pop().unwrap();
        assert_eq!(last.key, (CHAN_US, next), "released in arrival order");
        assert_eq!(last.response.action(), ResolveHoldForwardAction::Resume);
    }
    assert_eq!(h.gate.held(), 0);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_bucket_refills_at_the_configured_rate() {
    // 720 per hour: one token every 5 s; a burst of 2.
    let h = live(
        circuitbreaker(&[
            ("max_pending", "0"),
            ("max_hourly_rate", "720"),
            ("burst", "2"),
        ]),
        ChainConfig::default(),
    )
    .await;
    let first = Instant::now();
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    assert_eq!(
        answered(&h, CHAN_US, 2).await,
        ResolveHoldForwardAction::Resume
    );
    let third = answered(&h, CHAN_US, 3).await;
    if first.elapsed() < Duration::from_secs(5) {
        // (On a machine so slow that 5 s passed, a token was refilled.)
        assert_eq!(third, ResolveHoldForwardAction::Fail);
    }
    // Another peer has its own bucket.
    assert_eq!(
        answered(&h, CHAN_PEER, 1).await,
        ResolveHoldForwardAction::Resume
    );
    tokio::time::sleep(Duration::from_millis(5_200).saturating_sub(first.elapsed())).await;
    assert_eq!(
        answered(&h, CHAN_US, 4).await,
        ResolveHoldForwardAction::Resume
    );
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_always_fails_and_others_go_on() {
    let block = format!("peer.{}.mode", peer_hex(CHAN_PEER));
    let h = live(
        circuitbreaker(&[(block.as_str(), "block"), ("max_pending", "5")]),
        ChainConfig::default(),
    )
    .await;
    for id in 1..=3 {
        assert_eq!(
            answered(&h, CHAN_PEER, id).await,
            ResolveHoldForwardAction::Fail
        );
        assert_eq!(
            answered(&h, CHAN_US, id).await,
            ResolveHoldForwardAction::Resume
        );
    }
    assert_eq!(in_flight(&h, CHAN_PEER), 0);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_peer_initiated_queues_only_on_channels_the_peer_opened() {
    let h = live(
        circuitbreaker(&[
            ("mode", "queue-peer-initiated"),
            ("max_pending", "1"),
            ("max_hourly_rate", "0"),
            ("queue_retry_ms", "10"),
        ]),
        ChainConfig::default(),
    )
    .await;
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    assert_eq!(
        answered(&h, CHAN_PEER, 1).await,
        ResolveHoldForwardAction::Resume
    );
    // We opened channel 1: beyond the limit it fails. The peer opened 2: queued.
    assert_eq!(
        answered(&h, CHAN_US, 2).await,
        ResolveHoldForwardAction::Fail
    );
    queued(&h, CHAN_PEER, 2).await;
    settle_downstream(&h, CHAN_PEER, 1);
    eventually("the queued HTLC released", || {
        h.mock.resolutions().iter().any(|r| r.key == (CHAN_PEER, 2))
    })
    .await;
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_htlc_never_stays_held_past_the_cap() {
    let chain = ChainConfig {
        max_hold: Duration::from_millis(400),
        ..ChainConfig::default()
    };
    let mut h = live(
        circuitbreaker(&[
            ("mode", "queue"),
            ("max_pending", "1"),
            ("max_hourly_rate", "0"),
            ("queue_retry_ms", "20"),
        ]),
        chain,
    )
    .await;
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    let first = h.next_decision().await;
    assert_eq!(first.decision.by, DecidedBy::Default);
    let sent = Instant::now();
    queued(&h, CHAN_US, 2).await;
    let ev = h.next_decision().await;
    assert_eq!(
        ev.decision.by,
        DecidedBy::HoldExpiry("circuitbreaker".into())
    );
    assert!(sent.elapsed() >= Duration::from_millis(400));
    h.mock.wait_resolved(2, WAIT).await.unwrap();
    let last = h.mock.resolutions().pop().unwrap();
    assert_eq!(last.key, (CHAN_US, 2));
    assert_eq!(last.response.action(), ResolveHoldForwardAction::Fail);
    assert_eq!(h.gate.held(), 0);
    h.assert_no_violation();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_hold_across_a_restart() {
    let config = [("max_pending", "1"), ("max_hourly_rate", "0")];
    let h = live(circuitbreaker(&config), ChainConfig::default()).await;
    assert_eq!(
        answered(&h, CHAN_US, 1).await,
        ResolveHoldForwardAction::Resume
    );
    h.journal.sync().await.unwrap();
    let (mock, dir) = h.shutdown().await;
    // A new htlcgate over the same journal file (and the same LND).
    let h = start(
        vec![circuitbreaker(&config)],
        ChainConfig::default(),
        Some((mock, dir)),
    )
    .await;
    h.wait_outcomes_on().await;
    assert_eq!(in_flight(&h, CHAN_US), 1);
    assert_eq!(
        answered(&h, CHAN_US, 2).await,
        ResolveHoldForwardAction::Fail
    );
    // The outcome of the HTLC let through before the restart frees its slot.
    settle_downstream(&h, CHAN_US, 1);
    eventually("the slot freed", || in_flight(&h, CHAN_US) == 0).await;
    assert_eq!(
        answered(&h, CHAN_US, 3).await,
        ResolveHoldForwardAction::Resume
    );
    h.assert_no_violation();
    h.shutdown().await;
}
