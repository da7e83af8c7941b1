//! The floor: a bare wasmtime component call of an empty `decide`, the way a naive
//! host would make it (the whole HTLC record, 1366-byte onion included, lowered
//! into the guest on every call; no fuel, no deadline, no validation).

use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

/// Host bindings of `benches/decide/naive.wit`.
mod naive {
    wasmtime::component::bindgen!({
        path: "benches/decide/naive.wit",
        world: "naive-decider",
    });
}

/// Which engine settings the floor runs under.
#[derive(Clone, Copy, Debug)]
pub enum FloorEngine {
    /// `Config::new()`: what "plain wasmtime" means.
    Plain,
    /// htlcgate's settings (fuel metering and epoch interruption), to tell the
    /// cost of those from the cost of htlcgate's own code.
    Metered,
}

/// One instance of the empty naive `decide` and the record it is called with.
pub struct Floor {
    /// The store (no state).
    store: Store<()>,
    /// The instance.
    bindings: naive::NaiveDecider,
    /// The record passed on every call.
    record: naive::Htlc,
    /// Whether fuel and the deadline are set per call.
    metered: bool,
}

impl Floor {
    /// Instantiates `component` (the empty naive decide) and builds the record of
    /// `req`, with its onion blob or (`with_onion = false`) an empty one.
    pub fn new(
        component: &[u8],
        engine: FloorEngine,
        req: &ForwardHtlcInterceptRequest,
        with_onion: bool,
    ) -> anyhow::Result<Floor> {
        let mut config = Config::new();
        let metered = matches!(engine, FloorEngine::Metered);
        if metered {
            config.consume_fuel(true).epoch_interruption(true);
        }
        let engine = wt(Engine::new(&config), "engine")?;
        let component = wt(Component::new(&engine, component), "compile")?;
        let linker = Linker::new(&engine);
        let mut store = Store::new(&engine, ());
        if metered {
            wt(store.set_fuel(u64::MAX), "fuel")?;
            store.set_epoch_deadline(u64::MAX / 2);
        }
        let bindings = wt(
            naive::NaiveDecider::instantiate(&mut store, &component, &linker),
            "instantiate",
        )?;
        Ok(Floor {
            store,
            bindings,
            record: record(req, with_onion),
            metered,
        })
    }

    /// One call; true when the answer is `next` (it always is).
    pub fn call(&mut self) -> bool {
        if self.metered {
            // What htlcgate does per call, minus everything else.
            self.store.set_fuel(10_000_000).expect("fuel is on");
            self.store.set_epoch_deadline(50);
        }
        let r = self
            .bindings
            .call_decide(&mut self.store, &self.record)
            .expect("the empty decide cannot fail");
        matches!(r, naive::Resolution::Next)
    }
}

/// The naive record of `req`: every field, the onion inside.
fn record(req: &ForwardHtlcInterceptRequest, with_onion: bool) -> naive::Htlc {
    let key = req.incoming_circuit_key.unwrap_or_default();
    let records = |m: &std::collections::HashMap<u64, Vec<u8>>| {
        let mut v: Vec<naive::CustomRecord> = m
            .iter()
            .map(|(k, v)| naive::CustomRecord {
                key: *k,
                value: v.clone(),
            })
            .collect();
        v.sort_unstable_by_key(|r| r.key);
        v
    };
    naive::Htlc {
        incoming_circuit_key: naive::CircuitKey {
            chan_id: key.chan_id,
            htlc_id: key.htlc_id,
        },
        incoming_amount_msat: req.incoming_amount_msat,
        incoming_expiry: req.incoming_expiry,
        payment_hash: req.payment_hash.clone(),
        outgoing_requested_chan_id: req.outgoing_requested_chan_id,
        outgoing_amount_msat: req.outgoing_amount_msat,
        outgoing_expiry: req.outgoing_expiry,
        custom_records: records(&req.custom_records),
        onion_blob: if with_onion {
            req.onion_blob.clone()
        } else {
            Vec::new()
        },
        auto_fail_height: req.auto_fail_height,
        in_wire_custom_records: records(&req.in_wire_custom_records),
        outgoing_requested_node_id: (!req.outgoing_requested_node_id.is_empty())
            .then(|| req.outgoing_requested_node_id.clone()),
    }
}

/// wasmtime's error as anyhow's, naming the step.
fn wt<T>(r: wasmtime::Result<T>, step: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("floor: {step}: {e:#}"))
}
