//! Arbitrary bytes loaded as a plugin: `Plugin::from_bytes` returns a plugin or a
//! `LoadError` naming it, never panics. A plugin that loads is asked about one HTLC
//! twice; each call gives a step (next, a verdict, a hold or a fault), never a
//! panic, and the fault bookkeeping holds: a call never uses more fuel than it was
//! given, the HTLC (whose preimage nobody knows) is never settled, a hold is at
//! least 1 ms, and two faults in a row quarantine the plugin (`max_faults = 2`).
//! A plugin exporting `outcome` is then told one outcome: a fault there never
//! quarantines it.
//!
//! Limits are low (fuel, memory, time) so that a component that loads cannot make
//! one run slow. scripts/fuzz seeds the corpus with real plugin components, so
//! mutations start from bytes that get through the header and the compiler.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use htlcgate::config::{PluginConfig, SandboxConfig};
use htlcgate::lnd::proto::routerrpc::{CircuitKey, ForwardHtlcInterceptRequest};
use htlcgate::verdict::Verdict;
use htlcgate::wasm::bindings::{CircuitKey as WitKey, HtlcOutcome, OutcomeKind};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::input::HtlcInput;
use htlcgate::wasm::plugin::{LoadError, Plugin, Step};
use libfuzzer_sys::fuzz_target;

/// One engine and epoch ticker for the whole run, as in the daemon. The default
/// sandbox settings have no compile cache: nothing is written to disk per input.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(&SandboxConfig::default()).expect("engine"))
}

fn config() -> PluginConfig {
    let mut cfg = PluginConfig::with_defaults("fuzz", "/fuzz/plugin.wasm");
    cfg.fuel = 1_000_000;
    cfg.init_fuel = 10_000_000;
    cfg.timeout = Duration::from_millis(20);
    cfg.init_timeout = Duration::from_millis(200);
    cfg.memory_bytes = 16 << 20;
    cfg.max_faults = 2;
    // Granted, so that a component importing it gets as far as `decide`.
    cfg.grants = vec!["onion-blob".into(), "node".into()];
    cfg
}

/// An outcome of the fuzzed HTLC: it failed downstream.
fn outcome() -> HtlcOutcome {
    HtlcOutcome {
        incoming_circuit_key: WitKey {
            chan_id: 0x000c_3500_0001_0000,
            htlc_id: 7,
        },
        outgoing_circuit_key: Some(WitKey {
            chan_id: 0x000c_3500_0002_0000,
            htlc_id: 3,
        }),
        kind: OutcomeKind::ForwardFailed,
        at_unix_ms: 1_700_000_000_000,
    }
}

/// A forward whose payment hash has no known preimage: no valid settle exists.
fn htlc() -> Arc<HtlcInput> {
    static HTLC: OnceLock<Arc<HtlcInput>> = OnceLock::new();
    HTLC.get_or_init(|| {
        let req = ForwardHtlcInterceptRequest {
            incoming_circuit_key: Some(CircuitKey {
                chan_id: 0x000c_3500_0001_0000,
                htlc_id: 7,
            }),
            incoming_amount_msat: 1_000_000,
            incoming_expiry: 800_144,
            payment_hash: vec![0x11; 32],
            outgoing_requested_chan_id: 0x000c_3500_0002_0000,
            outgoing_amount_msat: 999_000,
            outgoing_expiry: 800_104,
            custom_records: [(65536, vec![1, 2, 3])].into(),
            onion_blob: vec![0; 1366],
            auto_fail_height: 800_134,
            in_wire_custom_records: [(65537, vec![4])].into(),
            outgoing_requested_node_id: Vec::new(),
        };
        Arc::new(HtlcInput::from_request(req).expect("has a key"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let fuel = cfg.fuel;
    let mut plugin = match Plugin::from_bytes(sandbox(), cfg, data) {
        Ok(plugin) => plugin,
        Err(e) => {
            // Bytes in memory: nothing is read, no sha256 is configured.
            assert!(
                !matches!(
                    e,
                    LoadError::Read { .. } | LoadError::IntegrityMismatch { .. }
                ),
                "{e}"
            );
            // Every load error names the plugin and its file.
            let msg = e.to_string();
            assert!(
                msg.contains("plugin `fuzz` (/fuzz/plugin.wasm)"),
                "load error without the plugin: {msg}"
            );
            return;
        }
    };
    assert!(!plugin.is_quarantined(), "quarantined at load");
    let input = htlc();
    // Twice: a fault on the first call restarts the instance for the second.
    let mut steps = Vec::new();
    for _ in 0..2 {
        let (step, cost) = plugin.decide(&input);
        assert!(cost.fuel <= fuel, "{} fuel used of {fuel}", cost.fuel);
        if let Step::Verdict(v) = &step {
            assert!(
                !matches!(v, Verdict::Settle(_)),
                "settled with a preimage nobody knows: {v:?}"
            );
        }
        if let Step::Hold(after) = &step {
            assert!(*after >= Duration::from_millis(1), "hold of {after:?}");
        }
        steps.push(step);
    }
    match (&steps[0], &steps[1]) {
        (Step::Quarantined, _) => panic!("a new plugin was not called"),
        (Step::Fault(_), Step::Fault(_)) => {
            assert!(plugin.is_quarantined(), "two faults in a row: {steps:?}")
        }
        // Quarantined early only when its instance could not be rebuilt.
        (Step::Fault(f), Step::Quarantined) => assert!(f.poisons_instance(), "{f:?}"),
        (_, Step::Quarantined) => panic!("quarantined without a fault: {steps:?}"),
        // One fault: quarantined only if its instance could not be rebuilt.
        (_, Step::Fault(f)) if f.poisons_instance() => {}
        (_, Step::Fault(_) | Step::Next | Step::Verdict(_) | Step::Hold(_)) => {
            assert!(!plugin.is_quarantined(), "quarantined after {steps:?}")
        }
    }
    let quarantined = plugin.is_quarantined();
    let (result, cost) = plugin.outcome(&outcome());
    assert!(
        cost.fuel <= fuel,
        "{} fuel used of {fuel} in outcome",
        cost.fuel
    );
    if !plugin.exports_outcome() || quarantined {
        assert_eq!(result, Ok(()), "outcome called without the export");
    }
    if let Err(f) = &result {
        // Only a trapped instance that cannot be rebuilt quarantines.
        assert!(
            !plugin.is_quarantined() || f.poisons_instance(),
            "quarantined by an outcome fault {f:?}"
        );
    }
});
