//! One policy in three languages: the Rust, Go and AssemblyScript `fee-floor`
//! give the same verdict on every HTLC of one generated corpus; the Go and
//! AssemblyScript loop fixtures are cut off exactly like the Rust one; the
//! AssemblyScript per-call reset keeps memory flat; a chain mixing the three
//! languages decides a stream through the mock LND; and log and init-error text
//! that is not UTF-8 (Go bytes, AssemblyScript lone surrogates) is repaired by
//! the SDKs instead of faulting the plugin.
//!
//! World 0.2.0 through the Go and AssemblyScript SDKs (`go-peer-hold`,
//! `as-peer-hold`, which decide alike): `decide` sees `attempt` and a first
//! attempt comes back as a hold; `channel` reads the node context the mock LND
//! fills; `kv` counts round-trip through the host's store; `outcome` calls reach
//! the plugin with every kind and field; and a module without `outcome` becomes a
//! component without it.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{forward, input, plugin, plugin_with};
use htlcgate::chain::{Chain, DecidedBy};
use htlcgate::circuit::Scid;
use htlcgate::config::{ChainConfig, KvLimits, PluginConfig, SandboxConfig};
use htlcgate::gate::Gate;
use htlcgate::lnd::feature::Features;
use htlcgate::lnd::node::{NodeContext, NodeOptions};
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ResolveHoldForwardAction};
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::mock_node::sample_channel;
use htlcgate::verdict::{FailCode, Verdict};
use htlcgate::wasm::bindings::{
    CircuitKey as WitKey, FinalResolution, HtlcAmounts, HtlcOutcome, LinkFailure, OutcomeKind,
};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::fault::PluginFault;
use htlcgate::wasm::plugin::{LoadError, Plugin, Step};
use tokio::sync::{mpsc, watch};

/// The three implementations of one policy.
const FEE_FLOORS: [&str; 3] = ["fee-floor", "go-fee-floor", "as-fee-floor"];

fn sandbox() -> Sandbox {
    Sandbox::new(&SandboxConfig::default()).unwrap()
}

fn load(cfg: PluginConfig) -> Plugin {
    let name = cfg.name.clone();
    Plugin::load(&sandbox(), cfg).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The policy in plain Rust (u128, no shortcuts), to check all three against.
fn expected(base: u64, ppm: u64, req: &ForwardHtlcInterceptRequest) -> Step {
    let final_hop =
        req.outgoing_requested_chan_id == 0 && req.outgoing_requested_node_id.is_empty();
    let (incoming, outgoing) = (req.incoming_amount_msat, req.outgoing_amount_msat);
    let floor = u128::from(base) + u128::from(ppm) * u128::from(outgoing) / 1_000_000;
    let pays = incoming >= outgoing && u128::from(incoming - outgoing) >= floor;
    if final_hop || pays {
        Step::Next
    } else {
        Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure))
    }
}

/// 1,000 HTLCs for a floor of `base + ppm * out / 1e6`: the edges (0, 1,
/// u64::MAX, the exact floor and one below it, negative fees, final hops,
/// node-addressed forwards with records) and random amounts in between.
fn corpus(base: u64, ppm: u64) -> Vec<ForwardHtlcInterceptRequest> {
    let mut rng = fastrand::Rng::with_seed(0x4854_4c43);
    let edges = [
        0,
        1,
        2,
        999_999,
        1_000_000,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    let floor = |out: u64| {
        (u128::from(base) + u128::from(ppm) * u128::from(out) / 1_000_000).min(u64::MAX.into())
            as u64
    };
    (0..1000u64)
        .map(|id| {
            let out = match id % 5 {
                0 => edges[(id / 5) as usize % edges.len()],
                1 => rng.u64(..),
                _ => rng.u64(0..10_000_000_000),
            };
            let fee = match id % 7 {
                0 => floor(out),
                1 => floor(out).saturating_sub(1),
                2 => 0,
                3 => floor(out).saturating_add(1),
                _ => rng.u64(0..floor(out).saturating_mul(2).max(10)),
            };
            let mut req = forward(id, out, fee);
            match id % 11 {
                // A negative fee: more out than in.
                0 => req.incoming_amount_msat = out.saturating_sub(1 + id),
                // A payment to this node.
                1 => req.outgoing_requested_chan_id = 0,
                // A node-addressed forward with custom records.
                2 => {
                    req.outgoing_requested_chan_id = u64::MAX;
                    req.outgoing_requested_node_id = vec![3; 33];
                    req.custom_records = [(65_537, vec![1, 2, 3]), (70_000, vec![])].into();
                    req.in_wire_custom_records = [(65_541, b"wire".to_vec())].into();
                }
                _ => {}
            }
            req
        })
        .collect()
}

#[test]
fn rust_go_and_assemblyscript_fee_floors_agree_on_every_htlc() {
    for (base, ppm) in [(1_000, 100), (0, 1), (u64::MAX, u64::MAX), (0, 0)] {
        let config = [("base_msat", base.to_string()), ("ppm", ppm.to_string())];
        let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut plugins: Vec<Plugin> = FEE_FLOORS
            .iter()
            .map(|name| load(plugin_with(name, &config)))
            .collect();
        let mut fails = 0;
        for req in corpus(base, ppm) {
            let want = expected(base, ppm, &req);
            if want != Step::Next {
                fails += 1;
            }
            let summary = format!(
                "base={base} ppm={ppm} in={} out={} chan={}",
                req.incoming_amount_msat, req.outgoing_amount_msat, req.outgoing_requested_chan_id
            );
            let htlc = input(req);
            for (name, p) in FEE_FLOORS.iter().zip(plugins.iter_mut()) {
                let (step, _) = p.decide(&htlc);
                assert_eq!(step, want, "{name} disagrees on {summary}");
            }
        }
        // The corpus must tell the implementations apart: both answers occur,
        // except where the config makes one of them impossible.
        match (base, ppm) {
            (0, 0) => assert!(fails > 50, "only {fails} fails with a zero floor"),
            (u64::MAX, u64::MAX) => assert!(fails > 800, "only {fails} fails"),
            _ => assert!((200..900).contains(&fails), "{fails} fails of 1000"),
        }
    }
}

#[test]
fn a_go_or_assemblyscript_loop_is_cut_off_by_fuel_like_the_rust_one() {
    for name in ["spin-forever", "go-spin-forever", "as-spin-forever"] {
        let mut p = load(plugin(name));
        for id in 0..2 {
            let (step, cost) = p.decide(&input(forward(id, 1000, 10)));
            assert_eq!(
                step,
                Step::Fault(PluginFault::FuelExhausted { fuel: 10_000_000 }),
                "{name}"
            );
            assert_eq!(cost.fuel, 10_000_000, "{name}");
        }
        // Replaced after each trap, not quarantined yet (max_faults = 5).
        assert!(!p.is_quarantined(), "{name}");
    }
}

#[test]
fn a_go_or_assemblyscript_loop_is_cut_off_by_the_deadline_when_fuel_is_plentiful() {
    for name in ["spin-forever", "go-spin-forever", "as-spin-forever"] {
        let mut cfg = plugin(name);
        cfg.fuel = u64::MAX / 2;
        cfg.timeout = Duration::from_millis(20);
        let mut p = load(cfg);
        let started = std::time::Instant::now();
        let (step, _) = p.decide(&input(forward(1, 1000, 10)));
        assert_eq!(
            step,
            Step::Fault(PluginFault::Deadline {
                timeout: Duration::from_millis(20)
            }),
            "{name}"
        );
        // The deadline, plus re-instantiation (the Go runtime starts again).
        assert!(started.elapsed() < Duration::from_secs(2), "{name}");
    }
}

#[test]
fn an_assemblyscript_plugins_memory_does_not_grow_across_calls() {
    // 1 MiB: without the per-call reset, 5,000 calls (each allocating the
    // arguments, the Htlc and the Verdict) would pass it many times over.
    let mut cfg = plugin_with("as-fee-floor", &[("base_msat", "1000")]);
    cfg.memory_bytes = 1 << 20;
    let mut p = load(cfg);
    let mut fuel = Vec::new();
    for id in 0..5_000 {
        // Fees at or above the floor: every call takes the same path.
        let mut req = forward(id, 1_000_000, 1_100 + id % 2_000);
        req.custom_records = [(65_537, vec![7; 512])].into();
        let (step, cost) = p.decide(&input(req));
        assert!(!matches!(step, Step::Fault(_)), "call {id}: {step:?}");
        fuel.push(cost.fuel);
    }
    // Same work per call: no allocator slowing down on a growing heap.
    assert_eq!(fuel[10], fuel[4_000], "fuel per call changed");
}

#[test]
fn a_go_plugin_keeps_deciding_after_many_calls() {
    // Go's garbage collector, not a reset, frees its per-call garbage; memory
    // handed to the host stays reachable until the call is over.
    let mut cfg = plugin_with("go-fee-floor", &[("base_msat", "1000")]);
    cfg.memory_bytes = 32 << 20;
    let mut p = load(cfg);
    for id in 0..3_000 {
        let mut req = forward(id, 1_000_000, 999 + id % 2);
        req.custom_records = [(65_537, vec![7; 1024])].into();
        let want = if id % 2 == 1 {
            Step::Next
        } else {
            Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure))
        };
        assert_eq!(p.decide(&input(req)).0, want, "call {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_rust_go_and_assemblyscript_plugins_decides_a_stream() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    // Each language gets the last word on part of the stream:
    // Rust max-htlc fails amounts above 5e9, Go fails fees below
    // 1000 + 100 ppm, AssemblyScript fails fees below 5000; the rest resume.
    let chain = vec![
        plugin_with("max-htlc", &[("max_msat", "5000000000")]),
        plugin_with("go-fee-floor", &[("base_msat", "1000"), ("ppm", "100")]),
        plugin_with("as-fee-floor", &[("base_msat", "5000")]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let loaded = Chain::load(&sandbox, &chain, Verdict::Resume).unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut events) = mpsc::unbounded_channel();
    let gate = Gate::new(
        loaded,
        ChainConfig::default(),
        htlcgate::journal::Journal::in_memory(),
        Some(tx),
    );
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(htlcgate::lnd::stream::run(mock.endpoint(), gate, stop_rx));
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();

    let mut want = HashMap::new();
    for id in 0..300u64 {
        let out = match id % 4 {
            0 => 5_000_000_001 + id,
            _ => 1_000_000 + id * 1_000,
        };
        let fee = match id % 3 {
            0 => 500,
            1 => 3_000,
            _ => 6_000,
        };
        let floor = 1000 + out / 10_000;
        let (action, by) = if out > 5_000_000_000 {
            (ResolveHoldForwardAction::Fail, "max-htlc")
        } else if fee < floor {
            (ResolveHoldForwardAction::Fail, "go-fee-floor")
        } else if fee < 5000 {
            (ResolveHoldForwardAction::Fail, "as-fee-floor")
        } else {
            (ResolveHoldForwardAction::Resume, "default")
        };
        want.insert((1u64, id), (action, by));
        mock.send_htlc(forward(id, out, fee));
    }
    mock.wait_resolved(300, Duration::from_secs(60))
        .await
        .unwrap();
    let mut answered = HashMap::new();
    for r in mock.resolutions() {
        assert!(
            answered.insert(r.key, r.response).is_none(),
            "{:?} answered twice",
            r.key
        );
    }
    assert_eq!(answered.len(), 300);
    for (key, (action, _)) in &want {
        assert_eq!(answered[key].action(), *action, "key {key:?}");
    }
    let mut by_count: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        let by = match &event.decision.by {
            DecidedBy::Plugin(p) => p.to_string(),
            DecidedBy::Default => "default".into(),
            other => panic!("{:?} decided by {other}", event.key),
        };
        let key = (event.key.chan_id, event.key.htlc_id);
        assert_eq!(by, want[&key].1, "who decided {key:?}");
        *by_count.entry(by).or_default() += 1;
    }
    for who in ["max-htlc", "go-fee-floor", "as-fee-floor", "default"] {
        assert!(by_count.get(who).copied().unwrap_or(0) > 20, "{by_count:?}");
    }
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_go_plugin_starts_its_runtime_during_instantiation_under_init_fuel() {
    // Far too little fuel for the Go runtime's start-up: the load fails as a
    // start-up fault, before any decide.
    let mut cfg = plugin("go-fee-floor");
    cfg.init_fuel = 10_000;
    let err = Plugin::load(&sandbox(), cfg)
        .err()
        .expect("loaded on 10,000 fuel");
    assert!(
        matches!(
            err,
            htlcgate::wasm::plugin::LoadError::InitFault {
                fault: PluginFault::FuelExhausted { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// The two implementations of the 0.2.0 demonstration plugin.
const PEER_HOLDS: [&str; 2] = ["go-peer-hold", "as-peer-hold"];

/// A peer-hold plugin granted what it imports, holding first attempts `hold_ms`.
fn peer_hold(name: &str, hold_ms: &str) -> PluginConfig {
    let mut cfg = plugin_with(name, &[("hold_ms", hold_ms)]);
    cfg.grants = vec!["kv".into(), "node".into()];
    cfg
}

/// The 8-byte big-endian counter under `key` in plugin `name`'s namespace (0
/// when absent).
fn counter(sandbox: &Sandbox, name: &str, key: &str) -> u64 {
    let value = sandbox
        .kv
        .namespace(name)
        .unwrap()
        .get(key.as_bytes(), &KvLimits::default())
        .unwrap();
    match value {
        None => 0,
        Some(v) => u64::from_be_bytes(v.try_into().expect("an 8-byte counter")),
    }
}

/// A forward arriving over incoming channel `chan`.
fn forward_on(chan: u64, id: u64) -> ForwardHtlcInterceptRequest {
    let mut req = forward(id, 1_000_000, 2_000);
    req.incoming_circuit_key.as_mut().unwrap().chan_id = chan;
    req
}

#[test]
fn go_and_assemblyscript_plugins_see_the_attempt_and_a_first_attempt_comes_back_as_a_hold() {
    for name in PEER_HOLDS {
        let mut p = load(peer_hold(name, "250"));
        assert_eq!(p.world_version(), "0.2.0", "{name}");
        assert!(p.exports_outcome(), "{name}");
        let first = input(forward(1, 1_000_000, 2_000));
        assert_eq!(
            p.decide(&first).0,
            Step::Hold(Duration::from_millis(250)),
            "{name}"
        );
        // Asked again after the hold: attempt 2, no opinion.
        let again = Arc::new(first.with_attempt(2));
        assert_eq!(p.decide(&again).0, Step::Next, "{name} on attempt 2");
        assert_eq!(
            p.decide(&Arc::new(first.with_attempt(7))).0,
            Step::Next,
            "{name} on attempt 7"
        );
        // hold_ms = 0 never holds.
        let mut never = load(peer_hold(name, "0"));
        assert_eq!(never.decide(&first).0, Step::Next, "{name} hold_ms 0");
    }
}

#[test]
fn a_go_or_assemblyscript_module_without_outcome_becomes_a_component_without_it() {
    for name in ["go-fee-floor", "as-fee-floor"] {
        let p = load(plugin_with(name, &[("base_msat", "1")]));
        assert_eq!(p.world_version(), "0.2.0", "{name}");
        assert!(!p.exports_outcome(), "{name} exports outcome");
    }
}

#[test]
fn a_go_or_assemblyscript_plugin_calling_channel_needs_the_node_grant() {
    for name in PEER_HOLDS {
        let mut cfg = peer_hold(name, "1");
        cfg.grants = vec!["kv".into()];
        match Plugin::load(&sandbox(), cfg) {
            Err(LoadError::NotGranted { import, grant, .. }) => {
                assert_eq!((import.as_str(), grant), ("channel", "node"), "{name}");
            }
            Err(other) => panic!("{name}: wrong error: {other}"),
            Ok(_) => panic!("{name} loaded without the node grant"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_assemblyscript_plugins_count_htlcs_per_peer_from_the_node_context_in_kv() {
    const A: u64 = (700_000 << 40) | (1 << 16);
    const B: u64 = (700_001 << 40) | (2 << 16) | 1;
    const UNKNOWN: u64 = (700_002 << 40) | (3 << 16);
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    mock.node()
        .set_channels(vec![sample_channel(A), sample_channel(B)]);
    let (stop, stop_rx) = watch::channel(false);
    let node = NodeContext::spawn(
        mock.endpoint(),
        NodeOptions::default(),
        Features::new(),
        stop_rx,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.channel(Scid(A)).is_none() || node.channel(Scid(B)).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel cache was not filled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sandbox = sandbox().with_node(node.clone());
    let peer_key = |scid: u64| format!("peer/{}", sample_channel(scid).remote_pubkey);

    for name in PEER_HOLDS {
        let cfg = peer_hold(name, "100");
        let mut p = Plugin::load(&sandbox, cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Two HTLCs from A's peer, one from B's, one over a channel the node does
        // not know; the second attempts are not counted again.
        for (id, chan) in [(0, A), (1, A), (2, B), (3, UNKNOWN)] {
            let first = input(forward_on(chan, id));
            assert_eq!(
                p.decide(&first).0,
                Step::Hold(Duration::from_millis(100)),
                "{name}"
            );
            assert_eq!(p.decide(&Arc::new(first.with_attempt(2))).0, Step::Next);
        }
        // Each count read back what the previous call wrote.
        assert_eq!(counter(&sandbox, name, &peer_key(A)), 2, "{name}: A's peer");
        assert_eq!(counter(&sandbox, name, &peer_key(B)), 1, "{name}: B's peer");
        assert_eq!(counter(&sandbox, name, "peer/unknown"), 1, "{name}");
        // Only the plugin's own keys are in its namespace.
        assert_eq!(sandbox.kv.namespace(name).unwrap().len(), 3, "{name}");
    }

    // Without a node context every channel is unknown.
    for name in PEER_HOLDS {
        let lonely = self::sandbox();
        let mut p = Plugin::load(&lonely, peer_hold(name, "100")).unwrap();
        p.decide(&input(forward_on(A, 9)));
        assert_eq!(counter(&lonely, name, "peer/unknown"), 1, "{name}");
        assert_eq!(counter(&lonely, name, &peer_key(A)), 0, "{name}");
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), node.join())
        .await
        .expect("the node context stops");
}

/// One outcome of every kind for HTLC 1:`id`, forwarded as 1,000,000 msat out.
fn outcomes(id: u64) -> Vec<HtlcOutcome> {
    let key = WitKey {
        chan_id: 1,
        htlc_id: id,
    };
    let out = Some(WitKey {
        chan_id: (700_001 << 40) | (2 << 16) | 1,
        htlc_id: 40 + id,
    });
    let amounts = HtlcAmounts {
        incoming_amount_msat: 1_002_000,
        outgoing_amount_msat: 1_000_000,
        incoming_expiry: 800_080,
        outgoing_expiry: 800_040,
    };
    let outcome = |outgoing_circuit_key, kind| HtlcOutcome {
        incoming_circuit_key: key,
        outgoing_circuit_key,
        kind,
        at_unix_ms: 1_700_000_000_000 + id,
    };
    vec![
        outcome(out, OutcomeKind::Forwarded(amounts)),
        outcome(out, OutcomeKind::Settled(vec![0xcd; 32])),
        outcome(out, OutcomeKind::ForwardFailed),
        outcome(
            out,
            OutcomeKind::LinkFailed(LinkFailure {
                // Negative: its sign must survive the i64 slot it is joined into.
                wire_failure_code: -1,
                detail: "INSUFFICIENT_BALANCE".into(),
                message: "insufficient bandwidth to route htlc".into(),
                amounts,
            }),
        ),
        outcome(
            None,
            OutcomeKind::Final(FinalResolution {
                settled: true,
                offchain: true,
            }),
        ),
        outcome(
            None,
            OutcomeKind::Final(FinalResolution {
                settled: false,
                offchain: false,
            }),
        ),
    ]
}

#[test]
fn outcome_calls_reach_go_and_assemblyscript_plugins_with_every_kind_and_field() {
    for name in PEER_HOLDS {
        let sandbox = sandbox();
        let mut p = Plugin::load(&sandbox, peer_hold(name, "100")).unwrap();
        for id in 0..3 {
            for o in outcomes(id) {
                let (result, cost) = p.outcome(&o);
                assert_eq!(result, Ok(()), "{name}: {:?}", o.kind);
                assert!(cost.fuel > 0, "{name}: the plugin was not called");
            }
        }
        for (key, want) in [
            ("outcome/forwarded", 3),
            ("forwarded-msat", 3_000_000),
            ("outcome/settled", 3),
            ("outcome/forward-failed", 3),
            ("outcome/link-failed", 3),
            ("link-failed/INSUFFICIENT_BALANCE", 3),
            ("outcome/final/settled", 3),
            ("outcome/final/failed", 3),
        ] {
            assert_eq!(counter(&sandbox, name, key), want, "{name}: {key}");
        }
        // Outcomes between decides leave the plugin deciding as before.
        let first = input(forward(5, 1_000_000, 2_000));
        assert_eq!(p.decide(&first).0, Step::Hold(Duration::from_millis(100)));
    }
}

#[test]
fn a_go_and_an_assemblyscript_plugins_memory_stays_bounded_across_outcomes() {
    // Strings and lists the host writes for each outcome live in per-call memory
    // that `outcome` (which has no post-return) must release itself.
    for name in PEER_HOLDS {
        let mut cfg = peer_hold(name, "100");
        cfg.memory_bytes = if name.starts_with("go") {
            32 << 20
        } else {
            1 << 20
        };
        let sandbox = sandbox();
        let mut p = Plugin::load(&sandbox, cfg).unwrap();
        let mut long = outcomes(0)[3].clone();
        if let OutcomeKind::LinkFailed(f) = &mut long.kind {
            f.message = "x".repeat(16 << 10);
        }
        for i in 0..2_000 {
            let (result, _) = p.outcome(&long);
            assert_eq!(result, Ok(()), "{name}: call {i}");
        }
        assert_eq!(
            counter(&sandbox, name, "outcome/link-failed"),
            2_000,
            "{name}"
        );
    }
}

#[test]
fn go_and_assemblyscript_text_that_is_not_utf8_is_repaired_not_a_fault() {
    // Go strings may hold any bytes and AssemblyScript strings lone surrogates;
    // the world's strings are UTF-8, which the host checks when it reads them.
    for name in ["go-invalid-utf8", "as-invalid-utf8"] {
        let mut p = load(plugin(name));
        for id in 0..3 {
            let (step, _) = p.decide(&input(forward(id, 1000, 10)));
            assert_eq!(step, Step::Verdict(Verdict::Resume), "{name}, call {id}");
        }
        assert!(!p.is_quarantined(), "{name}");
        match Plugin::load(&sandbox(), plugin_with(name, &[("refuse", "yes")])) {
            Err(LoadError::InitRefused { message, .. }) => {
                assert!(
                    message.starts_with("refused ")
                        && message.ends_with(" here")
                        && message.contains('\u{fffd}'),
                    "{name}: {message:?}"
                );
            }
            Err(other) => panic!("{name}: wrong error: {other}"),
            Ok(_) => panic!("{name}: init did not refuse"),
        }
    }
}
