//! Each example plugin and fault fixture, loaded into the real sandbox and asked
//! about hand-made HTLCs.

mod common;

use std::time::Duration;

use common::{forward, input, plugin, plugin_with};
use htlcgate::config::SandboxConfig;
use htlcgate::verdict::{FailCode, InvalidVerdict, Verdict};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::fault::PluginFault;
use htlcgate::wasm::plugin::{LoadError, Plugin, Step};

fn sandbox() -> Sandbox {
    Sandbox::new(&SandboxConfig::default()).unwrap()
}

fn load(cfg: htlcgate::config::PluginConfig) -> Plugin {
    Plugin::load(&sandbox(), cfg).unwrap_or_else(|e| panic!("{e}"))
}

const FAIL: Step = Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure));

#[test]
fn fee_floor_fails_fees_below_base_plus_ppm_and_passes_the_rest() {
    let mut p = load(plugin_with(
        "fee-floor",
        &[("base_msat", "1000"), ("ppm", "100")],
    ));
    // floor for 1,000,000 msat out = 1000 + 100 = 1100 msat
    let cases = [
        (1_000_000, 1_100, Step::Next),
        (1_000_000, 1_099, FAIL),
        (1_000_000, 0, FAIL),
        (1, 1_000, Step::Next),
        (1, 999, FAIL),
        (
            u64::MAX - 5_000_000_000_000_000,
            5_000_000_000_000_000,
            Step::Next,
        ),
    ];
    for (i, (out, fee, want)) in cases.into_iter().enumerate() {
        let (step, _) = p.decide(&input(forward(i as u64, out, fee)));
        assert_eq!(step, want, "out={out} fee={fee}");
    }
}

#[test]
fn fee_floor_treats_an_incoming_amount_below_the_outgoing_as_no_fee() {
    let mut p = load(plugin_with("fee-floor", &[("base_msat", "1")]));
    let mut req = forward(1, 1_000, 0);
    req.incoming_amount_msat = 500;
    assert_eq!(p.decide(&input(req)).0, FAIL);
}

#[test]
fn max_htlc_fails_only_amounts_above_the_limit() {
    let mut p = load(plugin_with("max-htlc", &[("max_msat", "5000")]));
    assert_eq!(p.decide(&input(forward(1, 5_000, 10))).0, Step::Next);
    assert_eq!(p.decide(&input(forward(2, 5_001, 10))).0, FAIL);
    assert_eq!(p.decide(&input(forward(3, 0, 10))).0, Step::Next);
    assert_eq!(p.decide(&input(forward(4, u64::MAX, 0))).0, FAIL);
}

#[test]
fn max_htlc_without_a_limit_refuses_to_load() {
    let err = Plugin::load(&sandbox(), plugin("max-htlc")).err().unwrap();
    assert!(matches!(err, LoadError::InitRefused { .. }), "{err}");
    assert!(err.to_string().contains("max_msat"), "{err}");
}

#[test]
fn channel_filter_denies_listed_incoming_channels() {
    let mut p = load(plugin_with("channel-filter", &[("deny_in", "0x0x1, 5")]));
    let mut req = forward(1, 1000, 10);
    req.incoming_circuit_key.as_mut().unwrap().chan_id = 1;
    assert_eq!(p.decide(&input(req)).0, FAIL);
    let mut req = forward(2, 1000, 10);
    req.incoming_circuit_key.as_mut().unwrap().chan_id = 2;
    assert_eq!(p.decide(&input(req)).0, Step::Next);
}

#[test]
fn channel_filter_allow_list_passes_only_listed_outgoing_channels() {
    let mut p = load(plugin_with(
        "channel-filter",
        &[("allow_out", "800000x1x0")],
    ));
    let mut req = forward(1, 1000, 10);
    req.outgoing_requested_chan_id = (800_000u64 << 40) | (1 << 16);
    assert_eq!(p.decide(&input(req)).0, Step::Next);
    let mut req = forward(2, 1000, 10);
    req.outgoing_requested_chan_id = 42;
    assert_eq!(p.decide(&input(req)).0, FAIL);
}

#[test]
fn channel_filter_with_a_bad_scid_refuses_to_load_naming_it() {
    let err = Plugin::load(
        &sandbox(),
        plugin_with("channel-filter", &[("deny_in", "12xab")]),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::InitRefused { .. }), "{msg}");
    assert!(msg.contains("deny_in") && msg.contains("12xab"), "{msg}");
}

#[test]
fn a_loop_is_cut_off_by_fuel() {
    let mut p = load(plugin("spin-forever"));
    let (step, cost) = p.decide(&input(forward(1, 1000, 10)));
    assert_eq!(
        step,
        Step::Fault(PluginFault::FuelExhausted { fuel: 10_000_000 })
    );
    assert_eq!(cost.fuel, 10_000_000);
}

#[test]
fn a_loop_is_cut_off_by_the_deadline_when_fuel_is_plentiful() {
    let mut cfg = plugin("spin-forever");
    cfg.fuel = u64::MAX / 2;
    cfg.timeout = Duration::from_millis(20);
    let mut p = load(cfg);
    let (step, _) = p.decide(&input(forward(1, 1000, 10)));
    assert_eq!(
        step,
        Step::Fault(PluginFault::Deadline {
            timeout: Duration::from_millis(20)
        })
    );
}

#[test]
fn a_trap_replaces_the_instance_and_the_next_htlc_is_decided() {
    let mut p = load(plugin_with("trap", &[("every", "2")]));
    assert_eq!(p.decide(&input(forward(1, 1000, 10))).0, Step::Next);
    let (step, _) = p.decide(&input(forward(2, 1000, 10)));
    assert!(
        matches!(step, Step::Fault(PluginFault::Trap { .. })),
        "{step:?}"
    );
    // A fresh instance: its call counter starts again, so the next call passes.
    assert_eq!(p.decide(&input(forward(3, 1000, 10))).0, Step::Next);
    assert!(!p.is_quarantined());
}

#[test]
fn memory_growth_is_stopped_at_the_cap() {
    let mut cfg = plugin("memory-hog");
    cfg.memory_bytes = 4 << 20;
    let mut p = load(cfg);
    let mut saw_cap = false;
    for i in 0..20 {
        if let (Step::Fault(PluginFault::MemoryCap { limit_bytes }), _) =
            p.decide(&input(forward(i, 1000, 10)))
        {
            assert_eq!(limit_bytes, 4 << 20);
            saw_cap = true;
            break;
        }
    }
    assert!(saw_cap, "memory-hog never hit the cap");
}

#[test]
fn a_wrong_preimage_is_an_invalid_verdict() {
    let mut p = load(plugin("wrong-preimage"));
    let (step, _) = p.decide(&input(forward(1, 1000, 10)));
    assert_eq!(
        step,
        Step::Fault(PluginFault::InvalidVerdict(
            InvalidVerdict::PreimageMismatch
        ))
    );
}

#[test]
fn the_right_preimage_settles() {
    let req = forward(7, 1000, 10);
    let pre = htlcgate::mock_lnd::sample_preimage(1, 7);
    let mut p = load(plugin_with(
        "fixed-verdict",
        &[
            ("verdict", "settle-config"),
            ("preimage", &hex::encode(pre)),
        ],
    ));
    assert_eq!(p.decide(&input(req)).0, Step::Verdict(Verdict::Settle(pre)));
}

#[test]
fn a_plugin_is_quarantined_after_max_faults_in_a_row() {
    let mut cfg = plugin("trap");
    cfg.max_faults = 3;
    let mut p = load(cfg);
    for i in 0..3 {
        assert!(matches!(
            p.decide(&input(forward(i, 1000, 10))).0,
            Step::Fault(_)
        ));
    }
    assert!(p.is_quarantined());
    assert_eq!(p.decide(&input(forward(9, 1000, 10))).0, Step::Quarantined);
}

#[test]
fn an_init_refusal_refuses_the_load_with_the_plugins_message() {
    let err = Plugin::load(&sandbox(), plugin("refuse-init"))
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::InitRefused { .. }), "{err}");
    assert!(err.to_string().contains("refusing"), "{err}");
}

#[test]
fn a_core_module_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, wat::parse_str("(module)").unwrap()).unwrap();
    let cfg = htlcgate::config::PluginConfig::with_defaults("core", &path);
    let err = Plugin::load(&sandbox(), cfg).err().unwrap();
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
}

#[test]
fn a_component_of_another_world_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.wasm");
    std::fs::write(&path, wat::parse_str("(component)").unwrap()).unwrap();
    let cfg = htlcgate::config::PluginConfig::with_defaults("empty", &path);
    let err = Plugin::load(&sandbox(), cfg).err().unwrap();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("decider"), "{err}");
}

#[test]
fn garbage_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"#!/bin/sh\necho hi\n").unwrap();
    let cfg = htlcgate::config::PluginConfig::with_defaults("junk", &path);
    let err = Plugin::load(&sandbox(), cfg).err().unwrap();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

/// A final "settled" outcome for HTLC 1:1, as the host hands it to plugins.
fn settled() -> htlcgate::wasm::bindings::HtlcOutcome {
    use htlcgate::wasm::bindings::{CircuitKey, FinalResolution, HtlcOutcome, OutcomeKind};
    HtlcOutcome {
        incoming_circuit_key: CircuitKey {
            chan_id: 1,
            htlc_id: 1,
        },
        outgoing_circuit_key: None,
        kind: OutcomeKind::Final(FinalResolution {
            settled: true,
            offchain: true,
        }),
        at_unix_ms: 1,
    }
}

#[test]
fn a_rust_plugin_without_its_own_outcome_is_told_once_and_one_with_it_always() {
    // fee-floor keeps the SDK's default `Plugin::outcome`: it exports `outcome`
    // (wit-bindgen exports the whole world) and says at the first call that it
    // ignores outcomes.
    let mut floor = load(plugin_with("fee-floor", &[("base_msat", "1")]));
    assert!(floor.exports_outcome() && floor.wants_outcomes());
    let (r, cost) = floor.outcome(&settled());
    assert_eq!(r, Ok(()));
    assert!(cost.fuel > 0, "the first outcome is a real call");
    assert!(!floor.wants_outcomes());
    assert_eq!(floor.outcome(&settled()).1.fuel, 0, "not called again");
    assert_eq!(floor.decide(&input(forward(2, 1_000, 1_000))).0, Step::Next);

    // circuitbreaker overrides it: every outcome reaches it.
    let mut cfg = plugin_with("circuitbreaker", &[("max_pending", "2")]);
    cfg.grants = vec!["kv".into(), "node".into()];
    let mut breaker = load(cfg);
    for _ in 0..3 {
        let (r, cost) = breaker.outcome(&settled());
        assert_eq!(r, Ok(()));
        assert!(cost.fuel > 0);
        assert!(breaker.wants_outcomes());
    }
}

#[test]
fn a_chain_stops_handing_outcomes_to_plugins_that_ignore_them() {
    let chain = htlcgate::chain::Chain::load(
        &sandbox(),
        &[
            plugin_with("fee-floor", &[("base_msat", "1")]),
            plugin_with("max-htlc", &[("max_msat", "5000")]),
        ],
        Verdict::Resume,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(chain.wants_outcomes());
    assert_eq!(chain.outcome(std::sync::Arc::new(settled())), 0);
    // Each plugin's thread runs the outcome, which tells the host to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while chain.wants_outcomes() {
        assert!(std::time::Instant::now() < deadline, "still wants outcomes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_chain_answering_an_htlc_itself_releases_the_waiting_task_only_once_told_to() {
    use htlcgate::chain::{Chain, Direct};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::sync::oneshot::error::TryRecvError;

    let chain = Chain::load(
        &sandbox(),
        &[plugin_with("max-htlc", &[("max_msat", "5000")])],
        Verdict::Resume,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let claim = Arc::new(AtomicBool::new(false));
    let (tx, finished) = std::sync::mpsc::channel();
    let direct = Direct {
        claim: claim.clone(),
        finish: Box::new(move |decision, waiter| tx.send((decision, waiter)).unwrap()),
    };
    let mut waiting = chain.decide_direct(input(forward(1, 9_000, 8_000)), 0, Some(direct));
    let (decision, waiter) = finished.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        decision.verdict,
        Verdict::Fail(FailCode::TemporaryChannelFailure)
    );
    assert!(claim.load(Ordering::Acquire), "answered without the claim");
    // The waiting task is not woken while the answer is on its way (its wake-up
    // would be a second one for this HTLC)...
    assert!(matches!(waiting.try_recv(), Err(TryRecvError::Empty)));
    // ...and learns that the chain answered (no decision for it) once released.
    drop(waiter);
    assert!(matches!(waiting.try_recv(), Err(TryRecvError::Closed)));
}
