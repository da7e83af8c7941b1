//! One intercepted HTLC, converted once into the WIT record that every plugin of the
//! chain is handed (by reference: no copy per plugin).
//!
//! The record is 0.2.0's. Plugins built for 0.1.0 get the 0.1.0 record, built on
//! the first call of such a plugin and then shared the same way, so a chain of
//! 0.2.0 plugins never pays for it.

use std::sync::OnceLock;

use crate::circuit::CircuitKey;
use crate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use crate::wasm::bindings::{CircuitKey as WitKey, CustomRecord, Htlc};
use crate::wasm::v01;

/// An HTLC as the chain sees it.
#[derive(Clone, Debug)]
pub struct HtlcInput {
    /// Its circuit key.
    pub key: CircuitKey,
    /// The record passed to `decide` (world 0.2.0).
    pub record: Htlc,
    /// The onion blob, handed out only through the `onion-blob` import.
    pub onion_blob: Vec<u8>,
    /// The time the plugins' clock reads while deciding this HTLC, in ms since
    /// the Unix epoch: `htlcgate replay` sets the time its line recorded (so a
    /// replay decides as the daemon did then); `None`, as for every HTLC from
    /// LND, reads the real clock.
    pub clock_ms: Option<u64>,
    /// `record` as world 0.1.0's `htlc`, built on first use by a 0.1.0 plugin.
    /// Never changed afterwards: `record` must not be changed once it is built
    /// (use [`HtlcInput::with_attempt`], whose change 0.1.0 does not see).
    v01: OnceLock<v01::bindings::Htlc>,
}

/// Why a request from LND cannot be decided.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// LND always sets the key; without it the HTLC cannot be answered at all.
    #[error("request without incoming_circuit_key (cannot be answered)")]
    MissingKey,
}

fn records(map: std::collections::HashMap<u64, Vec<u8>>) -> Vec<CustomRecord> {
    let mut v: Vec<CustomRecord> = map
        .into_iter()
        .map(|(key, value)| CustomRecord { key, value })
        .collect();
    // Sorted, so that every plugin (and every replay) sees the same order.
    v.sort_unstable_by_key(|r| r.key);
    v
}

impl HtlcInput {
    /// Converts LND's request. Takes it by value: the byte fields are moved, not
    /// copied.
    pub fn from_request(req: ForwardHtlcInterceptRequest) -> Result<HtlcInput, InputError> {
        let key = req.incoming_circuit_key.ok_or(InputError::MissingKey)?;
        let key = CircuitKey {
            chan_id: key.chan_id,
            htlc_id: key.htlc_id,
        };
        let record = Htlc {
            incoming_circuit_key: WitKey {
                chan_id: key.chan_id,
                htlc_id: key.htlc_id,
            },
            incoming_amount_msat: req.incoming_amount_msat,
            incoming_expiry: req.incoming_expiry,
            payment_hash: req.payment_hash,
            outgoing_requested_chan_id: req.outgoing_requested_chan_id,
            outgoing_amount_msat: req.outgoing_amount_msat,
            outgoing_expiry: req.outgoing_expiry,
            custom_records: records(req.custom_records),
            onion_blob_size: u32::try_from(req.onion_blob.len()).unwrap_or(u32::MAX),
            auto_fail_height: req.auto_fail_height,
            in_wire_custom_records: records(req.in_wire_custom_records),
            outgoing_requested_node_id: if req.outgoing_requested_node_id.is_empty() {
                None
            } else {
                Some(req.outgoing_requested_node_id)
            },
            attempt: 1,
        };
        Ok(HtlcInput {
            key,
            record,
            onion_blob: req.onion_blob,
            clock_ms: None,
            v01: OnceLock::new(),
        })
    }

    /// The same HTLC for the chain's `attempt`-th ask about it (1 the first time,
    /// n + 1 after n holds): a copy with `record.attempt` set.
    pub fn with_attempt(&self, attempt: u32) -> HtlcInput {
        let mut input = self.clone();
        input.record.attempt = attempt;
        input
    }

    /// The same HTLC with the plugins' clock reading `clock_ms` while it is
    /// decided (see [`HtlcInput::clock_ms`]).
    pub fn at(mut self, clock_ms: Option<u64>) -> HtlcInput {
        self.clock_ms = clock_ms;
        self
    }

    /// The record as world 0.1.0's `htlc` (without `attempt`), for 0.1.0 plugins:
    /// converted on the first call, then shared.
    pub fn record_v01(&self) -> &v01::bindings::Htlc {
        self.v01.get_or_init(|| v01::htlc(&self.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::proto::routerrpc::CircuitKey as ProtoKey;
    use crate::mock_lnd::sample_request;

    #[test]
    fn request_without_key_is_refused() {
        let err = HtlcInput::from_request(ForwardHtlcInterceptRequest::default()).unwrap_err();
        assert_eq!(err, InputError::MissingKey);
    }

    #[test]
    fn every_field_is_carried_over() {
        let req = ForwardHtlcInterceptRequest {
            incoming_circuit_key: Some(ProtoKey {
                chan_id: 5,
                htlc_id: 6,
            }),
            incoming_amount_msat: 1001,
            incoming_expiry: 500,
            payment_hash: vec![9; 32],
            outgoing_requested_chan_id: 7,
            outgoing_amount_msat: 1000,
            outgoing_expiry: 460,
            custom_records: [(70000, vec![1]), (65536, vec![2])].into(),
            onion_blob: vec![0; 1366],
            auto_fail_height: 480,
            in_wire_custom_records: [(65537, vec![3])].into(),
            outgoing_requested_node_id: vec![2; 33],
        };
        let i = HtlcInput::from_request(req).unwrap();
        assert_eq!(i.key.to_string(), "5:6");
        assert_eq!(i.record.onion_blob_size, 1366);
        assert_eq!(i.onion_blob.len(), 1366);
        assert_eq!(i.record.custom_records[0].key, 65536);
        assert_eq!(i.record.in_wire_custom_records[0].value, vec![3]);
        assert_eq!(i.record.outgoing_requested_node_id, Some(vec![2; 33]));
        assert_eq!(i.record.auto_fail_height, 480);
        assert_eq!(
            (i.record.incoming_expiry, i.record.outgoing_expiry),
            (500, 460)
        );
        assert_eq!(i.record.attempt, 1);
    }

    #[test]
    fn with_attempt_changes_only_the_attempt() {
        let i = HtlcInput::from_request(sample_request(3, 4)).unwrap();
        let again = i.with_attempt(3);
        assert_eq!(again.record.attempt, 3);
        assert_eq!(i.record.attempt, 1);
        let mut back = again.record.clone();
        back.attempt = 1;
        assert_eq!(format!("{back:?}"), format!("{:?}", i.record));
        assert_eq!(again.onion_blob, i.onion_blob);
        assert_eq!(again.key, i.key);
    }

    #[test]
    fn the_01_record_is_built_once_and_matches() {
        let i = HtlcInput::from_request(sample_request(3, 4)).unwrap();
        let first: *const _ = i.record_v01();
        assert!(std::ptr::eq(first, i.record_v01()));
        let r = i.record_v01();
        assert_eq!(r.incoming_amount_msat, i.record.incoming_amount_msat);
        assert_eq!(r.payment_hash, i.record.payment_hash);
        // A copy for a later attempt keeps the same 0.1.0 record.
        let again = i.with_attempt(2);
        assert_eq!(
            format!("{:?}", again.record_v01()),
            format!("{:?}", i.record_v01())
        );
    }
}
