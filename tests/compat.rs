//! Plugins built for the frozen 0.1.0 world (`wit/v0.1/plugin.wit`) keep working on
//! the 0.2.0 host: `plugins/v01-fee-floor` (plain wit-bindgen against 0.1.0) loads
//! as 0.1.0, decides exactly like the 0.2.0 `fee-floor`, runs in one chain with
//! 0.2.0 plugins over the mock LND (real TLS gRPC), is never told outcomes; and a
//! component of neither version is refused naming both.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{forward, input, plugin_with};
use htlcgate::chain::Chain;
use htlcgate::circuit::CircuitKey;
use htlcgate::config::{ChainConfig, DefaultVerdict, PluginConfig, SandboxConfig};
use htlcgate::gate::Gate;
use htlcgate::lnd::outcome::{HtlcOutcome, OutcomeKind};
use htlcgate::lnd::proto::lnrpc::failure::FailureCode;
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ResolveHoldForwardAction};
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::verdict::{FailCode, Verdict};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::outcome::to_wit;
use htlcgate::wasm::plugin::{LoadError, Plugin, Step};
use tokio::sync::{mpsc, watch};

const FLOOR: u64 = 1_000;

fn sandbox() -> Sandbox {
    Sandbox::new(&SandboxConfig::default()).unwrap()
}

fn v01_floor() -> PluginConfig {
    plugin_with("v01-fee-floor", &[("min_fee_msat", "1000")])
}

fn load(sandbox: &Sandbox, cfg: PluginConfig) -> Plugin {
    Plugin::load(sandbox, cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// Forwards around the floor, negative fees, extremes, a payment to this node and
/// a node-addressed forward.
fn requests() -> Vec<ForwardHtlcInterceptRequest> {
    let mut out = Vec::new();
    let mut id = 0;
    let mut next = |o: u64, fee: u64| {
        id += 1;
        forward(id, o, fee)
    };
    for (o, fee) in [
        (1_000_000, FLOOR),
        (1_000_000, FLOOR - 1),
        (1_000_000, 0),
        (1, FLOOR + 1),
        (u64::MAX - FLOOR, FLOOR),
        (u64::MAX - FLOOR + 1, FLOOR),
        (5_000_000_000, 10),
    ] {
        out.push(next(o, fee));
    }
    let mut negative = next(2_000, 0);
    negative.incoming_amount_msat = 1_000;
    out.push(negative);
    let mut to_us = next(250_000, 0);
    to_us.outgoing_requested_chan_id = 0;
    out.push(to_us);
    let mut blinded = next(2_000_000, 0);
    blinded.outgoing_requested_chan_id = u64::MAX;
    blinded.outgoing_requested_node_id = vec![2; 33];
    out.push(blinded);
    out
}

/// The fee floor rule in plain Rust.
fn expected(req: &ForwardHtlcInterceptRequest) -> Step {
    let final_hop =
        req.outgoing_requested_chan_id == 0 && req.outgoing_requested_node_id.is_empty();
    let pays = req
        .incoming_amount_msat
        .checked_sub(req.outgoing_amount_msat)
        .is_some_and(|fee| fee >= FLOOR);
    if final_hop || pays {
        Step::Next
    } else {
        Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure))
    }
}

#[test]
fn a_01_plugin_loads_as_01_and_does_not_export_outcome() {
    let mut p = load(&sandbox(), v01_floor());
    assert_eq!(p.world_version(), "0.1.0");
    assert!(!p.exports_outcome());
    // outcome() is a no-op: not called, costs nothing, the plugin still decides.
    let event = HtlcOutcome {
        key: CircuitKey {
            chan_id: 1,
            htlc_id: 1,
        },
        outgoing: None,
        kind: OutcomeKind::FinalFailed { offchain: true },
        at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let (result, cost) = p.outcome(&to_wit(&event));
    assert_eq!(result, Ok(()));
    assert_eq!(cost.fuel, 0);
    let req = forward(1, 1_000_000, 0);
    assert_eq!(p.decide(&input(req.clone())).0, expected(&req));
}

#[test]
fn a_01_plugin_decides_exactly_like_the_02_fee_floor() {
    let sb = sandbox();
    let mut old = load(&sb, v01_floor());
    let mut new = load(
        &sb,
        plugin_with("fee-floor", &[("base_msat", "1000"), ("ppm", "0")]),
    );
    assert_eq!(
        new.world_version(),
        "0.2.0",
        "rebuild fee-floor with the 0.2.0 SDK"
    );
    for req in requests() {
        let i = input(req.clone());
        let (from_old, _) = old.decide(&i);
        assert_eq!(from_old, expected(&req), "{req:?}");
        assert_eq!(new.decide(&i).0, from_old, "{req:?}");
        // A later attempt (after a hold elsewhere in the chain) changes nothing
        // for a 0.1.0 plugin, which cannot see it.
        assert_eq!(old.decide(&Arc::new(i.with_attempt(3))).0, from_old);
    }
}

#[test]
fn a_01_plugin_refusing_its_config_is_reported_like_any_other() {
    let err = Plugin::load(
        &sandbox(),
        plugin_with("v01-fee-floor", &[("base_msat", "1")]),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, LoadError::InitRefused { .. }), "{err}");
    assert!(
        err.to_string().contains("`base_msat` is not known"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_01_plugin_decides_in_one_chain_with_02_plugins_over_the_mock_lnd() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    let sb = sandbox();
    // 0.2.0 before and after the 0.1.0 plugin; the chain's default is fail, so a
    // resume can only come from the last plugin, reached through the 0.1.0
    // plugin's `next`.
    let plugins = vec![
        load(&sb, plugin_with("max-htlc", &[("max_msat", "5000000000")])),
        load(&sb, v01_floor()),
        load(&sb, plugin_with("fixed-verdict", &[("verdict", "resume")])),
    ];
    let versions: Vec<_> = plugins.iter().map(|p| p.world_version()).collect();
    assert_eq!(
        versions,
        ["0.2.0", "0.1.0", "0.2.0"],
        "rebuild the SDK plugins"
    );
    let chain = Chain::from_plugins(plugins, Verdict::Fail(FailCode::TemporaryChannelFailure));
    let cfg = ChainConfig {
        default_verdict: DefaultVerdict::Fail,
        ..ChainConfig::default()
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let gate = Gate::new(
        chain,
        cfg,
        htlcgate::journal::Journal::in_memory(),
        Some(tx),
    );
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(htlcgate::lnd::stream::run(mock.endpoint(), gate, stop_rx));
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();

    let mut sent = HashMap::new();
    let mut through = 0;
    for req in requests() {
        if req.outgoing_amount_msat <= 5_000_000_000 {
            through += 1;
        }
        let key = req.incoming_circuit_key.unwrap();
        let want = if req.outgoing_amount_msat > 5_000_000_000 {
            ResolveHoldForwardAction::Fail
        } else {
            match expected(&req) {
                Step::Next => ResolveHoldForwardAction::Resume,
                _ => ResolveHoldForwardAction::Fail,
            }
        };
        sent.insert((key.chan_id, key.htlc_id), want);
        mock.send_htlc(req);
    }
    mock.wait_resolved(sent.len(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut answered = HashMap::new();
    for r in mock.resolutions() {
        assert!(
            answered.insert(r.key, r.response).is_none(),
            "{:?} twice",
            r.key
        );
    }
    for (key, want) in &sent {
        let r = &answered[key];
        assert_eq!(r.action(), *want, "key {key:?}");
        if *want == ResolveHoldForwardAction::Fail {
            assert_eq!(r.failure_code(), FailureCode::TemporaryChannelFailure);
        }
    }
    // The 0.1.0 plugin was asked about every HTLC max-htlc let through.
    let mut asked = 0;
    while let Ok(event) = events.try_recv() {
        let names: Vec<&str> = event.decision.trace.iter().map(|t| &*t.plugin).collect();
        if names.first() == Some(&"max-htlc") && names.get(1) == Some(&"v01-fee-floor") {
            asked += 1;
        }
    }
    assert_eq!(asked, through);
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    assert_eq!(mock.connects(), 1, "stream ended: {:?}", mock.stream_ends());
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown finished")
        .unwrap();
}

#[test]
fn a_component_of_neither_world_is_refused_naming_both_versions() {
    // Exports `init` and `decide`, both of the wrong type.
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func (export "init") (param "x" u32) (result u32) (canon lift (core func $i "f")))
            (func (export "decide") (param "x" u32) (result u32) (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let cfg = PluginConfig::with_defaults("odd", "odd.wasm");
    let err = Plugin::from_bytes(&sandbox(), cfg, &bytes)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{text}");
    for part in [
        "htlcgate:plugin@0.2.0",
        "htlcgate:plugin@0.1.0",
        "as 0.2.0: export `init`",
        "as 0.1.0:",
        "`init`",
        "wit/plugin.wit",
        "wit/v0.1/plugin.wit",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

#[test]
fn check_prints_the_world_version_and_the_outcome_export() {
    let path = common::plugins_dir().join("v01-fee-floor.wasm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["check", "--repeat", "0", "--config", "min_fee_msat=1000"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("htlcgate:plugin@0.1.0"), "{stdout}");
    assert!(stdout.contains("outcome: not exported"), "{stdout}");
    assert!(stdout.contains("fail(TemporaryChannelFailure)"), "{stdout}");
}
