//! What happened to a forward, as a plugin's `outcome` export receives it: LND's
//! HTLC events typed by `lnd::outcome`, mapped to the WIT `htlc-outcome`.

use std::time::UNIX_EPOCH;

use crate::circuit::CircuitKey;
use crate::lnd::outcome::{HtlcAmounts, HtlcOutcome, OutcomeKind};
use crate::wasm::bindings as wit;

fn key(k: CircuitKey) -> wit::CircuitKey {
    wit::CircuitKey {
        chan_id: k.chan_id,
        htlc_id: k.htlc_id,
    }
}

fn amounts(a: &HtlcAmounts) -> wit::HtlcAmounts {
    wit::HtlcAmounts {
        incoming_amount_msat: a.incoming_msat,
        outgoing_amount_msat: a.outgoing_msat,
        incoming_expiry: a.incoming_expiry,
        outgoing_expiry: a.outgoing_expiry,
    }
}

/// The event a plugin is told to find out whether its `outcome` listens (`check`,
/// replay's probe): a forward of HTLC 0:0 failed downstream, at `at_unix_ms`.
pub fn sample(at_unix_ms: u64) -> wit::HtlcOutcome {
    wit::HtlcOutcome {
        incoming_circuit_key: wit::CircuitKey {
            chan_id: 0,
            htlc_id: 0,
        },
        outgoing_circuit_key: None,
        kind: wit::OutcomeKind::ForwardFailed,
        at_unix_ms,
    }
}

/// The WIT record for one outcome. `at-unix-ms` is 0 for a time before the
/// epoch (LND never sends one).
pub fn to_wit(o: &HtlcOutcome) -> wit::HtlcOutcome {
    let kind = match &o.kind {
        OutcomeKind::Forwarded { amounts: a } => wit::OutcomeKind::Forwarded(amounts(a)),
        OutcomeKind::Settled { preimage } => wit::OutcomeKind::Settled(preimage.to_vec()),
        OutcomeKind::ForwardFailed => wit::OutcomeKind::ForwardFailed,
        OutcomeKind::LinkFailed {
            wire_failure,
            detail,
            failure_string,
            amounts: a,
        } => wit::OutcomeKind::LinkFailed(wit::LinkFailure {
            wire_failure_code: *wire_failure,
            detail: detail.as_str_name().to_owned(),
            message: failure_string.clone(),
            amounts: amounts(a),
        }),
        OutcomeKind::FinalSettled { offchain } => wit::OutcomeKind::Final(wit::FinalResolution {
            settled: true,
            offchain: *offchain,
        }),
        OutcomeKind::FinalFailed { offchain } => wit::OutcomeKind::Final(wit::FinalResolution {
            settled: false,
            offchain: *offchain,
        }),
    };
    wit::HtlcOutcome {
        incoming_circuit_key: key(o.key),
        outgoing_circuit_key: o.outgoing.map(key),
        kind,
        at_unix_ms: o
            .at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::proto::routerrpc::FailureDetail;
    use std::time::Duration;

    fn outcome(kind: OutcomeKind) -> HtlcOutcome {
        HtlcOutcome {
            key: CircuitKey {
                chan_id: 11,
                htlc_id: 12,
            },
            outgoing: Some(CircuitKey {
                chan_id: 21,
                htlc_id: 22,
            }),
            kind,
            at: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        }
    }

    const AMOUNTS: HtlcAmounts = HtlcAmounts {
        incoming_msat: 1_001_000,
        outgoing_msat: 1_000_000,
        incoming_expiry: 800_100,
        outgoing_expiry: 800_060,
    };

    fn wit_amounts() -> wit::HtlcAmounts {
        wit::HtlcAmounts {
            incoming_amount_msat: 1_001_000,
            outgoing_amount_msat: 1_000_000,
            incoming_expiry: 800_100,
            outgoing_expiry: 800_060,
        }
    }

    #[test]
    fn keys_and_time_are_carried_over() {
        let w = to_wit(&outcome(OutcomeKind::ForwardFailed));
        assert_eq!(
            (
                w.incoming_circuit_key.chan_id,
                w.incoming_circuit_key.htlc_id
            ),
            (11, 12)
        );
        let out = w.outgoing_circuit_key.unwrap();
        assert_eq!((out.chan_id, out.htlc_id), (21, 22));
        assert_eq!(w.at_unix_ms, 1_700_000_000_123);
        assert_eq!(w.kind, wit::OutcomeKind::ForwardFailed);
        let mut final_ = outcome(OutcomeKind::FinalSettled { offchain: true });
        final_.outgoing = None;
        assert!(to_wit(&final_).outgoing_circuit_key.is_none());
    }

    #[test]
    fn each_kind_maps_to_its_case() {
        assert_eq!(
            to_wit(&outcome(OutcomeKind::Forwarded { amounts: AMOUNTS })).kind,
            wit::OutcomeKind::Forwarded(wit_amounts())
        );
        assert_eq!(
            to_wit(&outcome(OutcomeKind::Settled { preimage: [5; 32] })).kind,
            wit::OutcomeKind::Settled(vec![5; 32])
        );
        let link = outcome(OutcomeKind::LinkFailed {
            wire_failure: 1007,
            detail: FailureDetail::InsufficientBalance,
            failure_string: "insufficient bandwidth to route htlc".into(),
            amounts: AMOUNTS,
        });
        assert_eq!(
            to_wit(&link).kind,
            wit::OutcomeKind::LinkFailed(wit::LinkFailure {
                wire_failure_code: 1007,
                detail: "INSUFFICIENT_BALANCE".into(),
                message: "insufficient bandwidth to route htlc".into(),
                amounts: wit_amounts(),
            })
        );
        assert_eq!(
            to_wit(&outcome(OutcomeKind::FinalSettled { offchain: true })).kind,
            wit::OutcomeKind::Final(wit::FinalResolution {
                settled: true,
                offchain: true
            })
        );
        assert_eq!(
            to_wit(&outcome(OutcomeKind::FinalFailed { offchain: false })).kind,
            wit::OutcomeKind::Final(wit::FinalResolution {
                settled: false,
                offchain: false
            })
        );
    }

    #[test]
    fn a_time_before_the_epoch_is_zero() {
        let mut o = outcome(OutcomeKind::ForwardFailed);
        o.at = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(to_wit(&o).at_unix_ms, 0);
    }
}
