//! Native tests over the SDK's stand-ins: `kv` in memory, `node` channels and
//! height set by the test, a frozen clock moved by hand.

use super::*;
use htlcgate_sdk::{clock, ChannelInfo, NodeId, OutcomeKind};

/// The test's start time.
const T0: u64 = 1_700_000_000_000;
/// The block height at T0; HTLCs expire at 800_144 by default.
const HEIGHT: u32 = 800_000;

/// Peer A (opened channels to us on `A_THEIRS`, we opened `A_OURS`).
const A: NodeId = NodeId([0x02; 33]);
/// Peer B.
const B: NodeId = NodeId([0x03; 33]);
/// A channel with A that A opened.
const A_THEIRS: Scid = Scid(1 << 40);
/// A channel with A that this node opened.
const A_OURS: Scid = Scid(2 << 40);
/// A channel with B that B opened.
const B_THEIRS: Scid = Scid(3 << 40);
/// A channel nobody knows.
const UNKNOWN: Scid = Scid(9 << 40);

/// Fresh stand-ins (kv empty, the three channels known, height and clock set)
/// and a plugin built from `pairs`.
fn setup(pairs: &[(&str, &str)]) -> CircuitBreaker {
    kv::clear();
    node::clear();
    clock::set_unix_ms(T0);
    node::set_block_height(Some(HEIGHT));
    node::set_channel(ChannelInfo {
        initiator: false,
        ..ChannelInfo::new(A_THEIRS, A)
    });
    node::set_channel(ChannelInfo::new(A_OURS, A));
    node::set_channel(ChannelInfo {
        initiator: false,
        ..ChannelInfo::new(B_THEIRS, B)
    });
    restart(pairs)
}

/// A new instance over the same store (a reload or a restart of htlcgate).
fn restart(pairs: &[(&str, &str)]) -> CircuitBreaker {
    CircuitBreaker::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
}

/// HTLC `id` arriving on `chan`.
fn htlc(chan: Scid, id: u64) -> Htlc {
    Htlc::builder().incoming_chan(chan).htlc_id(id).build()
}

/// Decides HTLC `id` on `chan` now.
fn decide(cb: &mut CircuitBreaker, chan: Scid, id: u64) -> Verdict {
    cb.decide(&htlc(chan, id))
}

/// Tells the plugin that HTLC `id` on `chan` had outcome `kind`.
fn outcome(cb: &mut CircuitBreaker, chan: Scid, id: u64, kind: OutcomeKind) {
    cb.outcome(&Outcome::new(CircuitKey::new(chan, id), kind));
}

/// Tells the plugin that HTLC `id` on `chan` settled downstream.
fn settle(cb: &mut CircuitBreaker, chan: Scid, id: u64) {
    outcome(cb, chan, id, OutcomeKind::Settled(Some([1; 32])));
}

fn next() -> Verdict {
    Verdict::next()
}

fn fail() -> Verdict {
    Verdict::fail_temporary()
}

fn hold() -> Verdict {
    Verdict::hold_ms(config::DEFAULT_QUEUE_RETRY_MS)
}

/// A config with no rate limit and `max_pending` in flight, in `mode`.
fn pending_only(
    max_pending: &'static str,
    mode: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("max_pending", max_pending),
        ("max_hourly_rate", "0"),
        ("mode", mode),
    ]
}

#[test]
fn fail_mode_fails_beyond_max_pending_until_an_outcome_frees_a_slot() {
    let mut cb = setup(&pending_only("2", "fail"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_OURS, 0), next());
    // Both channels count for peer A.
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    // Peer B has its own slots.
    assert_eq!(decide(&mut cb, B_THEIRS, 0), next());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 3), fail());
}

#[test]
fn every_kind_of_resolution_frees_a_slot_and_forwarded_does_not() {
    let amounts = htlcgate_sdk::HtlcAmounts {
        incoming_amount_msat: 2,
        outgoing_amount_msat: 1,
        incoming_expiry: 800_144,
        outgoing_expiry: 800_104,
    };
    let resolutions = [
        OutcomeKind::Settled(None),
        OutcomeKind::ForwardFailed,
        OutcomeKind::LinkFailed {
            wire_failure_code: 1007,
            detail: "INSUFFICIENT_BALANCE".into(),
            message: String::new(),
            amounts,
        },
        OutcomeKind::Final {
            settled: false,
            offchain: true,
        },
    ];
    for kind in resolutions {
        let mut cb = setup(&pending_only("1", "fail"));
        assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
        outcome(&mut cb, A_THEIRS, 0, OutcomeKind::Forwarded(amounts));
        assert_eq!(decide(&mut cb, A_THEIRS, 1), fail(), "after forwarded");
        outcome(&mut cb, A_THEIRS, 0, kind.clone());
        assert_eq!(
            decide(&mut cb, A_THEIRS, 2),
            next(),
            "after {}",
            kind.name()
        );
    }
}

#[test]
fn duplicate_and_unknown_outcomes_change_nothing() {
    let mut cb = setup(&pending_only("2", "fail"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    // Settled then final for the same HTLC: one slot, not two.
    settle(&mut cb, A_THEIRS, 0);
    outcome(
        &mut cb,
        A_THEIRS,
        0,
        OutcomeKind::Final {
            settled: true,
            offchain: true,
        },
    );
    // Outcomes for HTLCs it never let through.
    settle(&mut cb, A_THEIRS, 77);
    settle(&mut cb, UNKNOWN, 1);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 3), fail());
}

#[test]
fn a_replayed_htlc_is_counted_once() {
    let mut cb = setup(&pending_only("2", "fail"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
}

#[test]
fn token_bucket_allows_burst_then_refills_at_the_rate() {
    // 3600 per hour: one token per second; 2 at once.
    let mut cb = setup(&[
        ("max_pending", "0"),
        ("max_hourly_rate", "3600"),
        ("burst", "2"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    // Peer B has its own bucket.
    assert_eq!(decide(&mut cb, B_THEIRS, 0), next());
    clock::advance_ms(999);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), fail());
    clock::advance_ms(1);
    assert_eq!(decide(&mut cb, A_THEIRS, 4), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 5), fail());
    // A long quiet time refills only up to the burst.
    clock::advance_ms(3_600_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 6), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 7), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 8), fail());
}

#[test]
fn a_slow_rate_refills_exactly() {
    // 7 per hour: one token every 514,285.7 ms.
    let mut cb = setup(&[
        ("max_pending", "0"),
        ("max_hourly_rate", "7"),
        ("burst", "1"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    clock::advance_ms(514_285);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    clock::advance_ms(1);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn fail_mode_checks_pending_before_taking_a_token() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "3600"),
        ("burst", "2"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    // Failed on max_pending: no token spent.
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
}

#[test]
fn queue_releases_in_arrival_order_as_outcomes_free_slots() {
    let mut cb = setup(&pending_only("1", "queue"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    assert_eq!(decide(&mut cb, A_OURS, 2), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 3), hold());
    // Asked again while the slot is taken: still held.
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    settle(&mut cb, A_THEIRS, 0);
    // The slot is free, but 2 and 3 are behind 1.
    assert_eq!(decide(&mut cb, A_THEIRS, 3), hold());
    assert_eq!(decide(&mut cb, A_OURS, 2), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    assert_eq!(decide(&mut cb, A_OURS, 2), hold());
    outcome(&mut cb, A_THEIRS, 1, OutcomeKind::ForwardFailed);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), hold());
    assert_eq!(decide(&mut cb, A_OURS, 2), next());
    settle(&mut cb, A_OURS, 2);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
    // A new HTLC while a slot is free and nobody waits goes straight through.
    settle(&mut cb, A_THEIRS, 3);
    assert_eq!(decide(&mut cb, A_THEIRS, 4), next());
}

#[test]
fn queue_waits_for_tokens_too() {
    let mut cb = setup(&[
        ("max_pending", "0"),
        ("max_hourly_rate", "3600"),
        ("burst", "1"),
        ("mode", "queue"),
        ("queue_retry_ms", "250"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), Verdict::hold_ms(250));
    assert_eq!(decide(&mut cb, A_THEIRS, 2), Verdict::hold_ms(250));
    clock::advance_ms(500);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), Verdict::hold_ms(250));
    clock::advance_ms(500);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), Verdict::hold_ms(250));
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), Verdict::hold_ms(250));
    clock::advance_ms(1000);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn a_full_queue_fails_new_htlcs() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_len", "2"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 3), fail());
    // The queued ones keep their places.
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
}

#[test]
fn the_longest_queue_fits_in_the_store() {
    let max = MAX_ENTRIES.to_string();
    let mut cb = setup(&[
        ("max_pending", &max),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_len", &max),
    ]);
    let n = MAX_ENTRIES as u64;
    for id in 0..n {
        assert_eq!(decide(&mut cb, A_THEIRS, id), next(), "in flight {id}");
    }
    for id in n..2 * n {
        assert_eq!(decide(&mut cb, A_THEIRS, id), hold(), "queued {id}");
    }
    assert_eq!(decide(&mut cb, A_THEIRS, 2 * n), fail());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, n), next());
}

#[test]
fn an_outcome_removes_a_queued_htlc_and_the_next_moves_up() {
    let mut cb = setup(&pending_only("1", "queue"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    // The host's hold cap failed 1 (its on_hold_expiry verdict).
    outcome(&mut cb, A_THEIRS, 1, OutcomeKind::ForwardFailed);
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn an_htlc_queued_longer_than_queue_max_ms_is_decided_as_in_fail_mode() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_ms", "1000"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    clock::advance_ms(600);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    clock::advance_ms(401);
    // 1 waited 1001 ms: no slot, so it fails; 2 is now first.
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn an_expired_head_not_asked_again_does_not_block_the_queue() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_ms", "1000"),
    ]);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    clock::advance_ms(500);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    settle(&mut cb, A_THEIRS, 0);
    // 1 vanished without an outcome; once past queue_max_ms it is skipped.
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    clock::advance_ms(501);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
    // After 2 × (queue_max_ms + queue_retry_ms) it is forgotten: nothing of
    // the queue is left.
    clock::advance_ms(2000);
    settle(&mut cb, A_THEIRS, 2);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
    settle(&mut cb, A_THEIRS, 3);
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn a_replay_keeps_its_place_in_the_queue_across_a_restart() {
    let config = pending_only("1", "queue");
    let mut cb = setup(&config);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    // htlcgate restarts: LND replays the held HTLCs (attempt 1), 2 first.
    let mut cb = restart(&config);
    let replay = |id| {
        Htlc::builder()
            .incoming_chan(A_THEIRS)
            .htlc_id(id)
            .attempt(1)
            .build()
    };
    assert_eq!(cb.decide(&replay(2)), hold());
    assert_eq!(cb.decide(&replay(1)), hold());
    // 0 is still counted in flight.
    assert_eq!(decide(&mut cb, A_THEIRS, 3), hold());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(cb.decide(&replay(2)), hold());
    assert_eq!(cb.decide(&replay(1)), next());
}

#[test]
fn state_survives_a_restart() {
    let config = [
        ("max_pending", "2"),
        ("max_hourly_rate", "3600"),
        ("burst", "3"),
    ];
    let mut cb = setup(&config);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
    let mut cb = restart(&config);
    // In flight: still 2.
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    settle(&mut cb, A_THEIRS, 0);
    settle(&mut cb, A_THEIRS, 1);
    // Tokens: 1 of 3 left.
    let mut cb = restart(&config);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
    settle(&mut cb, A_THEIRS, 3);
    assert_eq!(decide(&mut cb, A_THEIRS, 4), fail());
}

#[test]
fn block_mode_always_fails() {
    let mut cb = setup(&[
        ("mode", "block"),
        ("max_pending", "0"),
        ("max_hourly_rate", "0"),
    ]);
    for id in 0..3 {
        assert_eq!(decide(&mut cb, A_THEIRS, id), fail());
        assert_eq!(decide(&mut cb, B_THEIRS, id), fail());
    }
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn queue_peer_initiated_queues_only_on_channels_the_peer_opened() {
    let mut cb = setup(&pending_only("1", "queue-peer-initiated"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    // A opened A_THEIRS: queued.
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    // This node opened A_OURS: failed.
    assert_eq!(decide(&mut cb, A_OURS, 2), fail());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), next());
}

#[test]
fn per_peer_overrides_replace_only_the_fields_they_set() {
    let a_mode = format!("peer.{A}.mode");
    let b_pending = format!("peer.{B}.max_pending");
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        (&a_mode, "block"),
        (&b_pending, "3"),
    ]);
    assert_eq!(cb.settings().limits(&A).mode, config::Mode::Block);
    assert_eq!(cb.settings().limits(&A).max_pending, 1);
    assert_eq!(cb.settings().limits(&B).mode, config::Mode::Fail);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), fail());
    for id in 0..3 {
        assert_eq!(decide(&mut cb, B_THEIRS, id), next());
    }
    assert_eq!(decide(&mut cb, B_THEIRS, 3), fail());
}

#[test]
fn per_peer_rate_and_burst() {
    let rate = format!("peer.{B}.max_hourly_rate");
    let burst = format!("peer.{B}.burst");
    let mut cb = setup(&[
        ("max_pending", "0"),
        ("max_hourly_rate", "0"),
        (&rate, "60"),
        (&burst, "1"),
    ]);
    for id in 0..5 {
        assert_eq!(decide(&mut cb, A_THEIRS, id), next());
    }
    assert_eq!(decide(&mut cb, B_THEIRS, 0), next());
    clock::advance_ms(59_999);
    assert_eq!(decide(&mut cb, B_THEIRS, 1), fail());
    clock::advance_ms(1);
    assert_eq!(decide(&mut cb, B_THEIRS, 2), next());
}

#[test]
fn an_unknown_channel_passes_uncounted() {
    let mut cb = setup(&pending_only("1", "block"));
    for id in 0..3 {
        assert_eq!(decide(&mut cb, UNKNOWN, id), next());
    }
    assert!(cb.warned.contains(&UNKNOWN.0));
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
    // Node context not loaded at all.
    node::clear();
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(cb.warned.len(), 2);
}

#[test]
fn a_channel_that_closes_still_gets_its_outcomes_and_queue() {
    let mut cb = setup(&pending_only("1", "queue"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_OURS, 1), hold());
    // A_OURS closes (or the node context is reloading): its queued HTLC is
    // still found through the stored peer.
    node::remove_channel(A_OURS);
    assert_eq!(decide(&mut cb, A_OURS, 1), hold());
    node::remove_channel(A_THEIRS);
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_OURS, 1), next());
    settle(&mut cb, A_OURS, 1);
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn in_flight_entries_expire_at_their_incoming_expiry() {
    let mut cb = setup(&pending_only("1", "fail"));
    let h = Htlc::builder()
        .incoming_chan(A_THEIRS)
        .htlc_id(0)
        .expiries(HEIGHT + 10, HEIGHT)
        .build();
    assert_eq!(cb.decide(&h), next());
    node::set_block_height(Some(HEIGHT + 9));
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    node::set_block_height(Some(HEIGHT + 10));
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn in_flight_entries_expire_after_max_inflight_age_s() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("max_inflight_age_s", "600"),
    ]);
    // Height unknown: only age expires entries.
    node::set_block_height(None);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    clock::advance_ms(600_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    clock::advance_ms(1_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn a_new_mode_applies_to_htlcs_already_queued() {
    let mut cb = setup(&pending_only("1", "queue"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    let mut cb = restart(&pending_only("1", "fail"));
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    let mut cb = restart(&pending_only("1", "block"));
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn nothing_is_left_in_the_store_once_everything_resolved() {
    let mut cb = setup(&pending_only("2", "queue"));
    for id in 0..4 {
        decide(&mut cb, A_THEIRS, id);
        decide(&mut cb, B_THEIRS, id);
    }
    for id in 0..4 {
        settle(&mut cb, A_THEIRS, id);
        outcome(&mut cb, B_THEIRS, id, OutcomeKind::ForwardFailed);
    }
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn defaults_match_the_readme() {
    let cb = setup(&[]);
    let s = cb.settings();
    assert_eq!(
        s.defaults,
        Limits {
            mode: config::Mode::Fail,
            max_pending: 10,
            max_hourly_rate: 3600,
            burst: 10,
        }
    );
    assert_eq!(s.queue_retry_ms, 100);
    assert_eq!(s.queue_max_ms, 60_000);
    assert_eq!(s.queue_max_len, 100);
    assert_eq!(s.max_inflight_age_s, 86_400);
    assert!(s.peers.is_empty());
}

#[test]
fn modes_parse_with_either_separator() {
    for (text, mode) in [
        ("fail", config::Mode::Fail),
        ("queue", config::Mode::Queue),
        (" queue-peer-initiated ", config::Mode::QueuePeerInitiated),
        ("queue_peer_initiated", config::Mode::QueuePeerInitiated),
        ("block", config::Mode::Block),
    ] {
        let cb = restart(&[("mode", text)]);
        assert_eq!(cb.settings().defaults.mode, mode);
        assert_eq!(
            cb.settings().defaults.mode.name(),
            text.trim().replace('_', "-")
        );
    }
}

/// The error `init` gives for `pairs`.
fn init_error(pairs: &[(&str, &str)]) -> String {
    CircuitBreaker::init(&Config::from_pairs(pairs.iter().copied())).unwrap_err()
}

/// A bad config: its pairs, what the error must name, and the fix it must give.
type BadConfig = (Vec<(String, &'static str)>, &'static str, &'static str);

#[test]
fn bad_config_is_refused_naming_the_key_and_the_fix() {
    let a = A.to_string();
    let cases: Vec<BadConfig> = vec![
        (
            vec![("mode".into(), "drop")],
            "`mode`",
            "fail, queue, queue-peer-initiated, block",
        ),
        (
            vec![("max_pending".into(), "-1")],
            "`max_pending`",
            "unsigned integer",
        ),
        (
            vec![("max_pending".into(), "171")],
            "`max_pending`",
            "0 for no limit",
        ),
        (
            vec![("max_hourly_rate".into(), "x")],
            "`max_hourly_rate`",
            "unsigned integer",
        ),
        (
            vec![("max_hourly_rate".into(), "3600000001")],
            "`max_hourly_rate`",
            "0 for no rate limit",
        ),
        (vec![("burst".into(), "0")], "`burst`", "mode = \"block\""),
        (
            vec![("queue_retry_ms".into(), "0")],
            "`queue_retry_ms`",
            "1..=60000",
        ),
        (
            vec![("queue_max_ms".into(), "0")],
            "`queue_max_ms`",
            "1..=86400000",
        ),
        (
            vec![("queue_max_len".into(), "500")],
            "`queue_max_len`",
            "1..=170",
        ),
        (
            vec![("max_inflight_age_s".into(), "5")],
            "`max_inflight_age_s`",
            "60..=2592000",
        ),
        (
            vec![("max_pendng".into(), "1")],
            "`max_pendng` is not known",
            "known keys",
        ),
        (
            vec![("peer.02ab.mode".into(), "block")],
            "`peer.02ab.mode`",
            "lncli listpeers",
        ),
        (
            vec![("peer.mode".into(), "block")],
            "`peer.mode`",
            "peer.<pubkey>.<field>",
        ),
        (
            vec![("peer".into(), "x")],
            "`peer` is not known",
            "peer.<pubkey>",
        ),
        (
            vec![(format!("peer.{a}.speed"), "1")],
            ".speed`",
            "mode, max_pending",
        ),
        (
            vec![(format!("peer.{a}.mode"), "x")],
            ".mode`",
            "queue-peer-initiated",
        ),
        (
            vec![(format!("peer.{a}.max_pending"), "999")],
            ".max_pending`",
            "1..=170",
        ),
        (
            vec![(format!("peer.{a}.burst"), "0")],
            ".burst`",
            "at least 1",
        ),
        (
            vec![
                (format!("peer.{a}.burst"), "1"),
                (format!("peer.{}.burst", a.to_uppercase()), "2"),
            ],
            ".burst`",
            "set twice",
        ),
    ];
    for (pairs, key, fix) in cases {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let err = init_error(&pairs);
        assert!(err.contains(key), "{pairs:?}: {err}");
        assert!(err.contains(fix), "{pairs:?}: {err}");
    }
}

#[test]
fn a_peer_without_a_rate_limit_may_have_burst_0() {
    let rate = format!("peer.{A}.max_hourly_rate");
    let burst = format!("peer.{A}.burst");
    let cb = restart(&[(&rate, "0"), (&burst, "0")]);
    assert_eq!(cb.settings().limits(&A).burst, 0);
    assert!(init_error(&[(&burst, "0")]).contains(&format!("`peer.{A}.burst`")));
}

#[test]
fn the_readme_example_config_is_accepted() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("[plugin.config]\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a [plugin.config] example");
    // As htlcgate passes it: a `[plugin.config.X]` table's keys become `X.key`.
    let mut prefix = String::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(table) = line
            .strip_prefix("[plugin.config.")
            .and_then(|t| t.strip_suffix(']'))
        {
            prefix = format!("{table}.");
            continue;
        }
        let (key, value) = line.split_once(" = ").expect("key = value");
        let value = value.split(" #").next().unwrap_or(value);
        pairs.push((
            format!("{prefix}{}", key.trim_matches('"')),
            value.trim().trim_matches('"').to_string(),
        ));
    }
    assert_eq!(pairs.len(), 7, "{pairs:?}");
    let cb = CircuitBreaker::init(&Config::from_pairs(pairs)).unwrap();
    let mut b_key = NodeId([0xbb; 33]);
    b_key.0[0] = 3;
    assert_eq!(cb.settings().limits(&b_key).mode, config::Mode::Queue);
    assert_eq!(cb.settings().limits(&b_key).max_pending, 50);
    assert_eq!(cb.settings().peers.len(), 2);
}

/// Amounts of a `Forwarded` outcome with incoming expiry `expiry`.
fn forwarded(expiry: u32) -> OutcomeKind {
    OutcomeKind::Forwarded(htlcgate_sdk::HtlcAmounts {
        incoming_amount_msat: 2,
        outgoing_amount_msat: 1,
        incoming_expiry: expiry,
        outgoing_expiry: expiry.saturating_sub(40),
    })
}

#[test]
fn a_queued_htlc_forwarded_anyway_counts_in_flight_until_resolved() {
    // 0 = LND did not report the expiry: the entry then expires by age only.
    for expiry in [HEIGHT + 144, 0] {
        let mut cb = setup(&pending_only("1", "queue"));
        assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
        assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
        // The host let 1 through while queued (its hold cap with
        // on_hold_expiry = "resume", or the chain budget with on_budget =
        // "resume"): LND forwarded it.
        outcome(&mut cb, A_THEIRS, 1, forwarded(expiry));
        settle(&mut cb, A_THEIRS, 0);
        // 1 is in flight now: with max_pending 1, 2 waits.
        assert_eq!(decide(&mut cb, A_THEIRS, 2), hold(), "expiry {expiry}");
        // A replay of 1 is not counted twice.
        assert_eq!(decide(&mut cb, A_THEIRS, 1), next(), "expiry {expiry}");
        assert_eq!(decide(&mut cb, A_THEIRS, 2), hold(), "expiry {expiry}");
        settle(&mut cb, A_THEIRS, 1);
        assert_eq!(decide(&mut cb, A_THEIRS, 2), next(), "expiry {expiry}");
        settle(&mut cb, A_THEIRS, 2);
        assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
    }
}

#[test]
fn a_queued_htlc_forwarded_anyway_expires_at_its_incoming_expiry() {
    let mut cb = setup(&pending_only("1", "queue"));
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    outcome(&mut cb, A_THEIRS, 1, forwarded(HEIGHT + 10));
    settle(&mut cb, A_THEIRS, 0);
    node::set_block_height(Some(HEIGHT + 9));
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    node::set_block_height(Some(HEIGHT + 10));
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
}

#[test]
fn a_clock_set_back_after_a_jump_forward_refills_from_the_new_time() {
    // One token per second, one at most.
    let mut cb = setup(&[
        ("max_pending", "0"),
        ("max_hourly_rate", "3600"),
        ("burst", "1"),
    ]);
    // The clock is a day fast, then NTP sets it right.
    clock::set_unix_ms(T0 + 86_400_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    clock::set_unix_ms(T0);
    // Going back refills nothing...
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    clock::advance_ms(999);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    // ...and the refill goes on from the corrected time.
    clock::advance_ms(1);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 4), fail());
}

#[test]
fn queue_entries_from_before_a_clock_jump_back_wait_from_the_jump() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_ms", "1000"),
    ]);
    clock::set_unix_ms(T0 + 86_400_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold());
    clock::set_unix_ms(T0);
    // 1 is still first (it waited 0 ms as far as the corrected clock knows).
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    settle(&mut cb, A_THEIRS, 0);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold());
    // 1 vanished without an outcome: it stops blocking queue_max_ms after the
    // jump, not a day later.
    clock::advance_ms(1001);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
    settle(&mut cb, A_THEIRS, 2);
    // And it is forgotten soon after.
    clock::advance_ms(10_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
    settle(&mut cb, A_THEIRS, 3);
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}

#[test]
fn in_flight_entries_from_before_a_clock_jump_back_age_from_the_jump() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("max_inflight_age_s", "600"),
    ]);
    node::set_block_height(None);
    clock::set_unix_ms(T0 + 86_400_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    clock::set_unix_ms(T0);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    clock::advance_ms(600_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), fail());
    clock::advance_ms(1_000);
    assert_eq!(decide(&mut cb, A_THEIRS, 3), next());
}

#[test]
fn a_retry_longer_than_the_queue_wait_still_ends_the_wait() {
    let mut cb = setup(&[
        ("max_pending", "1"),
        ("max_hourly_rate", "0"),
        ("mode", "queue"),
        ("queue_max_ms", "1000"),
        ("queue_retry_ms", "5000"),
    ]);
    let hold = Verdict::hold_ms(5000);
    assert_eq!(decide(&mut cb, A_THEIRS, 0), next());
    assert_eq!(decide(&mut cb, A_THEIRS, 1), hold);
    clock::advance_ms(500);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), hold);
    // Asked again 5000 ms later (plus the host's delay): 1 waited longer than
    // queue_max_ms, so it is decided as in mode fail; it does not join the
    // queue again as a newcomer.
    clock::advance_ms(4_510);
    assert_eq!(decide(&mut cb, A_THEIRS, 1), fail());
    settle(&mut cb, A_THEIRS, 0);
    // 2 too (a slot is free now: let through).
    clock::advance_ms(500);
    assert_eq!(decide(&mut cb, A_THEIRS, 2), next());
    settle(&mut cb, A_THEIRS, 2);
    assert_eq!(kv::keys(), Vec::<Vec<u8>>::new());
}
