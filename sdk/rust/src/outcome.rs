//! What happened to an HTLC after the chain decided it (or while a plugin held
//! it), from LND's `SubscribeHtlcEvents`.
//!
//! The host calls [`Plugin::outcome`](crate::Plugin::outcome) once per LND event
//! about an HTLC whose verdict it gave (also one decided before a restart), and
//! for HTLCs LND resolved by itself while a plugin held them. A forward goes
//! [`Forwarded`](OutcomeKind::Forwarded) -> [`Settled`](OutcomeKind::Settled) or
//! [`ForwardFailed`](OutcomeKind::ForwardFailed) -> [`Final`](OutcomeKind::Final);
//! a refused one [`LinkFailed`](OutcomeKind::LinkFailed) -> `Final`; one that
//! htlcgate failed or settled `ForwardFailed` / `Settled` -> `Final`.
//!
//! LND does not replay events sent while htlcgate was not subscribed (for
//! example while it restarted), so a plugin that counts in-flight HTLCs must
//! also expire its entries, e.g. once [`node::block_height`](crate::node::block_height)
//! passes their [`incoming_expiry`](crate::Htlc::incoming_expiry).

use crate::bindings;
use crate::CircuitKey;

/// The amounts and expiries LND reports with a forward or a link failure
/// (`routerrpc.HtlcInfo`): `incoming_amount_msat`, `outgoing_amount_msat`
/// (0 when LND does not know them), `incoming_expiry`, `outgoing_expiry`
/// (block heights).
pub use bindings::HtlcAmounts;

/// One event about an HTLC.
///
/// ```
/// use htlcgate_sdk::{CircuitKey, Outcome, OutcomeKind, Scid};
/// let key = CircuitKey::new(Scid(7), 3);
/// let failed = Outcome::new(key, OutcomeKind::ForwardFailed);
/// assert!(failed.is_resolution());
/// let last = Outcome::new(key, OutcomeKind::Final { settled: false, offchain: true });
/// assert!(last.kind.is_final());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The incoming channel and HTLC index: the key `decide` saw.
    pub incoming: CircuitKey,
    /// The outgoing channel and HTLC index when LND names one (for an HTLC
    /// resolved at this node the index is 0 and not real); `None` for
    /// [`OutcomeKind::Final`].
    pub outgoing: Option<CircuitKey>,
    /// What happened.
    pub kind: OutcomeKind,
    /// When, by LND's clock: milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// What happened to the HTLC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Added to the outgoing channel: in flight there (not a resolution).
    Forwarded(HtlcAmounts),
    /// Settled downstream, or by a settle verdict: the preimage, when LND
    /// reported one (older LND versions do not). Not final until
    /// [`Final`](OutcomeKind::Final).
    Settled(Option<[u8; 32]>),
    /// Failed back without a link error at this node: failed downstream, or by
    /// a fail verdict (also the host's `on_hold_expiry` / `on_budget` verdict),
    /// or by LND itself (LND gives no reason).
    ForwardFailed,
    /// This node refused to forward it after the verdict (policy, balance, link
    /// down): LND's `LinkFailEvent`.
    LinkFailed {
        /// The BOLT 4 failure sent back, as LND's `lnrpc.Failure.FailureCode`
        /// number (e.g. 1007 = TEMPORARY_CHANNEL_FAILURE, 12 =
        /// FEE_INSUFFICIENT).
        wire_failure_code: i32,
        /// LND's failure detail name (`routerrpc.FailureDetail`, e.g.
        /// "INSUFFICIENT_BALANCE").
        detail: String,
        /// LND's text for the failure.
        message: String,
        /// Amounts and expiries LND had.
        amounts: HtlcAmounts,
    },
    /// The incoming HTLC is irrevocably resolved: the last event about it.
    Final {
        /// Settled (true) or failed (false).
        settled: bool,
        /// Resolved off-chain (false: on-chain, after a force close).
        offchain: bool,
    },
}

impl OutcomeKind {
    /// True when the HTLC is no longer in flight at its outgoing channel:
    /// settled, forward-failed, link-failed or final (everything but
    /// [`Forwarded`](OutcomeKind::Forwarded)). An HTLC gets several such
    /// events (e.g. settled, then final): count the first, ignore the rest.
    pub fn is_resolution(&self) -> bool {
        !matches!(self, OutcomeKind::Forwarded(_))
    }

    /// True for [`Final`](OutcomeKind::Final): no event about this HTLC follows.
    pub fn is_final(&self) -> bool {
        matches!(self, OutcomeKind::Final { .. })
    }

    /// The event's name, for logs: `forwarded`, `settled`, `forward-failed`,
    /// `link-failed` or `final`.
    pub fn name(&self) -> &'static str {
        match self {
            OutcomeKind::Forwarded(_) => "forwarded",
            OutcomeKind::Settled(_) => "settled",
            OutcomeKind::ForwardFailed => "forward-failed",
            OutcomeKind::LinkFailed { .. } => "link-failed",
            OutcomeKind::Final { .. } => "final",
        }
    }
}

impl Outcome {
    /// An outcome of `kind` for `incoming`, with no outgoing key and time 0:
    /// for tests (the fields are public to set the rest).
    pub fn new(incoming: CircuitKey, kind: OutcomeKind) -> Outcome {
        Outcome {
            incoming,
            outgoing: None,
            kind,
            at_unix_ms: 0,
        }
    }

    /// True when the HTLC is no longer in flight at its outgoing channel; see
    /// [`OutcomeKind::is_resolution`].
    pub fn is_resolution(&self) -> bool {
        self.kind.is_resolution()
    }

    /// Converts the record the host passed to `outcome` (moves its strings).
    pub(crate) fn from_raw(raw: bindings::HtlcOutcome) -> Outcome {
        let kind = match raw.kind {
            bindings::OutcomeKind::Forwarded(amounts) => OutcomeKind::Forwarded(amounts),
            bindings::OutcomeKind::Settled(preimage) => {
                OutcomeKind::Settled(<[u8; 32]>::try_from(preimage.as_slice()).ok())
            }
            bindings::OutcomeKind::ForwardFailed => OutcomeKind::ForwardFailed,
            bindings::OutcomeKind::LinkFailed(failure) => OutcomeKind::LinkFailed {
                wire_failure_code: failure.wire_failure_code,
                detail: failure.detail,
                message: failure.message,
                amounts: failure.amounts,
            },
            bindings::OutcomeKind::Final(resolution) => OutcomeKind::Final {
                settled: resolution.settled,
                offchain: resolution.offchain,
            },
        };
        Outcome {
            incoming: raw.incoming_circuit_key,
            outgoing: raw.outgoing_circuit_key,
            kind,
            at_unix_ms: raw.at_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scid;

    fn amounts() -> HtlcAmounts {
        HtlcAmounts {
            incoming_amount_msat: 1_001,
            outgoing_amount_msat: 1_000,
            incoming_expiry: 800_144,
            outgoing_expiry: 800_104,
        }
    }

    fn raw(kind: bindings::OutcomeKind) -> bindings::HtlcOutcome {
        bindings::HtlcOutcome {
            incoming_circuit_key: CircuitKey::new(Scid(5), 9),
            outgoing_circuit_key: Some(CircuitKey::new(Scid(6), 1)),
            kind,
            at_unix_ms: 42,
        }
    }

    #[test]
    fn only_forwarded_is_not_a_resolution() {
        let kinds = [
            (OutcomeKind::Forwarded(amounts()), false),
            (OutcomeKind::Settled(Some([1; 32])), true),
            (OutcomeKind::ForwardFailed, true),
            (
                OutcomeKind::LinkFailed {
                    wire_failure_code: 1007,
                    detail: "INSUFFICIENT_BALANCE".into(),
                    message: String::new(),
                    amounts: amounts(),
                },
                true,
            ),
            (
                OutcomeKind::Final {
                    settled: true,
                    offchain: true,
                },
                true,
            ),
        ];
        for (kind, resolution) in kinds {
            assert_eq!(kind.is_resolution(), resolution, "{}", kind.name());
            assert_eq!(kind.is_final(), kind.name() == "final");
        }
    }

    #[test]
    fn converts_the_host_record() {
        let o = Outcome::from_raw(raw(bindings::OutcomeKind::Settled(vec![7; 32])));
        assert_eq!(o.incoming, CircuitKey::new(Scid(5), 9));
        assert_eq!(o.outgoing, Some(CircuitKey::new(Scid(6), 1)));
        assert_eq!(o.kind, OutcomeKind::Settled(Some([7; 32])));
        assert_eq!(o.at_unix_ms, 42);
        // LND versions without the preimage in the event send none.
        let o = Outcome::from_raw(raw(bindings::OutcomeKind::Settled(vec![])));
        assert_eq!(o.kind, OutcomeKind::Settled(None));
        let o = Outcome::from_raw(raw(bindings::OutcomeKind::LinkFailed(
            bindings::LinkFailure {
                wire_failure_code: 12,
                detail: "FEE_INSUFFICIENT".into(),
                message: "fee".into(),
                amounts: amounts(),
            },
        )));
        assert_eq!(
            o.kind,
            OutcomeKind::LinkFailed {
                wire_failure_code: 12,
                detail: "FEE_INSUFFICIENT".into(),
                message: "fee".into(),
                amounts: amounts(),
            }
        );
        let o = Outcome::from_raw(bindings::HtlcOutcome {
            outgoing_circuit_key: None,
            ..raw(bindings::OutcomeKind::Final(bindings::FinalResolution {
                settled: false,
                offchain: false,
            }))
        });
        assert_eq!(
            o.kind,
            OutcomeKind::Final {
                settled: false,
                offchain: false
            }
        );
        assert_eq!(o.outgoing, None);
        assert_eq!(
            Outcome::from_raw(raw(bindings::OutcomeKind::ForwardFailed)).kind,
            OutcomeKind::ForwardFailed
        );
        assert_eq!(
            Outcome::from_raw(raw(bindings::OutcomeKind::Forwarded(amounts()))).kind,
            OutcomeKind::Forwarded(amounts())
        );
    }
}
