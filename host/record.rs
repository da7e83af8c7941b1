//! One HTLC as a JSON object: the `htlc` field of every audit log line and of every
//! line `htlcgate corpus` prints, and what `htlcgate replay` reads back.
//!
//! It holds every field of LND's `ForwardHtlcInterceptRequest` except the onion blob,
//! which is replaced by its size (1366 bytes on every real forward; replay hands a
//! plugin that reads it zeros of that size). Byte fields are lowercase hex; custom
//! records are objects from the record type (as a decimal string, JSON keys being
//! strings) to the value in hex. Amounts and channel ids are JSON numbers (u64: exact
//! in Rust and Python; tools that read numbers as doubles should use the `key` and
//! `scid_*` strings beside them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::circuit::{CircuitKey, Scid};
use crate::lnd::proto::routerrpc::{CircuitKey as ProtoKey, ForwardHtlcInterceptRequest};
use crate::wasm::input::HtlcInput;

/// Bytes written as a lowercase hex string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hex(
    /// The bytes.
    pub Vec<u8>,
);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .map(Hex)
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not hex bytes: {e}")))
    }
}

/// An intercepted HTLC, as written to and read from JSON lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcRecord {
    /// Incoming channel's short channel id (the circuit key's first half).
    pub chan_id: u64,
    /// Index of the HTLC in the incoming channel (the circuit key's second half).
    pub htlc_id: u64,
    /// Incoming amount in msat.
    pub incoming_amount_msat: u64,
    /// Incoming CLTV expiry height.
    pub incoming_expiry: u32,
    /// The channel LND was asked to forward to (0: a payment to this node).
    pub outgoing_requested_chan_id: u64,
    /// Outgoing amount in msat.
    pub outgoing_amount_msat: u64,
    /// Outgoing CLTV expiry height.
    pub outgoing_expiry: u32,
    /// Height at which LND fails the HTLC back by itself.
    pub auto_fail_height: i32,
    /// Payment hash, hex.
    pub payment_hash: Hex,
    /// Size of the onion blob in bytes (the blob itself is not kept).
    pub onion_blob_size: u32,
    /// Custom records from the onion: type -> value (hex).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_records: BTreeMap<u64, Hex>,
    /// Custom records from the incoming wire message: type -> value (hex).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_wire_custom_records: BTreeMap<u64, Hex>,
    /// Node id the forward is addressed to (blinded routes), hex; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_requested_node_id: Option<Hex>,
}

/// Largest onion blob a replayed HTLC gets (LND's is always 1366 bytes).
pub const MAX_ONION_BLOB: u32 = 65_536;

impl HtlcRecord {
    /// The record of an HTLC as the chain saw it.
    pub fn from_input(input: &HtlcInput) -> HtlcRecord {
        let r = &input.record;
        let map = |recs: &[crate::wasm::bindings::CustomRecord]| {
            recs.iter()
                .map(|c| (c.key, Hex(c.value.clone())))
                .collect::<BTreeMap<_, _>>()
        };
        HtlcRecord {
            chan_id: input.key.chan_id,
            htlc_id: input.key.htlc_id,
            incoming_amount_msat: r.incoming_amount_msat,
            incoming_expiry: r.incoming_expiry,
            outgoing_requested_chan_id: r.outgoing_requested_chan_id,
            outgoing_amount_msat: r.outgoing_amount_msat,
            outgoing_expiry: r.outgoing_expiry,
            auto_fail_height: r.auto_fail_height,
            payment_hash: Hex(r.payment_hash.clone()),
            onion_blob_size: r.onion_blob_size,
            custom_records: map(&r.custom_records),
            in_wire_custom_records: map(&r.in_wire_custom_records),
            outgoing_requested_node_id: r.outgoing_requested_node_id.clone().map(Hex),
        }
    }

    /// The record of a request from LND.
    pub fn from_request(req: &ForwardHtlcInterceptRequest) -> HtlcRecord {
        let key = req.incoming_circuit_key.unwrap_or_default();
        let map = |m: &std::collections::HashMap<u64, Vec<u8>>| {
            m.iter()
                .map(|(k, v)| (*k, Hex(v.clone())))
                .collect::<BTreeMap<_, _>>()
        };
        HtlcRecord {
            chan_id: key.chan_id,
            htlc_id: key.htlc_id,
            incoming_amount_msat: req.incoming_amount_msat,
            incoming_expiry: req.incoming_expiry,
            outgoing_requested_chan_id: req.outgoing_requested_chan_id,
            outgoing_amount_msat: req.outgoing_amount_msat,
            outgoing_expiry: req.outgoing_expiry,
            auto_fail_height: req.auto_fail_height,
            payment_hash: Hex(req.payment_hash.clone()),
            onion_blob_size: u32::try_from(req.onion_blob.len()).unwrap_or(u32::MAX),
            custom_records: map(&req.custom_records),
            in_wire_custom_records: map(&req.in_wire_custom_records),
            outgoing_requested_node_id: if req.outgoing_requested_node_id.is_empty() {
                None
            } else {
                Some(Hex(req.outgoing_requested_node_id.clone()))
            },
        }
    }

    /// The request LND would have sent; the onion blob is `onion_blob_size` zero
    /// bytes (at most [`MAX_ONION_BLOB`]).
    pub fn to_request(&self) -> ForwardHtlcInterceptRequest {
        let map = |m: &BTreeMap<u64, Hex>| m.iter().map(|(k, v)| (*k, v.0.clone())).collect();
        ForwardHtlcInterceptRequest {
            incoming_circuit_key: Some(ProtoKey {
                chan_id: self.chan_id,
                htlc_id: self.htlc_id,
            }),
            incoming_amount_msat: self.incoming_amount_msat,
            incoming_expiry: self.incoming_expiry,
            payment_hash: self.payment_hash.0.clone(),
            outgoing_requested_chan_id: self.outgoing_requested_chan_id,
            outgoing_amount_msat: self.outgoing_amount_msat,
            outgoing_expiry: self.outgoing_expiry,
            custom_records: map(&self.custom_records),
            onion_blob: vec![0; self.onion_blob_size.min(MAX_ONION_BLOB) as usize],
            auto_fail_height: self.auto_fail_height,
            in_wire_custom_records: map(&self.in_wire_custom_records),
            outgoing_requested_node_id: self
                .outgoing_requested_node_id
                .as_ref()
                .map(|h| h.0.clone())
                .unwrap_or_default(),
        }
    }

    /// The circuit key (`chan:htlc`).
    pub fn key(&self) -> CircuitKey {
        CircuitKey {
            chan_id: self.chan_id,
            htlc_id: self.htlc_id,
        }
    }

    /// The incoming channel as `BLOCKxTXxOUT`.
    pub fn scid_in(&self) -> Scid {
        Scid(self.chan_id)
    }

    /// The requested outgoing channel as `BLOCKxTXxOUT` (`0x0x0`: to this node).
    pub fn scid_out(&self) -> Scid {
        Scid(self.outgoing_requested_chan_id)
    }

    /// The fee this node earns (incoming minus outgoing), negative if the HTLC pays
    /// out more than it brings in.
    pub fn fee_msat(&self) -> i128 {
        i128::from(self.incoming_amount_msat) - i128::from(self.outgoing_amount_msat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_lnd::sample_request;

    fn full_request() -> ForwardHtlcInterceptRequest {
        let mut req = sample_request(812_345 << 40, 9);
        req.custom_records = [(5_482_373_484, vec![1, 2, 3]), (65_537, vec![])].into();
        req.in_wire_custom_records = [(65_555, vec![0xab])].into();
        req.outgoing_requested_node_id = vec![2; 33];
        req
    }

    #[test]
    fn a_request_survives_json_except_the_onion_contents() {
        let req = full_request();
        let rec = HtlcRecord::from_request(&req);
        let json = serde_json::to_string(&rec).unwrap();
        let back: HtlcRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        let again = back.to_request();
        assert_eq!(again.onion_blob, vec![0; 1366]);
        assert_eq!(
            ForwardHtlcInterceptRequest {
                onion_blob: req.onion_blob.clone(),
                ..again
            },
            req
        );
    }

    #[test]
    fn the_input_and_the_request_give_the_same_record() {
        let req = full_request();
        let input = HtlcInput::from_request(req.clone()).unwrap();
        assert_eq!(
            HtlcRecord::from_input(&input),
            HtlcRecord::from_request(&req)
        );
    }

    #[test]
    fn bytes_are_hex_and_record_types_are_object_keys() {
        let rec = HtlcRecord::from_request(&full_request());
        let v: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["custom_records"]["5482373484"], "010203");
        assert_eq!(v["custom_records"]["65537"], "");
        assert_eq!(v["in_wire_custom_records"]["65555"], "ab");
        assert_eq!(v["payment_hash"].as_str().unwrap().len(), 64);
        assert!(v.get("onion_blob").is_none());
        assert_eq!(v["onion_blob_size"], 1366);
    }

    #[test]
    fn empty_optional_fields_are_left_out_and_read_back_as_empty() {
        let rec = HtlcRecord::from_request(&sample_request(1, 2));
        let json = serde_json::to_string(&rec).unwrap();
        assert!(!json.contains("custom_records"), "{json}");
        assert!(!json.contains("node_id"), "{json}");
        let back: HtlcRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn bad_hex_is_named() {
        let rec = HtlcRecord::from_request(&sample_request(1, 2));
        let mut v = serde_json::to_value(&rec).unwrap();
        v["payment_hash"] = "zz".into();
        let err = serde_json::from_value::<HtlcRecord>(v).unwrap_err();
        assert!(err.to_string().contains("`zz` is not hex"), "{err}");
    }
}
