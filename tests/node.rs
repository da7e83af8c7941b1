//! The node context and HTLC outcomes against the mock LND over real TLS gRPC on
//! loopback: the channel cache (start, events, refresh), the block height (block
//! notifications, GetInfo polling), typed HTLC outcomes (by hand and as LND sends
//! them after each interceptor answer), LND restarts, and refused permissions
//! turning only their feature off.
//!
//! No test asserts a duration: every wait has a generous timeout.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use htlcgate::circuit::Scid;
use htlcgate::lnd::events::{spawn_outcomes, OutcomeEvent};
use htlcgate::lnd::feature::{Feature, FeatureOff, FeatureState, Features};
use htlcgate::lnd::node::{NodeContext, NodeOptions};
use htlcgate::lnd::outcome::{HtlcAmounts, HtlcOutcome, OutcomeKind};
use htlcgate::lnd::proto::lnrpc::failure::FailureCode;
use htlcgate::lnd::proto::routerrpc::htlc_event::{Event, EventType};
use htlcgate::lnd::proto::routerrpc::{
    CircuitKey, FailureDetail, ForwardFailEvent, ForwardHtlcInterceptResponse, HtlcEvent, HtlcInfo,
    ResolveHoldForwardAction,
};
use htlcgate::mock_lnd::{sample_preimage, sample_request, MockLnd, MockOptions};
use htlcgate::mock_node::{
    sample_channel, Downstream, INFO_READ, OFFCHAIN_READ, ONCHAIN_READ, START_HEIGHT,
};
use tokio::sync::{mpsc, watch};

/// Generous: a loaded CI machine with 2 cores must never time out.
const WAIT: Duration = Duration::from_secs(30);

const A: u64 = (700_000 << 40) | (1 << 16);
const B: u64 = (700_001 << 40) | (2 << 16) | 1;
const C: u64 = (700_002 << 40) | (3 << 16);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

struct Harness {
    mock: MockLnd,
    stop: watch::Sender<bool>,
    features: Features,
    _dir: tempfile::TempDir,
}

async fn mock() -> Harness {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    Harness {
        mock,
        stop: watch::channel(false).0,
        features: Features::new(),
        _dir: dir,
    }
}

impl Harness {
    fn node_context(&self, options: NodeOptions) -> NodeContext {
        NodeContext::spawn(
            self.mock.endpoint(),
            options,
            self.features.clone(),
            self.stop.subscribe(),
        )
    }

    fn outcomes(&self) -> mpsc::Receiver<OutcomeEvent> {
        spawn_outcomes(
            self.mock.endpoint(),
            self.features.clone(),
            self.stop.subscribe(),
        )
        .0
    }

    async fn wait_feature(&self, feature: Feature, what: &str, ok: impl Fn(&FeatureState) -> bool) {
        let waited = tokio::time::timeout(
            WAIT,
            self.features.wait_for(|s| s.get(&feature).is_some_and(&ok)),
        )
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting for {feature} to be {what}: {:?}",
            self.features.snapshot()
        );
    }
}

/// Polls `done` every 10 ms until it holds; panics after [`WAIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next outcome (skipping nothing), or a panic after [`WAIT`].
async fn next(rx: &mut mpsc::Receiver<OutcomeEvent>) -> OutcomeEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for an outcome")
        .expect("the outcome task ended")
}

async fn next_outcome(rx: &mut mpsc::Receiver<OutcomeEvent>) -> HtlcOutcome {
    match next(rx).await {
        OutcomeEvent::Outcome(o) => o,
        other => panic!("expected an outcome, got {other:?}"),
    }
}

fn key(chan_id: u64, htlc_id: u64) -> htlcgate::circuit::CircuitKey {
    htlcgate::circuit::CircuitKey { chan_id, htlc_id }
}

fn no_refresh() -> NodeOptions {
    NodeOptions {
        channel_refresh: Duration::from_secs(3600),
        ..NodeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_cache_is_filled_at_start_and_follows_channel_events() {
    let h = mock().await;
    let mut b = sample_channel(B);
    b.initiator = false;
    b.private = true;
    b.alias_scids = vec![16_000_000 << 40];
    h.mock
        .node()
        .set_channels(vec![sample_channel(A), b.clone()]);
    let node = h.node_context(no_refresh());

    eventually("the channels of the first ListChannels", || {
        node.channel(Scid(A)).is_some() && node.channel(Scid(B)).is_some()
    })
    .await;
    h.wait_feature(Feature::ChannelCache, "on", FeatureState::is_on)
        .await;
    let a = node.channel(Scid(A)).unwrap();
    let expected_peer = hex::decode(&sample_channel(A).remote_pubkey).unwrap();
    assert_eq!(a.peer.to_vec(), expected_peer);
    assert_eq!(a.scid.to_string(), "700000x1x0");
    assert_eq!(
        (a.capacity_sat, a.local_balance_sat, a.remote_balance_sat),
        (1_000_000, 600_000, 390_000)
    );
    assert!(a.active && !a.private && a.initiator && !a.peer_initiated());
    assert_eq!(a.chan_point.to_string(), sample_channel(A).channel_point);
    let b_info = node.channel(Scid(B)).unwrap();
    assert!(b_info.private && b_info.peer_initiated());
    assert_eq!(
        node.channel(Scid(16_000_000 << 40)).map(|c| c.scid),
        Some(Scid(B)),
        "found by its alias"
    );
    assert_eq!(node.channels().len(), 2);

    // Events need a live subscription (LND does not replay them).
    h.mock
        .node()
        .wait_until(WAIT, "a channel event subscriber", |n| {
            n.channel_subscribers() >= 1
        })
        .await
        .unwrap();

    h.mock.node().open_channel(sample_channel(C));
    eventually("the opened channel", || node.channel(Scid(C)).is_some()).await;

    h.mock.node().set_active(A, false);
    eventually("channel A inactive", || {
        node.channel(Scid(A)).is_some_and(|c| !c.active)
    })
    .await;
    h.mock.node().set_active(A, true);
    eventually("channel A active again", || {
        node.channel(Scid(A)).is_some_and(|c| c.active)
    })
    .await;

    h.mock.node().set_balances(A, 100_000, 890_000);
    h.mock.node().commit_update(A);
    eventually("channel A's balances from CHANNEL_UPDATE", || {
        node.channel(Scid(A))
            .is_some_and(|c| c.local_balance_sat == 100_000 && c.remote_balance_sat == 890_000)
    })
    .await;

    assert!(h.mock.node().close_channel(B));
    eventually("the closed channel gone, with its alias", || {
        node.channel(Scid(B)).is_none() && node.channel(Scid(16_000_000 << 40)).is_none()
    })
    .await;
    assert_eq!(node.channels().len(), 2);

    // All of that came from events: ListChannels ran once, at start.
    assert_eq!(h.mock.node().calls("ListChannels"), 1);

    let _ = h.stop.send(true);
    tokio::time::timeout(WAIT, node.join())
        .await
        .expect("the node context tasks end on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_changed_without_an_event_show_after_the_periodic_refresh() {
    let h = mock().await;
    h.mock.node().set_channels(vec![sample_channel(A)]);
    let node = h.node_context(NodeOptions {
        channel_refresh: Duration::from_millis(200),
        ..NodeOptions::default()
    });
    eventually("channel A", || node.channel(Scid(A)).is_some()).await;
    assert_eq!(node.channel(Scid(A)).unwrap().local_balance_sat, 600_000);

    h.mock.node().set_balances(A, 250_000, 740_000);
    // A channel that appears without an event (e.g. while we were away) too.
    let mut channels = h.mock.node().channels();
    channels.push(sample_channel(C));
    h.mock.node().set_channels(channels);
    eventually("the refreshed balances and channel C", || {
        node.channel(Scid(A))
            .is_some_and(|c| c.local_balance_sat == 250_000 && c.remote_balance_sat == 740_000)
            && node.channel(Scid(C)).is_some()
    })
    .await;
    assert!(h.mock.node().calls("ListChannels") >= 2);
    assert!(node.channels_refreshed_ago().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_height_follows_block_notifications() {
    let h = mock().await;
    let node = h.node_context(no_refresh());
    eventually("the tip at start", || node.height() == Some(START_HEIGHT)).await;
    h.wait_feature(Feature::BlockNotifications, "on", FeatureState::is_on)
        .await;
    h.wait_feature(Feature::BlockHeight, "on", FeatureState::is_on)
        .await;

    h.mock.node().mine(3);
    eventually("three blocks later", || {
        node.height() == Some(START_HEIGHT + 3)
    })
    .await;
    h.mock.node().set_height(900_000);
    eventually("height 900000", || node.height() == Some(900_000)).await;
    // Notifications, not polling.
    assert_eq!(h.mock.node().calls("GetInfo"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_chain_notifier_the_height_is_polled_from_getinfo() {
    let h = mock().await;
    h.mock.node().set_chain_notifier(false);
    let node = h.node_context(NodeOptions {
        height_poll: Duration::from_millis(100),
        ..no_refresh()
    });
    h.wait_feature(Feature::BlockNotifications, "off", FeatureState::is_off)
        .await;
    match h.features.state(Feature::BlockNotifications) {
        Some(FeatureState::Off(FeatureOff::Unsupported { call, .. })) => {
            assert!(call.contains("RegisterBlockEpochNtfn"), "{call}")
        }
        other => panic!("{other:?}"),
    }
    eventually("the tip from GetInfo", || {
        node.height() == Some(START_HEIGHT)
    })
    .await;
    h.wait_feature(Feature::BlockHeight, "on", FeatureState::is_on)
        .await;
    h.mock.node().mine(2);
    eventually("two blocks later, polled", || {
        node.height() == Some(START_HEIGHT + 2)
    })
    .await;
    assert!(h.mock.node().calls("GetInfo") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_onchain_read_the_height_is_polled_and_without_info_read_it_is_off() {
    let h = mock().await;
    h.mock.node().deny(ONCHAIN_READ);
    let node = h.node_context(NodeOptions {
        height_poll: Duration::from_millis(100),
        ..no_refresh()
    });
    h.wait_feature(Feature::BlockNotifications, "off", FeatureState::is_off)
        .await;
    match h.features.state(Feature::BlockNotifications) {
        Some(FeatureState::Off(off @ FeatureOff::PermissionDenied { .. })) => {
            assert!(off.to_string().contains("onchain:read"), "{off}")
        }
        other => panic!("{other:?}"),
    }
    eventually("the tip from GetInfo", || {
        node.height() == Some(START_HEIGHT)
    })
    .await;

    // A second node context on a macaroon with neither permission.
    let h2 = mock().await;
    h2.mock.node().deny(ONCHAIN_READ);
    h2.mock.node().deny(INFO_READ);
    h2.mock.node().set_channels(vec![sample_channel(A)]);
    let node2 = h2.node_context(NodeOptions {
        height_poll: Duration::from_millis(100),
        ..no_refresh()
    });
    h2.wait_feature(Feature::BlockHeight, "off", FeatureState::is_off)
        .await;
    let off = h2.features.state(Feature::BlockHeight).unwrap().to_string();
    assert!(
        off.contains("info:read") && off.contains("GetInfo"),
        "{off}"
    );
    assert_eq!(node2.height(), None);
    // The channel cache is not affected.
    eventually("channel A", || node2.channel(Scid(A)).is_some()).await;
    assert!(h2.features.state(Feature::ChannelCache).unwrap().is_on());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_arrive_typed_for_forward_settle_forward_fail_link_fail_and_final() {
    let h = mock().await;
    let mut rx = h.outcomes();
    assert_eq!(
        next(&mut rx).await,
        OutcomeEvent::Subscribed {
            resubscribed: false
        }
    );
    h.wait_feature(Feature::HtlcOutcomes, "on", FeatureState::is_on)
        .await;
    let node = h.mock.node();
    let info = HtlcInfo {
        incoming_timelock: 800_144,
        outgoing_timelock: 800_104,
        incoming_amt_msat: 1_000_000,
        outgoing_amt_msat: 999_000,
    };

    node.forward_event((A, 1), (C, 0), info);
    let o = next_outcome(&mut rx).await;
    assert_eq!(o.key, key(A, 1));
    assert_eq!(o.outgoing, Some(key(C, 0)));
    assert_eq!(
        o.kind,
        OutcomeKind::Forwarded {
            amounts: HtlcAmounts {
                incoming_msat: 1_000_000,
                outgoing_msat: 999_000,
                incoming_expiry: 800_144,
                outgoing_expiry: 800_104,
            }
        }
    );

    node.settle_event((A, 1), Some((C, 0)), [7; 32]);
    assert_eq!(
        next_outcome(&mut rx).await.kind,
        OutcomeKind::Settled { preimage: [7; 32] }
    );
    node.final_event((A, 1), true, true);
    let o = next_outcome(&mut rx).await;
    assert_eq!(
        (o.key, o.outgoing, o.kind),
        (
            key(A, 1),
            None,
            OutcomeKind::FinalSettled { offchain: true }
        )
    );

    // A receive is not a forward: dropped, the next event comes through.
    node.emit(HtlcEvent {
        incoming_channel_id: A,
        incoming_htlc_id: 9,
        event_type: EventType::Receive as i32,
        event: Some(Event::ForwardFailEvent(ForwardFailEvent {})),
        ..Default::default()
    });
    node.forward_fail_event((A, 2), Some((C, 1)));
    let o = next_outcome(&mut rx).await;
    assert_eq!((o.key, o.kind), (key(A, 2), OutcomeKind::ForwardFailed));

    node.link_fail_event(
        (A, 3),
        Some((C, 0)),
        info,
        FailureCode::TemporaryChannelFailure,
        FailureDetail::InsufficientBalance,
        "insufficient bandwidth to route htlc",
    );
    let o = next_outcome(&mut rx).await;
    assert_eq!(o.key, key(A, 3));
    match &o.kind {
        OutcomeKind::LinkFailed {
            wire_failure,
            detail,
            failure_string,
            amounts,
        } => {
            assert_eq!(*wire_failure, FailureCode::TemporaryChannelFailure as i32);
            assert_eq!(*detail, FailureDetail::InsufficientBalance);
            assert_eq!(failure_string, "insufficient bandwidth to route htlc");
            assert_eq!(amounts.outgoing_msat, 999_000);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        o.kind.wire_failure_code(),
        Some(FailureCode::TemporaryChannelFailure)
    );

    node.final_event((A, 3), false, false);
    assert_eq!(
        next_outcome(&mut rx).await.kind,
        OutcomeKind::FinalFailed { offchain: false }
    );
}

/// A minimal interceptor client that answers each HTLC with `answer(key)`.
fn interceptor(
    mock: &MockLnd,
    answer: impl Fn(u64, u64) -> ForwardHtlcInterceptResponse + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let endpoint = mock.endpoint();
    tokio::spawn(async move {
        let mut client = htlcgate::lnd::connect::connect(&endpoint).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inbound = client
            .htlc_interceptor(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        while let Ok(Some(req)) = inbound.message().await {
            let k = req.incoming_circuit_key.unwrap();
            let _ = tx.send(answer(k.chan_id, k.htlc_id));
        }
    })
}

fn response(
    chan_id: u64,
    htlc_id: u64,
    action: ResolveHoldForwardAction,
) -> ForwardHtlcInterceptResponse {
    ForwardHtlcInterceptResponse {
        incoming_circuit_key: Some(CircuitKey { chan_id, htlc_id }),
        action: action as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_each_interceptor_answer_the_outcomes_lnd_sends_arrive() {
    let h = mock().await;
    let node = h.mock.node().clone();
    let _auto = node.auto_outcomes(
        h.mock.watch_resolutions(),
        Downstream::Settle,
        Duration::from_millis(20),
    );
    let mut rx = h.outcomes();
    assert!(matches!(
        next(&mut rx).await,
        OutcomeEvent::Subscribed { .. }
    ));

    // htlc 1: resume, settled downstream; 2: fail; 3: settle at this node;
    // 4: resume, failed downstream; 5: resume, refused at this node.
    node.set_downstream((1, 4), Downstream::Fail);
    node.set_downstream(
        (1, 5),
        Downstream::LinkFail {
            wire_failure: FailureCode::FeeInsufficient,
            detail: FailureDetail::NoDetail,
            failure_string: "fee insufficient".to_owned(),
        },
    );
    let _client = interceptor(&h.mock, |chan, htlc| match htlc {
        2 => response(chan, htlc, ResolveHoldForwardAction::Fail),
        3 => ForwardHtlcInterceptResponse {
            preimage: sample_preimage(chan, htlc).to_vec(),
            ..response(chan, htlc, ResolveHoldForwardAction::Settle)
        },
        _ => response(chan, htlc, ResolveHoldForwardAction::Resume),
    });
    h.mock.wait_connected(WAIT).await.unwrap();
    for htlc in 1..=5 {
        h.mock.send_htlc(sample_request(1, htlc));
    }

    let mut by_key: HashMap<u64, Vec<OutcomeKind>> = HashMap::new();
    let mut finals = 0;
    while finals < 5 {
        let o = next_outcome(&mut rx).await;
        assert_eq!(o.key.chan_id, 1);
        if o.kind.is_final() {
            finals += 1;
        }
        by_key.entry(o.key.htlc_id).or_default().push(o.kind);
    }
    let names =
        |htlc: u64| -> Vec<&'static str> { by_key[&htlc].iter().map(OutcomeKind::name).collect() };
    assert_eq!(names(1), ["forwarded", "settled", "final_settled"]);
    assert_eq!(names(2), ["forward_failed", "final_failed"]);
    assert_eq!(names(3), ["settled", "final_settled"]);
    assert_eq!(names(4), ["forwarded", "forward_failed", "final_failed"]);
    assert_eq!(names(5), ["link_failed", "final_failed"]);
    assert_eq!(
        by_key[&3][0],
        OutcomeKind::Settled {
            preimage: sample_preimage(1, 3)
        }
    );
    assert_eq!(
        by_key[&1][1],
        OutcomeKind::Settled {
            preimage: sample_preimage(1, 1)
        }
    );
    assert!(matches!(
        by_key[&5][0],
        OutcomeKind::LinkFailed {
            wire_failure: 12,
            detail: FailureDetail::NoDetail,
            ..
        }
    ));
    assert!(h.mock.violations().is_empty(), "{:?}", h.mock.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscription_survives_a_mock_lnd_restart() {
    let mut h = mock().await;
    h.mock.node().set_channels(vec![sample_channel(A)]);
    let node = h.node_context(no_refresh());
    let mut rx = h.outcomes();
    assert!(matches!(
        next(&mut rx).await,
        OutcomeEvent::Subscribed {
            resubscribed: false
        }
    ));
    eventually("channel A and the tip", || {
        node.channel(Scid(A)).is_some() && node.height() == Some(START_HEIGHT)
    })
    .await;
    for feature in [
        Feature::ChannelCache,
        Feature::BlockHeight,
        Feature::HtlcOutcomes,
    ] {
        h.wait_feature(feature, "on", FeatureState::is_on).await;
    }

    h.mock.stop().await;
    // While LND is down: a channel opens, blocks are mined, nobody is told.
    h.mock
        .node()
        .set_channels(vec![sample_channel(A), sample_channel(C)]);
    h.mock.node().set_height(START_HEIGHT + 10);
    h.wait_feature(Feature::HtlcOutcomes, "retrying", |s| {
        matches!(s, FeatureState::Retrying { .. })
    })
    .await;
    // The cache keeps its last state meanwhile.
    assert!(node.channel(Scid(A)).is_some());
    assert_eq!(node.height(), Some(START_HEIGHT));

    h.mock.restart().await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        OutcomeEvent::Subscribed { resubscribed: true }
    );
    eventually("the state after the restart", || {
        node.channel(Scid(C)).is_some() && node.height() == Some(START_HEIGHT + 10)
    })
    .await;
    for feature in [
        Feature::ChannelCache,
        Feature::BlockHeight,
        Feature::HtlcOutcomes,
    ] {
        h.wait_feature(feature, "on again", FeatureState::is_on)
            .await;
    }

    // And the new streams carry events.
    h.mock.node().final_event((A, 1), true, true);
    assert_eq!(next_outcome(&mut rx).await.key, key(A, 1));
    h.mock
        .node()
        .wait_until(WAIT, "a channel event subscriber", |n| {
            n.channel_subscribers() >= 1
        })
        .await
        .unwrap();
    h.mock.node().close_channel(C);
    eventually("channel C closed", || node.channel(Scid(C)).is_none()).await;
    h.mock.node().mine(1);
    eventually("one more block", || {
        node.height() == Some(START_HEIGHT + 11)
    })
    .await;
}

/// Log lines written while the test runs (this test's thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

// Single-threaded so that the thread-local log subscriber sees every task.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_permission_turns_only_its_feature_off_with_one_clear_line() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    mock.node().deny(OFFCHAIN_READ);
    mock.node().set_channels(vec![sample_channel(A)]);
    let (stop, _) = watch::channel(false);
    let features = Features::new();
    let node = NodeContext::spawn(
        mock.endpoint(),
        no_refresh(),
        features.clone(),
        stop.subscribe(),
    );
    let (mut rx, outcomes_task) =
        spawn_outcomes(mock.endpoint(), features.clone(), stop.subscribe());

    let all_settled = tokio::time::timeout(
        WAIT,
        features.wait_for(|s| {
            s.get(&Feature::ChannelCache)
                .is_some_and(FeatureState::is_off)
                && s.get(&Feature::HtlcOutcomes)
                    .is_some_and(FeatureState::is_off)
                && s.get(&Feature::BlockHeight)
                    .is_some_and(FeatureState::is_on)
        }),
    )
    .await;
    assert!(all_settled.is_ok(), "{:?}", features.snapshot());

    for feature in [Feature::ChannelCache, Feature::HtlcOutcomes] {
        match features.state(feature) {
            Some(FeatureState::Off(off @ FeatureOff::PermissionDenied { permission, .. })) => {
                assert_eq!(permission, "offchain:read");
                assert!(off.to_string().contains("lncli bakemacaroon"), "{off}");
            }
            other => panic!("{feature}: {other:?}"),
        }
    }
    // The other features work.
    assert_eq!(node.height(), Some(START_HEIGHT));
    assert!(features.state(Feature::BlockNotifications).unwrap().is_on());
    assert!(node.channel(Scid(A)).is_none());
    // The outcome task ended by itself; its receiver says so.
    tokio::time::timeout(WAIT, outcomes_task)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.recv().await.is_none());

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for name in ["channel cache", "htlc outcomes"] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("feature `{name}` is off")))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {name}:\n{text}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains("offchain:read"), "{}", lines[0]);
        assert!(lines[0].contains("everything else goes on"), "{}", lines[0]);
    }
    assert!(!text.contains("feature `block height` is off"), "{text}");

    // A later ListChannels is never attempted again: the feature is off for good.
    let calls = mock.node().calls("ListChannels") + mock.node().calls("SubscribeChannelEvents");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.node().calls("ListChannels") + mock.node().calls("SubscribeChannelEvents"),
        calls
    );
    let _ = stop.send(true);
    tokio::time::timeout(WAIT, node.join()).await.unwrap();
}
