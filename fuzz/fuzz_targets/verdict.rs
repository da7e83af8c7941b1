//! Any resolution a plugin can return, against any payment hash, through
//! `verdict::validate` and `Verdict::to_response`: the path from a plugin's answer to
//! the message LND receives.
//!
//! Checked against a model written here from LND's rules
//! (`../shared/lnd-interceptor.md`, "What LND does with a response") and the WIT
//! contract, not from the host's code:
//! - `validate` refuses exactly the resolutions the model finds a violation in, and
//!   names one of those violations;
//! - an accepted resolution becomes exactly the response the model builds (what the
//!   plugin asked for, nothing else), and that response passes every rule LND
//!   enforces plus the one it does not (sha256(preimage) == payment hash), and
//!   survives protobuf encoding.
//!
//! The model matches the WIT types exhaustively: a new resolution or failure code
//! does not compile here until the model (and the generator, `Res`) covers it.
#![no_main]

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use htlcgate::circuit::CircuitKey;
use htlcgate::lnd::proto::lnrpc::failure::FailureCode as LndCode;
use htlcgate::lnd::proto::routerrpc::{
    CircuitKey as ProtoKey, ForwardHtlcInterceptResponse, ResolveHoldForwardAction as Action,
};
use htlcgate::verdict::{validate, InvalidVerdict, MAX_WIRE_RECORDS_BYTES, MIN_CUSTOM_RECORD_TYPE};
use htlcgate::wasm::bindings::{CustomRecord, FailureCode, Modification, Resolution};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sha2::{Digest, Sha256};

/// One case: a resolution, the HTLC's payment hash and its circuit key. The enums
/// mirror the WIT types so that `arbitrary` can build them, with ways to reach the
/// corners random bytes would not (the preimage that hashes to the payment hash,
/// huge record lists, keys at the custom-range boundary).
#[derive(Arbitrary, Debug)]
struct Case {
    resolution: Res,
    hash: Hash,
    chan_id: u64,
    htlc_id: u64,
}

#[derive(Arbitrary, Debug)]
enum Res {
    Next,
    Resume,
    Fail(Code),
    Settle(Vec<u8>),
    /// A 32-byte preimage (usually the one whose hash is the payment hash).
    Settle32([u8; 32]),
    ResumeModified {
        in_amount_msat: Option<u64>,
        out_amount_msat: Option<u64>,
        records: Vec<Rec>,
        /// Appended after `records`: `count` records made by a rule, up to 12,000
        /// (more than fit in one message, even with the shortest valid keys).
        bulk: Option<Bulk>,
    },
    /// 0.2.0's `hold(ms)`: not a verdict, always refused by `validate`.
    Hold(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Code {
    TemporaryChannelFailure,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionVersion,
}

#[derive(Arbitrary, Debug)]
enum Hash {
    /// sha256 of the settle preimage (the right one), or of nothing for non-settles.
    OfPreimage,
    /// The right hash with one bit flipped.
    FlippedBit(u8),
    /// Any bytes (any length).
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Rec {
    key: Key,
    value: Value,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Key {
    Any(u64),
    /// MIN_CUSTOM_RECORD_TYPE + d: the boundary and just above.
    AboveMin(u8),
    /// MIN_CUSTOM_RECORD_TYPE - 1 - d: just below the custom range.
    BelowMin(u8),
    /// u64::MAX - d.
    NearMax(u8),
    /// Where the TLV length of a type changes (BigSize: 0xfd, 0x1_0000,
    /// 0x1_0000_0000), plus d.
    BigSizeEdge(u8, u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Value {
    Bytes(Vec<u8>),
    /// `len` (up to 70,000) copies of one byte: up to just above one message.
    Filled {
        byte: u8,
        len: u32,
    },
    /// A length near the one-message limit, for the size boundary.
    NearLimit {
        byte: u8,
        below: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Bulk {
    count: u32,
    first: Key,
    /// Distinct keys (first + i) or all the same key.
    distinct: bool,
    value: Value,
}

fn key(k: Key) -> u64 {
    match k {
        Key::Any(k) => k,
        Key::AboveMin(d) => MIN_CUSTOM_RECORD_TYPE + d as u64,
        Key::BelowMin(d) => MIN_CUSTOM_RECORD_TYPE - 1 - d as u64,
        Key::NearMax(d) => u64::MAX - d as u64,
        Key::BigSizeEdge(edge, d) => {
            [0xfd, 0x1_0000, 0x1_0000_0000][edge as usize % 3] + d as u64 - 4
        }
    }
}

fn value(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        Value::Filled { byte, len } => vec![*byte; *len as usize % 70_001],
        Value::NearLimit { byte, below } => {
            vec![*byte; MAX_WIRE_RECORDS_BYTES + 16 - (*below as usize % 64)]
        }
    }
}

fn code(c: Code) -> FailureCode {
    match c {
        Code::TemporaryChannelFailure => FailureCode::TemporaryChannelFailure,
        Code::InvalidOnionHmac => FailureCode::InvalidOnionHmac,
        Code::InvalidOnionKey => FailureCode::InvalidOnionKey,
        Code::InvalidOnionVersion => FailureCode::InvalidOnionVersion,
    }
}

fn resolution(r: Res) -> Resolution {
    match r {
        Res::Next => Resolution::Next,
        Res::Resume => Resolution::Resume,
        Res::Fail(c) => Resolution::Fail(code(c)),
        Res::Settle(p) => Resolution::Settle(p),
        Res::Settle32(p) => Resolution::Settle(p.to_vec()),
        Res::Hold(ms) => Resolution::Hold(ms),
        Res::ResumeModified {
            in_amount_msat,
            out_amount_msat,
            records,
            bulk,
        } => {
            let mut out: Vec<CustomRecord> = records
                .iter()
                .map(|r| CustomRecord {
                    key: key(r.key),
                    value: value(&r.value),
                })
                .collect();
            if let Some(b) = bulk {
                let count = b.count % 12_001;
                let first = key(b.first);
                // Far above the limit either way; bound the harness's own memory.
                let mut v = value(&b.value);
                if (count as usize).saturating_mul(v.len()) > 1 << 20 {
                    v.truncate(16);
                }
                out.extend((0..count as u64).map(|i| CustomRecord {
                    key: if b.distinct {
                        first.wrapping_add(i)
                    } else {
                        first
                    },
                    value: v.clone(),
                }));
            }
            Resolution::ResumeModified(Modification {
                in_amount_msat,
                out_amount_msat,
                out_wire_custom_records: out,
            })
        }
    }
}

/// The LND failure code for each WIT code, by name (BOLT 4), independent of the
/// host's table. Exhaustive: a new WIT code does not compile until it is mapped.
fn lnd_code(c: &FailureCode) -> LndCode {
    match c {
        FailureCode::TemporaryChannelFailure => LndCode::TemporaryChannelFailure,
        FailureCode::InvalidOnionHmac => LndCode::InvalidOnionHmac,
        FailureCode::InvalidOnionKey => LndCode::InvalidOnionKey,
        FailureCode::InvalidOnionVersion => LndCode::InvalidOnionVersion,
    }
}

/// Bytes of a BigSize-encoded number (BOLT 1).
fn bigsize(n: u64) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Size of the records as a TLV stream in the outgoing `update_add_htlc`.
fn tlv_size(records: &[CustomRecord]) -> usize {
    records.iter().fold(0usize, |s, r| {
        s.saturating_add(bigsize(r.key) + bigsize(r.value.len() as u64) + r.value.len())
    })
}

/// The model: every reason why `res` must not reach LND for an HTLC with payment
/// hash `hash`. Empty means it must be accepted.
fn violations(res: &Resolution, hash: &[u8]) -> Vec<InvalidVerdict> {
    let mut v = Vec::new();
    match res {
        Resolution::Next | Resolution::Resume | Resolution::Fail(_) => {}
        // A hold keeps the HTLC held: never an answer to LND.
        Resolution::Hold(ms) => v.push(InvalidVerdict::NotAVerdict(*ms)),
        Resolution::Settle(p) => {
            // LND ends the stream on a preimage that is not 32 bytes; a wrong one
            // loses the forwarded amount.
            if p.len() != 32 {
                v.push(InvalidVerdict::PreimageLength(p.len()));
            } else if Sha256::digest(p).as_slice() != hash {
                v.push(InvalidVerdict::PreimageMismatch);
            }
        }
        Resolution::ResumeModified(m) => {
            // Zero means "unchanged" to LND, not what the plugin said.
            if m.in_amount_msat == Some(0) {
                v.push(InvalidVerdict::ZeroAmount("in-amount-msat"));
            }
            if m.out_amount_msat == Some(0) {
                v.push(InvalidVerdict::ZeroAmount("out-amount-msat"));
            }
            // Must fit in one Lightning message.
            let size = tlv_size(&m.out_wire_custom_records);
            if size > MAX_WIRE_RECORDS_BYTES {
                v.push(InvalidVerdict::WireRecordsTooLarge(size));
            }
            let mut seen = HashMap::new();
            for r in &m.out_wire_custom_records {
                // LND ends the stream on a key below the custom range.
                if r.key < MIN_CUSTOM_RECORD_TYPE {
                    v.push(InvalidVerdict::RecordKeyOutOfRange(r.key));
                }
                *seen.entry(r.key).or_insert(0u32) += 1;
            }
            v.extend(
                seen.into_iter()
                    .filter(|&(_, n)| n > 1)
                    .map(|(k, _)| InvalidVerdict::DuplicateRecordKey(k)),
            );
        }
    }
    v
}

/// The model: the response for an accepted `res` (`None` for `next`, which is no
/// answer at all).
fn expected_response(res: &Resolution, key: CircuitKey) -> Option<ForwardHtlcInterceptResponse> {
    let mut r = ForwardHtlcInterceptResponse {
        incoming_circuit_key: Some(ProtoKey {
            chan_id: key.chan_id,
            htlc_id: key.htlc_id,
        }),
        ..Default::default()
    };
    match res {
        // `hold` is refused before any response is built (see `violations`).
        Resolution::Next | Resolution::Hold(_) => return None,
        Resolution::Resume => r.action = Action::Resume as i32,
        Resolution::Fail(c) => {
            r.action = Action::Fail as i32;
            r.failure_code = lnd_code(c) as i32;
        }
        Resolution::Settle(p) => {
            r.action = Action::Settle as i32;
            r.preimage = p.clone();
        }
        Resolution::ResumeModified(m) => {
            r.action = Action::ResumeModified as i32;
            r.in_amount_msat = m.in_amount_msat.unwrap_or(0);
            r.out_amount_msat = m.out_amount_msat.unwrap_or(0);
            r.out_wire_custom_records = m
                .out_wire_custom_records
                .iter()
                .map(|r| (r.key, r.value.clone()))
                .collect();
        }
    }
    Some(r)
}

/// LND's rules for a response (`forward_interceptor.go`, in the order LND checks
/// them, as the mock LND does), plus the preimage hash, which LND does not check.
fn assert_lnd_accepts(resp: &ForwardHtlcInterceptResponse, key: CircuitKey, hash: &[u8]) {
    let ck = resp.incoming_circuit_key.as_ref().expect("no circuit key");
    assert_eq!((ck.chan_id, ck.htlc_id), (key.chan_id, key.htlc_id));
    match Action::try_from(resp.action).expect("unknown action") {
        Action::Resume => {}
        Action::ResumeModified => {
            for &k in resp.out_wire_custom_records.keys() {
                assert!(k >= MIN_CUSTOM_RECORD_TYPE, "record key {k} below 65536");
            }
        }
        Action::Fail => {
            if resp.failure_message.is_empty() {
                let allowed = [
                    LndCode::Reserved,
                    LndCode::TemporaryChannelFailure,
                    LndCode::InvalidOnionHmac,
                    LndCode::InvalidOnionKey,
                    LndCode::InvalidOnionVersion,
                ];
                assert!(
                    allowed.iter().any(|&c| c as i32 == resp.failure_code),
                    "unsupported failure code {}",
                    resp.failure_code
                );
            } else {
                assert_eq!(resp.failure_code, 0, "failure message and code together");
                assert_eq!(resp.failure_message.len(), 292, "failure message length");
            }
        }
        Action::Settle => {
            assert_eq!(resp.preimage.len(), 32, "settle preimage not 32 bytes");
            assert_eq!(
                Sha256::digest(&resp.preimage).as_slice(),
                hash,
                "settle with a preimage that is not the payment hash's"
            );
        }
    }
    // htlcgate's own rule: it never sends a failure message (a 292-byte encrypted
    // blob it cannot build); its fail codes are the four above.
    assert!(resp.failure_message.is_empty(), "a failure message is sent");
    // The records must fit in the peer's update_add_htlc, and the whole response
    // far below gRPC limits (tonic 4 MiB, LND 200 MiB; over LND's ends the stream).
    let size: usize = resp
        .out_wire_custom_records
        .iter()
        .map(|(k, v)| bigsize(*k) + bigsize(v.len() as u64) + v.len())
        .sum();
    assert!(
        size <= MAX_WIRE_RECORDS_BYTES,
        "{size} bytes of wire records"
    );
    let bytes = resp.encode_to_vec();
    assert!(bytes.len() < 4 << 20, "response of {} bytes", bytes.len());
    let back = ForwardHtlcInterceptResponse::decode(&bytes[..]).expect("decodes");
    assert_eq!(&back, resp, "changed by protobuf encoding");
}

fuzz_target!(|data: &[u8]| {
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let right_hash = match &case.resolution {
        Res::Settle(p) => Sha256::digest(p).to_vec(),
        Res::Settle32(p) => Sha256::digest(p).to_vec(),
        _ => Sha256::digest([]).to_vec(),
    };
    let hash = match case.hash {
        Hash::OfPreimage => right_hash,
        Hash::FlippedBit(b) => {
            let mut h = right_hash;
            h[(b as usize / 8) % 32] ^= 1 << (b % 8);
            h
        }
        Hash::Raw(h) => h,
    };
    let key = CircuitKey {
        chan_id: case.chan_id,
        htlc_id: case.htlc_id,
    };
    let res = resolution(case.resolution);
    let must_refuse = violations(&res, &hash);
    match validate(&res, &hash) {
        Ok(verdict) => {
            assert!(
                must_refuse.is_empty(),
                "{res:?} accepted despite {must_refuse:?}"
            );
            let want = expected_response(&res, key);
            let got = verdict.as_ref().map(|v| v.to_response(key));
            // What the plugin asked for is what goes out, and nothing else.
            assert_eq!(got, want, "{res:?} became {verdict:?}");
            if let (Some(v), Some(resp)) = (&verdict, &got) {
                assert_lnd_accepts(resp, key, &hash);
                // The forms logs and the journal use.
                let _ = (v.kind(), v.to_string());
            }
        }
        Err(e) => assert!(
            must_refuse.contains(&e),
            "{res:?} refused with {e:?}, but its faults are {must_refuse:?}"
        ),
    }
});
