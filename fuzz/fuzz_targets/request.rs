//! Arbitrary bytes as LND's `ForwardHtlcInterceptRequest`, decoded with prost as the
//! stream's codec does, then converted by `HtlcInput::from_request` into the WIT
//! `htlc` record every plugin is handed (world 0.2.0, and 0.1.0's copy for older
//! plugins).
//!
//! No panic; the only error is a missing circuit key, and every field must be carried
//! over unchanged. Both structs are destructured without `..`, so a field added to
//! the proto or to the WIT record does not compile here until it is checked.
#![no_main]

use std::collections::HashMap;

use htlcgate::circuit::Scid;
use htlcgate::lnd::proto::routerrpc::{CircuitKey as ProtoKey, ForwardHtlcInterceptRequest};
use htlcgate::wasm::bindings::{CircuitKey as WitKey, CustomRecord, Htlc};
use htlcgate::wasm::input::{HtlcInput, InputError};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The records of `got` are exactly those of `want`, sorted by key.
fn same_records(got: &[CustomRecord], want: &HashMap<u64, Vec<u8>>) {
    assert_eq!(got.len(), want.len(), "records lost or duplicated");
    assert!(
        got.windows(2).all(|w| w[0].key < w[1].key),
        "records not sorted by key"
    );
    for r in got {
        assert_eq!(Some(&r.value), want.get(&r.key), "record {} changed", r.key);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ForwardHtlcInterceptRequest::decode(data) else {
        // A decode error ends the stream call (tonic returns it as a status) and
        // htlcgate reconnects: an error, not a panic.
        return;
    };
    let ForwardHtlcInterceptRequest {
        incoming_circuit_key,
        payment_hash,
        outgoing_amount_msat,
        outgoing_expiry,
        incoming_amount_msat,
        incoming_expiry,
        outgoing_requested_chan_id,
        custom_records,
        onion_blob,
        auto_fail_height,
        in_wire_custom_records,
        outgoing_requested_node_id,
    } = req.clone();
    let input = match HtlcInput::from_request(req) {
        Ok(input) => input,
        Err(InputError::MissingKey) => {
            assert!(incoming_circuit_key.is_none(), "refused with a key");
            return;
        }
    };
    let ProtoKey { chan_id, htlc_id } = incoming_circuit_key.expect("converted without a key");
    assert_eq!((input.key.chan_id, input.key.htlc_id), (chan_id, htlc_id));
    // The forms every log line uses.
    assert_eq!(input.key.to_string(), format!("{chan_id}:{htlc_id}"));
    let scid = Scid(chan_id);
    assert_eq!(
        (scid.block() << 40) | (scid.tx_index() << 16) | scid.output(),
        chan_id,
        "{scid} does not add up to {chan_id}"
    );
    assert_eq!(
        scid.to_string(),
        format!(
            "{}x{}x{}",
            chan_id >> 40,
            (chan_id >> 16) & 0xff_ffff,
            chan_id & 0xffff
        )
    );

    let Htlc {
        incoming_circuit_key:
            WitKey {
                chan_id: wit_chan,
                htlc_id: wit_htlc,
            },
        incoming_amount_msat: r_incoming_amount_msat,
        incoming_expiry: r_incoming_expiry,
        payment_hash: r_payment_hash,
        outgoing_requested_chan_id: r_outgoing_requested_chan_id,
        outgoing_amount_msat: r_outgoing_amount_msat,
        outgoing_expiry: r_outgoing_expiry,
        custom_records: r_custom_records,
        onion_blob_size,
        auto_fail_height: r_auto_fail_height,
        in_wire_custom_records: r_in_wire_custom_records,
        outgoing_requested_node_id: r_outgoing_requested_node_id,
        attempt,
    } = &input.record;
    // The first ask; a re-ask after a hold is a copy with only the attempt changed.
    assert_eq!(*attempt, 1);
    let again = input.with_attempt(2);
    assert_eq!(again.record.attempt, 2);
    let mut back = again.record.clone();
    back.attempt = 1;
    assert_eq!(
        back, input.record,
        "with_attempt changed more than the attempt"
    );
    // 0.1.0 plugins see the same HTLC without `attempt`.
    let old = input.record_v01();
    assert_eq!(
        (
            old.incoming_circuit_key.chan_id,
            old.incoming_circuit_key.htlc_id
        ),
        (chan_id, htlc_id)
    );
    assert_eq!(
        (old.incoming_amount_msat, old.outgoing_amount_msat),
        (incoming_amount_msat, outgoing_amount_msat)
    );
    assert_eq!(
        (
            old.incoming_expiry,
            old.outgoing_expiry,
            old.auto_fail_height
        ),
        (incoming_expiry, outgoing_expiry, auto_fail_height)
    );
    assert_eq!(old.payment_hash, payment_hash);
    assert_eq!(old.outgoing_requested_chan_id, outgoing_requested_chan_id);
    assert_eq!(old.onion_blob_size, *onion_blob_size);
    assert_eq!(
        &old.outgoing_requested_node_id,
        r_outgoing_requested_node_id
    );
    let old_records = |rs: &[htlcgate::wasm::v01::bindings::CustomRecord]| {
        rs.iter()
            .map(|r| (r.key, r.value.clone()))
            .collect::<Vec<_>>()
    };
    let new_records = |rs: &[CustomRecord]| {
        rs.iter()
            .map(|r| (r.key, r.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        old_records(&old.custom_records),
        new_records(r_custom_records)
    );
    assert_eq!(
        old_records(&old.in_wire_custom_records),
        new_records(r_in_wire_custom_records)
    );
    assert_eq!((*wit_chan, *wit_htlc), (chan_id, htlc_id));
    assert_eq!(*r_incoming_amount_msat, incoming_amount_msat);
    assert_eq!(*r_incoming_expiry, incoming_expiry);
    assert_eq!(*r_payment_hash, payment_hash);
    assert_eq!(*r_outgoing_requested_chan_id, outgoing_requested_chan_id);
    assert_eq!(*r_outgoing_amount_msat, outgoing_amount_msat);
    assert_eq!(*r_outgoing_expiry, outgoing_expiry);
    same_records(r_custom_records, &custom_records);
    assert_eq!(*r_auto_fail_height, auto_fail_height);
    same_records(r_in_wire_custom_records, &in_wire_custom_records);
    // The blob itself stays in the host (the `onion-blob` import); the record has
    // its size.
    assert_eq!(*onion_blob_size as usize, onion_blob.len());
    assert_eq!(input.onion_blob, onion_blob);
    match r_outgoing_requested_node_id {
        None => assert!(outgoing_requested_node_id.is_empty()),
        Some(id) => {
            assert!(!id.is_empty(), "an empty node id is `none`");
            assert_eq!(*id, outgoing_requested_node_id);
        }
    }
});
