//! The answer htlcgate sends LND for one HTLC, as a type that cannot hold an answer LND
//! would reject.
//!
//! A [`Verdict`] is built only from validated parts: a settle carries a 32-byte
//! preimage already checked against the payment hash, a fail carries one of the four
//! failure codes LND accepts, a modification carries non-zero amounts and distinct
//! custom-range records that fit in one Lightning message. So
//! [`Verdict::to_response`] is infallible, and every response htlcgate sends passes
//! every rule in LND's `forward_interceptor.go` (see `../shared/lnd-interceptor.md`):
//! a rejected response would end the whole stream.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::circuit::CircuitKey;
use crate::lnd::proto::lnrpc::failure::FailureCode as LndFailureCode;
use crate::lnd::proto::routerrpc::{
    CircuitKey as ProtoCircuitKey, ForwardHtlcInterceptResponse, ResolveHoldForwardAction,
};
use crate::wasm::bindings;

/// Smallest TLV type LND accepts in `out_wire_custom_records` (the custom range).
pub const MIN_CUSTOM_RECORD_TYPE: u64 = 65536;

/// Most bytes the outgoing wire records may take, TLV-encoded. They travel in the
/// peer's `update_add_htlc`, and a Lightning message is at most 65535 bytes (BOLT
/// 1), of which the type and the fixed fields take 1452 (2 + 32 + 8 + 8 + 32 + 4 +
/// a 1366-byte onion): records beyond this can never be forwarded. The cap also
/// keeps every response far below gRPC's receive limits: LND's 200 MiB
/// (`lnrpc.MaxGrpcMsgSize`), over which LND ends the whole stream, and tonic's
/// default 4 MiB.
pub const MAX_WIRE_RECORDS_BYTES: usize = 65535 - 1452;

/// The failure codes LND accepts from an interceptor (any other ends the stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailCode {
    /// TEMPORARY_CHANNEL_FAILURE: the usual "not now".
    TemporaryChannelFailure,
    /// INVALID_ONION_HMAC.
    InvalidOnionHmac,
    /// INVALID_ONION_KEY.
    InvalidOnionKey,
    /// INVALID_ONION_VERSION.
    InvalidOnionVersion,
}

impl FailCode {
    fn to_lnd(self) -> LndFailureCode {
        match self {
            FailCode::TemporaryChannelFailure => LndFailureCode::TemporaryChannelFailure,
            FailCode::InvalidOnionHmac => LndFailureCode::InvalidOnionHmac,
            FailCode::InvalidOnionKey => LndFailureCode::InvalidOnionKey,
            FailCode::InvalidOnionVersion => LndFailureCode::InvalidOnionVersion,
        }
    }
}

/// A forward with changes (LND's RESUME_MODIFIED), validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Modification {
    /// New incoming wire amount in msat; `None` keeps it. Never `Some(0)`.
    pub in_amount_msat: Option<u64>,
    /// New outgoing amount in msat; `None` keeps it. Never `Some(0)`.
    pub out_amount_msat: Option<u64>,
    /// Records to merge into the outgoing wire message; every key >= 65536, at
    /// most [`MAX_WIRE_RECORDS_BYTES`] TLV-encoded.
    pub out_wire_custom_records: BTreeMap<u64, Vec<u8>>,
}

/// A final answer for one HTLC. Only valid answers can be built.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forward the HTLC unchanged.
    Resume,
    /// Fail the HTLC back with this code.
    Fail(FailCode),
    /// Settle with this preimage; sha256(preimage) == payment hash was checked.
    Settle([u8; 32]),
    /// Forward with changes.
    ResumeModified(Modification),
}

/// Why a plugin's resolution could not be sent to LND. Each is a plugin fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidVerdict {
    /// A settle whose preimage is not 32 bytes (LND would end the stream).
    #[error("settle with a {0}-byte preimage (a preimage is exactly 32 bytes)")]
    PreimageLength(usize),
    /// A settle whose preimage does not hash to the payment hash (would lose the
    /// forwarded amount).
    #[error("settle with a preimage whose sha256 is not the payment hash (the forwarded amount would be lost)")]
    PreimageMismatch,
    /// A custom record below the custom range (LND would end the stream).
    #[error("resume-modified with custom record type {0} (custom records must be >= 65536)")]
    RecordKeyOutOfRange(u64),
    /// The same custom record type twice.
    #[error("resume-modified with custom record type {0} twice")]
    DuplicateRecordKey(u64),
    /// Wire records too large to ever fit in the outgoing `update_add_htlc` (and,
    /// at hundreds of MiB, over LND's gRPC receive limit, which ends the stream).
    #[error("resume-modified with {0} bytes of wire custom records (at most {max}: they must fit in the peer's update_add_htlc message)", max = MAX_WIRE_RECORDS_BYTES)]
    WireRecordsTooLarge(usize),
    /// An amount of zero given explicitly (zero means "unchanged" to LND, which is
    /// not what the plugin said).
    #[error("resume-modified with a zero {0} (leave it out to keep the amount)")]
    ZeroAmount(&'static str),
    /// `hold` where a verdict was needed. A hold is answered by keeping the HTLC
    /// held and asking again (`wasm::plugin` turns it into `Step::Hold` before
    /// validating), never by an answer to LND.
    #[error("hold({0} ms) is not a verdict: it keeps the HTLC held and is never sent to LND")]
    NotAVerdict(u32),
}

/// Turns a plugin's resolution into a verdict: `Ok(None)` is "next" (no opinion).
///
/// This is the one place where plugin output becomes something LND will see, so it
/// checks every rule LND enforces plus the one it does not (the preimage hash).
/// `hold` is not a verdict ([`InvalidVerdict::NotAVerdict`]): callers handle it
/// before.
pub fn validate(
    resolution: &bindings::Resolution,
    payment_hash: &[u8],
) -> Result<Option<Verdict>, InvalidVerdict> {
    use bindings::Resolution as R;
    Ok(Some(match resolution {
        R::Next => return Ok(None),
        R::Hold(ms) => return Err(InvalidVerdict::NotAVerdict(*ms)),
        R::Resume => Verdict::Resume,
        R::Fail(code) => Verdict::Fail(match code {
            bindings::FailureCode::TemporaryChannelFailure => FailCode::TemporaryChannelFailure,
            bindings::FailureCode::InvalidOnionHmac => FailCode::InvalidOnionHmac,
            bindings::FailureCode::InvalidOnionKey => FailCode::InvalidOnionKey,
            bindings::FailureCode::InvalidOnionVersion => FailCode::InvalidOnionVersion,
        }),
        R::Settle(preimage) => Verdict::Settle(check_preimage(preimage, payment_hash)?),
        R::ResumeModified(m) => {
            let in_amount_msat = nonzero(m.in_amount_msat, "in-amount-msat")?;
            let out_amount_msat = nonzero(m.out_amount_msat, "out-amount-msat")?;
            // Before anything is copied: the list may be huge.
            let bytes = wire_records_size(&m.out_wire_custom_records);
            if bytes > MAX_WIRE_RECORDS_BYTES {
                return Err(InvalidVerdict::WireRecordsTooLarge(bytes));
            }
            let mut out_wire_custom_records = BTreeMap::new();
            for rec in &m.out_wire_custom_records {
                if rec.key < MIN_CUSTOM_RECORD_TYPE {
                    return Err(InvalidVerdict::RecordKeyOutOfRange(rec.key));
                }
                if out_wire_custom_records
                    .insert(rec.key, rec.value.clone())
                    .is_some()
                {
                    return Err(InvalidVerdict::DuplicateRecordKey(rec.key));
                }
            }
            Verdict::ResumeModified(Modification {
                in_amount_msat,
                out_amount_msat,
                out_wire_custom_records,
            })
        }
    }))
}

/// Size of `records` as a TLV stream (BigSize type, BigSize length, value).
fn wire_records_size(records: &[bindings::CustomRecord]) -> usize {
    fn bigsize(n: u64) -> usize {
        match n {
            0..=0xfc => 1,
            0xfd..=0xffff => 3,
            0x1_0000..=0xffff_ffff => 5,
            _ => 9,
        }
    }
    records.iter().fold(0usize, |sum, r| {
        sum.saturating_add(bigsize(r.key))
            .saturating_add(bigsize(r.value.len() as u64))
            .saturating_add(r.value.len())
    })
}

fn nonzero(v: Option<u64>, what: &'static str) -> Result<Option<u64>, InvalidVerdict> {
    match v {
        Some(0) => Err(InvalidVerdict::ZeroAmount(what)),
        other => Ok(other),
    }
}

/// Checks a settle preimage: exactly 32 bytes and sha256(preimage) == payment hash.
/// LND checks only the length; settling a forward with a preimage that does not hash
/// to the payment hash loses the forwarded amount, so it must never be sent.
pub fn check_preimage(preimage: &[u8], payment_hash: &[u8]) -> Result<[u8; 32], InvalidVerdict> {
    let preimage: [u8; 32] = preimage
        .try_into()
        .map_err(|_| InvalidVerdict::PreimageLength(preimage.len()))?;
    if Sha256::digest(preimage).as_slice() != payment_hash {
        return Err(InvalidVerdict::PreimageMismatch);
    }
    Ok(preimage)
}

impl Verdict {
    /// The response LND receives for `key`. Infallible: a `Verdict` only holds
    /// answers that pass LND's checks (see the module doc).
    pub fn to_response(&self, key: CircuitKey) -> ForwardHtlcInterceptResponse {
        let mut resp = ForwardHtlcInterceptResponse {
            incoming_circuit_key: Some(ProtoCircuitKey {
                chan_id: key.chan_id,
                htlc_id: key.htlc_id,
            }),
            ..Default::default()
        };
        match self {
            Verdict::Resume => resp.set_action(ResolveHoldForwardAction::Resume),
            Verdict::Fail(code) => {
                // failure_message stays empty: a message and a code together, or a
                // message of any length but 292, would end the stream.
                resp.set_action(ResolveHoldForwardAction::Fail);
                resp.set_failure_code(code.to_lnd());
            }
            Verdict::Settle(preimage) => {
                resp.set_action(ResolveHoldForwardAction::Settle);
                resp.preimage = preimage.to_vec();
            }
            Verdict::ResumeModified(m) => {
                resp.set_action(ResolveHoldForwardAction::ResumeModified);
                resp.in_amount_msat = m.in_amount_msat.unwrap_or(0);
                resp.out_amount_msat = m.out_amount_msat.unwrap_or(0);
                resp.out_wire_custom_records = m
                    .out_wire_custom_records
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
            }
        }
        resp
    }

    /// A short word for logs and metrics: `resume`, `fail`, `settle`,
    /// `resume-modified`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Resume => "resume",
            Verdict::Fail(_) => "fail",
            Verdict::Settle(_) => "settle",
            Verdict::ResumeModified(_) => "resume-modified",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Resume => write!(f, "resume"),
            Verdict::Fail(code) => write!(f, "fail({code:?})"),
            Verdict::Settle(_) => write!(f, "settle"),
            Verdict::ResumeModified(m) => {
                write!(f, "resume-modified(")?;
                let mut sep = "";
                if let Some(a) = m.in_amount_msat {
                    write!(f, "in={a}msat")?;
                    sep = ",";
                }
                if let Some(a) = m.out_amount_msat {
                    write!(f, "{sep}out={a}msat")?;
                    sep = ",";
                }
                if !m.out_wire_custom_records.is_empty() {
                    write!(f, "{sep}records={}", m.out_wire_custom_records.len())?;
                }
                write!(f, ")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::{CustomRecord, Modification as WitMod, Resolution as R};

    fn hash_of(p: &[u8]) -> Vec<u8> {
        Sha256::digest(p).to_vec()
    }

    #[test]
    fn settle_with_the_right_preimage_is_accepted() {
        let pre = [7u8; 32];
        let v = validate(&R::Settle(pre.to_vec()), &hash_of(&pre)).unwrap();
        assert_eq!(v, Some(Verdict::Settle(pre)));
    }

    #[test]
    fn settle_with_a_wrong_preimage_is_refused() {
        let err = validate(&R::Settle(vec![1; 32]), &hash_of(&[2; 32])).unwrap_err();
        assert_eq!(err, InvalidVerdict::PreimageMismatch);
    }

    #[test]
    fn settle_with_a_short_preimage_is_refused() {
        let err = validate(&R::Settle(vec![1; 31]), &hash_of(&[1; 31])).unwrap_err();
        assert_eq!(err, InvalidVerdict::PreimageLength(31));
    }

    #[test]
    fn custom_record_below_the_custom_range_is_refused() {
        let m = WitMod {
            in_amount_msat: None,
            out_amount_msat: None,
            out_wire_custom_records: vec![CustomRecord {
                key: 65535,
                value: vec![],
            }],
        };
        let err = validate(&R::ResumeModified(m), &[]).unwrap_err();
        assert_eq!(err, InvalidVerdict::RecordKeyOutOfRange(65535));
    }

    #[test]
    fn zero_amount_in_a_modification_is_refused() {
        let m = WitMod {
            in_amount_msat: None,
            out_amount_msat: Some(0),
            out_wire_custom_records: vec![],
        };
        let err = validate(&R::ResumeModified(m), &[]).unwrap_err();
        assert_eq!(err, InvalidVerdict::ZeroAmount("out-amount-msat"));
    }

    fn records(n: u64, value_len: usize) -> WitMod {
        WitMod {
            in_amount_msat: None,
            out_amount_msat: None,
            out_wire_custom_records: (0..n)
                .map(|i| CustomRecord {
                    key: MIN_CUSTOM_RECORD_TYPE + i,
                    value: vec![0xab; value_len],
                })
                .collect(),
        }
    }

    #[test]
    fn wire_records_up_to_one_message_are_accepted_and_one_byte_more_is_refused() {
        // One record with key 65536: 5-byte type, 3-byte length, value.
        let fits = MAX_WIRE_RECORDS_BYTES - 8;
        let v = validate(&R::ResumeModified(records(1, fits)), &[]).unwrap();
        assert!(matches!(v, Some(Verdict::ResumeModified(_))));
        let err = validate(&R::ResumeModified(records(1, fits + 1)), &[]).unwrap_err();
        assert_eq!(
            err,
            InvalidVerdict::WireRecordsTooLarge(MAX_WIRE_RECORDS_BYTES + 1)
        );
    }

    #[test]
    fn a_huge_number_of_empty_wire_records_is_refused() {
        // 6 bytes each (5-byte type, 1-byte length).
        let err = validate(&R::ResumeModified(records(100_000, 0)), &[]).unwrap_err();
        assert_eq!(err, InvalidVerdict::WireRecordsTooLarge(600_000));
    }

    #[test]
    fn the_largest_accepted_records_encode_far_below_grpc_limits() {
        use prost::Message;
        let key = CircuitKey {
            chan_id: u64::MAX,
            htlc_id: u64::MAX,
        };
        // Many small records with the largest keys maximise protobuf overhead.
        let m = WitMod {
            in_amount_msat: Some(u64::MAX),
            out_amount_msat: Some(u64::MAX),
            out_wire_custom_records: (0..MAX_WIRE_RECORDS_BYTES as u64 / 10)
                .map(|i| CustomRecord {
                    key: u64::MAX - i,
                    value: vec![],
                })
                .collect(),
        };
        let v = validate(&R::ResumeModified(m), &[]).unwrap().unwrap();
        assert!(v.to_response(key).encoded_len() < 4 << 20);
    }

    #[test]
    fn next_is_no_verdict() {
        assert_eq!(validate(&R::Next, &[]).unwrap(), None);
    }

    #[test]
    fn hold_is_not_a_verdict() {
        assert_eq!(
            validate(&R::Hold(250), &[]).unwrap_err(),
            InvalidVerdict::NotAVerdict(250)
        );
    }

    #[test]
    fn fail_response_has_a_code_and_no_message() {
        let key = CircuitKey {
            chan_id: 1,
            htlc_id: 2,
        };
        let r = Verdict::Fail(FailCode::InvalidOnionKey).to_response(key);
        assert_eq!(r.action(), ResolveHoldForwardAction::Fail);
        assert_eq!(r.failure_code(), LndFailureCode::InvalidOnionKey);
        assert!(r.failure_message.is_empty());
        assert_eq!(r.incoming_circuit_key.unwrap().htlc_id, 2);
    }
}
