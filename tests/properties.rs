//! Property tests (issue 5, "Hostile input"): for ANY resolution a plugin can
//! return, htlcgate either refuses it (a plugin fault) or sends LND a response that
//! passes every rule in LND's interceptor (`../shared/lnd-interceptor.md`), and
//! that says what the plugin said. The checker below is written from those rules,
//! not from htlcgate's code.

use std::collections::HashMap;

use htlcgate::circuit::CircuitKey;
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse;
use htlcgate::verdict::{validate, Verdict, MAX_WIRE_RECORDS_BYTES};
use htlcgate::wasm::bindings::{CustomRecord, FailureCode, Modification, Resolution};
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// LND's rules, as numbers from the facts (not from htlcgate's types)
// ---------------------------------------------------------------------------

/// `routerrpc.ResolveHoldForwardAction`.
const SETTLE: i32 = 0;
const FAIL: i32 = 1;
const RESUME: i32 = 2;
const RESUME_MODIFIED: i32 = 3;

/// `lnrpc.Failure.FailureCode` values LND accepts without a failure message:
/// 0 (means TEMPORARY_CHANNEL_FAILURE), TEMPORARY_CHANNEL_FAILURE = 15,
/// INVALID_ONION_HMAC = 9, INVALID_ONION_KEY = 10, INVALID_ONION_VERSION = 8.
const ALLOWED_FAILURE_CODES: [i32; 5] = [0, 15, 9, 10, 8];
/// A failure message, if given, is exactly 256 + 32 + 2 + 2 bytes.
const FAILURE_MESSAGE_LEN: usize = 292;
/// Custom records start here (`lnwire.MinCustomRecordsTlvType`).
const MIN_CUSTOM: u64 = 65536;
/// LND's gRPC server receive limit (`lnrpc.MaxGrpcMsgSize`, 200 MiB): a larger
/// message ends the stream.
const LND_MAX_RECV: usize = 200 * 1024 * 1024;
/// tonic's default receive limit (the mock LND's), 4 MiB.
const TONIC_MAX_RECV: usize = 4 * 1024 * 1024;

/// Every check LND makes on a response, in the order of the facts, plus the one it
/// does not make (the preimage hash). `Err` names the rule that would end the
/// stream or lose money.
fn lnd_accepts(
    resp: &ForwardHtlcInterceptResponse,
    key: CircuitKey,
    payment_hash: &[u8],
) -> Result<(), String> {
    let size = resp.encoded_len();
    if size > LND_MAX_RECV {
        return Err(format!("{size} bytes: over LND's gRPC receive limit"));
    }
    let ck = resp
        .incoming_circuit_key
        .as_ref()
        .ok_or("CircuitKey missing from ForwardHtlcInterceptResponse")?;
    if (ck.chan_id, ck.htlc_id) != (key.chan_id, key.htlc_id) {
        return Err(format!("answers {ck:?}, not {key:?}"));
    }
    match resp.action {
        SETTLE => {
            if resp.preimage.is_empty() {
                return Err("missing preimage".into());
            }
            if resp.preimage.len() != 32 {
                return Err(format!(
                    "invalid preimage length of {}, want 32",
                    resp.preimage.len()
                ));
            }
            if Sha256::digest(&resp.preimage).as_slice() != payment_hash {
                return Err("settle with a preimage that does not hash to the payment hash".into());
            }
        }
        FAIL => {
            if !resp.failure_message.is_empty() {
                if resp.failure_code != 0 {
                    return Err("failure message and failure code are mutually exclusive".into());
                }
                if resp.failure_message.len() != FAILURE_MESSAGE_LEN {
                    return Err("failure message length invalid".into());
                }
            } else if !ALLOWED_FAILURE_CODES.contains(&resp.failure_code) {
                return Err(format!("unsupported failure code: {}", resp.failure_code));
            }
        }
        RESUME => {}
        RESUME_MODIFIED => {
            if let Some(k) = resp
                .out_wire_custom_records
                .keys()
                .find(|&&k| k < MIN_CUSTOM)
            {
                return Err(format!(
                    "failed to validate custom records: TLV type {k} below min"
                ));
            }
        }
        other => return Err(format!("unrecognized resolve action {other}")),
    }
    Ok(())
}

/// Fields that do not belong to the action are left empty, so the response means
/// exactly one thing.
fn only_its_own_fields(resp: &ForwardHtlcInterceptResponse) -> Result<(), String> {
    if resp.action != SETTLE && !resp.preimage.is_empty() {
        return Err("preimage on a non-settle".into());
    }
    if resp.action != FAIL && (resp.failure_code != 0 || !resp.failure_message.is_empty()) {
        return Err("failure fields on a non-fail".into());
    }
    if resp.action != RESUME_MODIFIED
        && (resp.in_amount_msat != 0
            || resp.out_amount_msat != 0
            || !resp.out_wire_custom_records.is_empty())
    {
        return Err("modification fields on a non-resume-modified".into());
    }
    Ok(())
}

/// TLV size of wire records (BigSize type, BigSize length, value), computed here
/// independently of the host.
fn tlv_size(records: &[CustomRecord]) -> usize {
    let bigsize = |n: u64| -> usize {
        if n < 0xfd {
            1
        } else if n <= 0xffff {
            3
        } else if n <= 0xffff_ffff {
            5
        } else {
            9
        }
    };
    records
        .iter()
        .map(|r| bigsize(r.key) + bigsize(r.value.len() as u64) + r.value.len())
        .sum()
}

// ---------------------------------------------------------------------------
// Anything a plugin can return
// ---------------------------------------------------------------------------

fn failure_code() -> impl Strategy<Value = FailureCode> {
    prop_oneof![
        Just(FailureCode::TemporaryChannelFailure),
        Just(FailureCode::InvalidOnionHmac),
        Just(FailureCode::InvalidOnionKey),
        Just(FailureCode::InvalidOnionVersion),
    ]
}

fn amount() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        Just(Some(0)),
        Just(Some(1)),
        Just(Some(u64::MAX)),
        any::<u64>().prop_map(Some),
    ]
}

fn record_key() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Small ranges make duplicates common.
        3 => MIN_CUSTOM..MIN_CUSTOM + 16,
        1 => Just(MIN_CUSTOM - 1),
        1 => 0..MIN_CUSTOM,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        2 => any::<u64>(),
    ]
}

fn record_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..48),
        // Big enough that a few of them pass the one-message size.
        1 => (any::<u8>(), 1_000..70_000usize).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn modification() -> impl Strategy<Value = Modification> {
    (
        amount(),
        amount(),
        vec(
            (record_key(), record_value()).prop_map(|(key, value)| CustomRecord { key, value }),
            0..12,
        ),
    )
        .prop_map(|(in_amount_msat, out_amount_msat, recs)| Modification {
            in_amount_msat,
            out_amount_msat,
            out_wire_custom_records: recs,
        })
}

/// Valid, distinct keys whose records' TLV size lands near the one-message cap
/// (within a few bytes either side, or anywhere up to three times it).
fn near_the_size_cap() -> impl Strategy<Value = Modification> {
    (
        proptest::collection::btree_set(MIN_CUSTOM.., 1..5),
        prop_oneof![
            3 => (MAX_WIRE_RECORDS_BYTES - 40)..(MAX_WIRE_RECORDS_BYTES + 40),
            1 => 0..(3 * MAX_WIRE_RECORDS_BYTES),
        ],
        any::<u8>(),
    )
        .prop_map(|(keys, total, fill)| {
            let mut recs: Vec<CustomRecord> = keys
                .into_iter()
                .map(|key| CustomRecord { key, value: vec![] })
                .collect();
            // The last record takes what is left (its length as a 3-byte BigSize).
            let rest = total.saturating_sub(tlv_size(&recs) + 2);
            recs.last_mut().unwrap().value = vec![fill; rest];
            Modification {
                in_amount_msat: None,
                out_amount_msat: None,
                out_wire_custom_records: recs,
            }
        })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=max),
        vec(any::<u8>(), 32..=32),
        Just(Vec::new()),
    ]
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        Just(Resolution::Next),
        Just(Resolution::Resume),
        failure_code().prop_map(Resolution::Fail),
        bytes(80).prop_map(Resolution::Settle),
        modification().prop_map(Resolution::ResumeModified),
        near_the_size_cap().prop_map(Resolution::ResumeModified),
    ]
}

/// A resolution with a payment hash: unrelated, or (for settles) the hash of the
/// preimage, or that hash with one bit flipped.
fn case() -> impl Strategy<Value = (Resolution, Vec<u8>)> {
    prop_oneof![
        (resolution(), bytes(40)),
        vec(any::<u8>(), 0..=40).prop_map(|p| {
            let h = Sha256::digest(&p).to_vec();
            (Resolution::Settle(p), h)
        }),
        (vec(any::<u8>(), 32..=32), 0..256usize).prop_map(|(p, bit)| {
            let mut h = Sha256::digest(&p).to_vec();
            h[bit / 8] ^= 1 << (bit % 8);
            (Resolution::Settle(p), h)
        }),
    ]
}

fn circuit_key() -> impl Strategy<Value = CircuitKey> {
    (any::<u64>(), any::<u64>()).prop_map(|(chan_id, htlc_id)| CircuitKey { chan_id, htlc_id })
}

/// What the facts say the host must accept: everything LND accepts and that is
/// what the plugin meant, minus wrong preimages and records that cannot fit in one
/// Lightning message.
fn should_accept(res: &Resolution, payment_hash: &[u8]) -> bool {
    match res {
        Resolution::Next | Resolution::Resume | Resolution::Fail(_) => true,
        // 0.2.0's hold is not a verdict: never sent to LND.
        Resolution::Hold(_) => false,
        Resolution::Settle(p) => p.len() == 32 && Sha256::digest(p).as_slice() == payment_hash,
        Resolution::ResumeModified(m) => {
            let mut keys: Vec<u64> = m.out_wire_custom_records.iter().map(|r| r.key).collect();
            keys.sort_unstable();
            let distinct = keys.windows(2).all(|w| w[0] != w[1]);
            m.in_amount_msat != Some(0)
                && m.out_amount_msat != Some(0)
                && keys.iter().all(|&k| k >= MIN_CUSTOM)
                && distinct
                && tlv_size(&m.out_wire_custom_records) <= MAX_WIRE_RECORDS_BYTES
        }
    }
}

fn lnd_code(code: &FailureCode) -> i32 {
    match code {
        FailureCode::TemporaryChannelFailure => 15,
        FailureCode::InvalidOnionHmac => 9,
        FailureCode::InvalidOnionKey => 10,
        FailureCode::InvalidOnionVersion => 8,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Any resolution: refused, or sent as a response LND accepts, that fits
    /// every receive limit, round-trips through protobuf unchanged, and carries
    /// only its own action's fields.
    #[test]
    fn every_response_sent_passes_every_lnd_rule(
        (res, hash) in case(),
        key in circuit_key(),
    ) {
        match validate(&res, &hash) {
            Err(_) | Ok(None) => {}
            Ok(Some(verdict)) => {
                let resp = verdict.to_response(key);
                prop_assert_eq!(lnd_accepts(&resp, key, &hash), Ok(()), "{:?}", res);
                prop_assert_eq!(only_its_own_fields(&resp), Ok(()));
                prop_assert!(resp.encoded_len() <= TONIC_MAX_RECV);
                let wire = resp.encode_to_vec();
                let back = ForwardHtlcInterceptResponse::decode(wire.as_slice()).unwrap();
                prop_assert_eq!(&back, &resp);
                prop_assert_eq!(lnd_accepts(&back, key, &hash), Ok(()));
            }
        }
    }

    /// No false rejects and no silent changes: the host accepts exactly what
    /// should be accepted, `next` is no verdict, and what is sent is what the
    /// plugin said (amounts: absent is 0, "unchanged"; every record, unchanged).
    #[test]
    fn the_response_says_what_the_plugin_said(
        (res, hash) in case(),
        key in circuit_key(),
    ) {
        let got = validate(&res, &hash);
        prop_assert_eq!(got.is_ok(), should_accept(&res, &hash), "{:?} -> {:?}", res, got);
        let Ok(verdict) = got else { return Ok(()) };
        let Some(verdict) = verdict else {
            prop_assert!(matches!(res, Resolution::Next));
            return Ok(());
        };
        prop_assert!(!matches!(res, Resolution::Next));
        let resp = verdict.to_response(key);
        match &res {
            Resolution::Next | Resolution::Hold(_) => unreachable!(),
            Resolution::Resume => prop_assert_eq!(resp.action, RESUME),
            Resolution::Fail(code) => {
                prop_assert_eq!(resp.action, FAIL);
                prop_assert_eq!(resp.failure_code, lnd_code(code));
                prop_assert!(resp.failure_message.is_empty());
            }
            Resolution::Settle(p) => {
                prop_assert_eq!(resp.action, SETTLE);
                prop_assert_eq!(&resp.preimage, p);
            }
            Resolution::ResumeModified(m) => {
                prop_assert_eq!(resp.action, RESUME_MODIFIED);
                prop_assert_eq!(resp.in_amount_msat, m.in_amount_msat.unwrap_or(0));
                prop_assert_eq!(resp.out_amount_msat, m.out_amount_msat.unwrap_or(0));
                let want: HashMap<u64, Vec<u8>> = m
                    .out_wire_custom_records
                    .iter()
                    .map(|r| (r.key, r.value.clone()))
                    .collect();
                prop_assert_eq!(&resp.out_wire_custom_records, &want);
            }
        }
    }

    /// Records with valid, distinct keys are refused exactly when they could not
    /// fit in one Lightning message (checked at the byte boundary).
    #[test]
    fn wire_records_are_sent_exactly_when_they_fit(m in near_the_size_cap(), key in circuit_key()) {
        let fits = tlv_size(&m.out_wire_custom_records) <= MAX_WIRE_RECORDS_BYTES;
        let got = validate(&Resolution::ResumeModified(m), &[]);
        prop_assert_eq!(got.is_ok(), fits, "{:?}", got.as_ref().err());
        if let Ok(Some(v)) = got {
            let resp = v.to_response(key);
            prop_assert_eq!(lnd_accepts(&resp, key, &[]), Ok(()));
            prop_assert!(resp.encoded_len() <= TONIC_MAX_RECV);
        }
    }

    /// A right preimage always settles, with exactly that preimage.
    #[test]
    fn a_right_preimage_always_settles(preimage in any::<[u8; 32]>(), key in circuit_key()) {
        let hash = Sha256::digest(preimage).to_vec();
        let v = validate(&Resolution::Settle(preimage.to_vec()), &hash);
        prop_assert_eq!(&v, &Ok(Some(Verdict::Settle(preimage))));
        let resp = v.unwrap().unwrap().to_response(key);
        prop_assert_eq!(lnd_accepts(&resp, key, &hash), Ok(()));
    }

    /// `next` is no verdict, whatever the payment hash.
    #[test]
    fn next_maps_to_none(hash in bytes(40)) {
        prop_assert_eq!(validate(&Resolution::Next, &hash), Ok(None));
    }
}

/// The checker can fail: it rejects each kind of response LND would end the
/// stream for (so the properties above are not vacuous).
#[test]
fn the_checker_rejects_what_lnd_rejects() {
    use htlcgate::lnd::proto::routerrpc::CircuitKey as Ck;
    let key = CircuitKey {
        chan_id: 1,
        htlc_id: 2,
    };
    let pre = [7u8; 32];
    let hash = Sha256::digest(pre).to_vec();
    let ok = ForwardHtlcInterceptResponse {
        incoming_circuit_key: Some(Ck {
            chan_id: 1,
            htlc_id: 2,
        }),
        action: RESUME,
        ..Default::default()
    };
    assert_eq!(lnd_accepts(&ok, key, &hash), Ok(()));
    let bad = [
        ForwardHtlcInterceptResponse {
            incoming_circuit_key: None,
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: 4,
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: SETTLE,
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: SETTLE,
            preimage: vec![7; 31],
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: SETTLE,
            preimage: vec![8; 32],
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: FAIL,
            failure_code: 12,
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: FAIL,
            failure_code: 15,
            failure_message: vec![0; 292],
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: FAIL,
            failure_message: vec![0; 291],
            ..ok.clone()
        },
        ForwardHtlcInterceptResponse {
            action: RESUME_MODIFIED,
            out_wire_custom_records: [(65535, vec![])].into(),
            ..ok.clone()
        },
    ];
    for resp in bad {
        assert!(lnd_accepts(&resp, key, &hash).is_err(), "{resp:?}");
    }
    let settle = ForwardHtlcInterceptResponse {
        action: SETTLE,
        preimage: pre.to_vec(),
        ..ok.clone()
    };
    assert_eq!(lnd_accepts(&settle, key, &hash), Ok(()));
    assert!(only_its_own_fields(&ForwardHtlcInterceptResponse {
        failure_code: 15,
        ..ok.clone()
    })
    .is_err());
}
