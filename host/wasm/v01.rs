//! The frozen `htlcgate:plugin@0.1.0` world (`wit/v0.1/plugin.wit`): its bindings,
//! and the thin conversions that let 0.1.0 plugins run on the 0.2.0 host.
//!
//! Everything is implemented once, for 0.2.0: the 0.1.0 imports delegate to
//! [`PluginState`]'s 0.2.0 implementation, the 0.1.0 `htlc` record is 0.2.0's
//! without `attempt` (built once per HTLC, see [`HtlcInput::record_v01`]), and a
//! 0.1.0 resolution is a 0.2.0 one without `hold`.
//!
//! [`HtlcInput::record_v01`]: crate::wasm::input::HtlcInput::record_v01

use crate::wasm::bindings as v02;
use crate::wasm::imports::PluginState;

/// Host bindings generated from `wit/v0.1/plugin.wit`.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/v0.1",
        world: "decider",
    });
}

use bindings as v01;

fn records(records: &[v02::CustomRecord]) -> Vec<v01::CustomRecord> {
    records
        .iter()
        .map(|r| v01::CustomRecord {
            key: r.key,
            value: r.value.clone(),
        })
        .collect()
}

/// The 0.1.0 `htlc` record for a 0.2.0 one (`attempt` is left out).
pub fn htlc(h: &v02::Htlc) -> v01::Htlc {
    v01::Htlc {
        incoming_circuit_key: v01::CircuitKey {
            chan_id: h.incoming_circuit_key.chan_id,
            htlc_id: h.incoming_circuit_key.htlc_id,
        },
        incoming_amount_msat: h.incoming_amount_msat,
        incoming_expiry: h.incoming_expiry,
        payment_hash: h.payment_hash.clone(),
        outgoing_requested_chan_id: h.outgoing_requested_chan_id,
        outgoing_amount_msat: h.outgoing_amount_msat,
        outgoing_expiry: h.outgoing_expiry,
        custom_records: records(&h.custom_records),
        onion_blob_size: h.onion_blob_size,
        auto_fail_height: h.auto_fail_height,
        in_wire_custom_records: records(&h.in_wire_custom_records),
        outgoing_requested_node_id: h.outgoing_requested_node_id.clone(),
    }
}

/// A 0.1.0 resolution as 0.2.0's (the same cases, less `hold`); moves, no copies.
pub fn resolution(r: v01::Resolution) -> v02::Resolution {
    match r {
        v01::Resolution::Next => v02::Resolution::Next,
        v01::Resolution::Resume => v02::Resolution::Resume,
        v01::Resolution::Fail(code) => v02::Resolution::Fail(match code {
            v01::FailureCode::TemporaryChannelFailure => v02::FailureCode::TemporaryChannelFailure,
            v01::FailureCode::InvalidOnionHmac => v02::FailureCode::InvalidOnionHmac,
            v01::FailureCode::InvalidOnionKey => v02::FailureCode::InvalidOnionKey,
            v01::FailureCode::InvalidOnionVersion => v02::FailureCode::InvalidOnionVersion,
        }),
        v01::Resolution::Settle(preimage) => v02::Resolution::Settle(preimage),
        v01::Resolution::ResumeModified(m) => v02::Resolution::ResumeModified(v02::Modification {
            in_amount_msat: m.in_amount_msat,
            out_amount_msat: m.out_amount_msat,
            out_wire_custom_records: m
                .out_wire_custom_records
                .into_iter()
                .map(|r| v02::CustomRecord {
                    key: r.key,
                    value: r.value,
                })
                .collect(),
        }),
    }
}

fn level(l: v01::LogLevel) -> v02::LogLevel {
    match l {
        v01::LogLevel::Debug => v02::LogLevel::Debug,
        v01::LogLevel::Info => v02::LogLevel::Info,
        v01::LogLevel::Warn => v02::LogLevel::Warn,
        v01::LogLevel::Error => v02::LogLevel::Error,
    }
}

fn kv_error(e: v02::KvError) -> v01::KvError {
    match e {
        v02::KvError::KeyTooLong(max) => v01::KvError::KeyTooLong(max),
        v02::KvError::ValueTooLong(max) => v01::KvError::ValueTooLong(max),
        v02::KvError::TooManyKeys(max) => v01::KvError::TooManyKeys(max),
        v02::KvError::Storage(message) => v01::KvError::Storage(message),
    }
}

/// The 0.1.0 imports: each delegates to the 0.2.0 implementation.
impl v01::DeciderImports for PluginState {
    fn log(&mut self, l: v01::LogLevel, message: String) {
        v02::DeciderImports::log(self, level(l), message)
    }

    fn now_unix_ms(&mut self) -> u64 {
        v02::DeciderImports::now_unix_ms(self)
    }

    fn onion_blob(&mut self) -> Vec<u8> {
        v02::DeciderImports::onion_blob(self)
    }

    fn kv_get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, v01::KvError> {
        v02::DeciderImports::kv_get(self, key).map_err(kv_error)
    }

    fn kv_set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), v01::KvError> {
        v02::DeciderImports::kv_set(self, key, value).map_err(kv_error)
    }

    fn kv_delete(&mut self, key: Vec<u8>) -> Result<bool, v01::KvError> {
        v02::DeciderImports::kv_delete(self, key).map_err(kv_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_01_record_carries_every_field_but_attempt() {
        let h = v02::Htlc {
            incoming_circuit_key: v02::CircuitKey {
                chan_id: 5,
                htlc_id: 6,
            },
            incoming_amount_msat: 1001,
            incoming_expiry: 500,
            payment_hash: vec![9; 32],
            outgoing_requested_chan_id: 7,
            outgoing_amount_msat: 1000,
            outgoing_expiry: 460,
            custom_records: vec![v02::CustomRecord {
                key: 65536,
                value: vec![1],
            }],
            onion_blob_size: 1366,
            auto_fail_height: 480,
            in_wire_custom_records: vec![v02::CustomRecord {
                key: 65537,
                value: vec![3],
            }],
            outgoing_requested_node_id: Some(vec![2; 33]),
            attempt: 4,
        };
        let o = htlc(&h);
        assert_eq!(
            (
                o.incoming_circuit_key.chan_id,
                o.incoming_circuit_key.htlc_id
            ),
            (5, 6)
        );
        assert_eq!(
            (o.incoming_amount_msat, o.outgoing_amount_msat),
            (1001, 1000)
        );
        assert_eq!((o.incoming_expiry, o.outgoing_expiry), (500, 460));
        assert_eq!(o.payment_hash, vec![9; 32]);
        assert_eq!(o.outgoing_requested_chan_id, 7);
        assert_eq!(
            (o.custom_records[0].key, &o.custom_records[0].value),
            (65536, &vec![1])
        );
        assert_eq!(o.in_wire_custom_records[0].key, 65537);
        assert_eq!(o.in_wire_custom_records[0].value, vec![3]);
        assert_eq!(o.onion_blob_size, 1366);
        assert_eq!(o.auto_fail_height, 480);
        assert_eq!(o.outgoing_requested_node_id, Some(vec![2; 33]));
    }

    #[test]
    fn every_01_resolution_maps_to_the_same_02_case() {
        assert!(matches!(
            resolution(v01::Resolution::Next),
            v02::Resolution::Next
        ));
        assert!(matches!(
            resolution(v01::Resolution::Resume),
            v02::Resolution::Resume
        ));
        assert!(matches!(
            resolution(v01::Resolution::Fail(v01::FailureCode::InvalidOnionKey)),
            v02::Resolution::Fail(v02::FailureCode::InvalidOnionKey)
        ));
        match resolution(v01::Resolution::Settle(vec![7; 32])) {
            v02::Resolution::Settle(p) => assert_eq!(p, vec![7; 32]),
            other => panic!("{other:?}"),
        }
        let m = v01::Modification {
            in_amount_msat: Some(5),
            out_amount_msat: None,
            out_wire_custom_records: vec![v01::CustomRecord {
                key: 65540,
                value: vec![1, 2],
            }],
        };
        match resolution(v01::Resolution::ResumeModified(m)) {
            v02::Resolution::ResumeModified(m) => {
                assert_eq!((m.in_amount_msat, m.out_amount_msat), (Some(5), None));
                assert_eq!(m.out_wire_custom_records.len(), 1);
                assert_eq!(m.out_wire_custom_records[0].key, 65540);
                assert_eq!(m.out_wire_custom_records[0].value, vec![1, 2]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kv_errors_keep_their_case_and_limit() {
        assert!(matches!(
            kv_error(v02::KvError::TooManyKeys(3)),
            v01::KvError::TooManyKeys(3)
        ));
        assert!(matches!(
            kv_error(v02::KvError::Storage("disk".into())),
            v01::KvError::Storage(m) if m == "disk"
        ));
    }
}
