//! What happened to a forwarded HTLC after htlcgate's verdict, typed from LND's
//! `routerrpc.HtlcEvent` (the pure mapping; the subscription is in `events.rs`).
//!
//! Which event LND sends, read from LND v0.21.2 (`htlcswitch/link.go`, `switch.go`,
//! `interceptable_switch.go`, `contractcourt/*_resolver.go`,
//! `routerrpc/subscribe_events.go`), for an HTLC that reached the interceptor:
//!
//! | htlcgate's answer | HTLC events, in order |
//! |---|---|
//! | RESUME / RESUME_MODIFIED, forwarded, settled downstream | `ForwardEvent` -> `SettleEvent` -> `FinalHtlcEvent{settled, offchain}` |
//! | RESUME, forwarded, failed downstream | `ForwardEvent` -> `ForwardFailEvent` -> `FinalHtlcEvent{!settled, offchain}` |
//! | RESUME, refused at this node (policy, balance, link down) | `LinkFailEvent` (wire code, detail, text) -> `FinalHtlcEvent{!settled, offchain}` |
//! | FAIL (or LND failing it itself: no interceptor with `requireinterceptor`, expiry too soon, `auto_fail_height`) | `ForwardFailEvent` (no detail: LND resolves it like a downstream failure, without a link error) -> `FinalHtlcEvent{!settled, offchain}` |
//! | SETTLE | `SettleEvent` (our preimage) -> `FinalHtlcEvent{settled, offchain}` |
//! | any, incoming channel force-closed | `FinalHtlcEvent{settled?, !offchain}` once the on-chain resolution is final |
//!
//! `ForwardEvent`, `ForwardFailEvent`, `SettleEvent` and `LinkFailEvent` carry
//! `event_type` FORWARD and both circuit keys; for an HTLC resolved at this node
//! (FAIL, SETTLE, LinkFail) the outgoing key is the requested outgoing channel with
//! htlc id 0, which is not a real index. `FinalHtlcEvent` carries only the incoming
//! key and `event_type` UNKNOWN (LND sets no type), and LND sends it for every
//! incoming HTLC, forwards and receives alike. Sends and receives (`event_type` SEND
//! / RECEIVE) are not forwards and are dropped here.

use std::time::{Duration, SystemTime};

use crate::circuit::{CircuitKey, Scid};
use crate::lnd::proto::lnrpc::failure::FailureCode;
use crate::lnd::proto::routerrpc::htlc_event::{Event, EventType};
use crate::lnd::proto::routerrpc::{FailureDetail, HtlcEvent, HtlcInfo};

/// The amounts and expiries LND reports with a forward or a link failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HtlcAmounts {
    /// Amount of the incoming HTLC, msat (0 when LND does not know it).
    pub incoming_msat: u64,
    /// Amount of the outgoing HTLC, msat (0 for failures before the onion was read).
    pub outgoing_msat: u64,
    /// CLTV expiry of the incoming HTLC (block height).
    pub incoming_expiry: u32,
    /// CLTV expiry of the outgoing HTLC (block height).
    pub outgoing_expiry: u32,
}

impl From<&HtlcInfo> for HtlcAmounts {
    fn from(info: &HtlcInfo) -> Self {
        HtlcAmounts {
            incoming_msat: info.incoming_amt_msat,
            outgoing_msat: info.outgoing_amt_msat,
            incoming_expiry: info.incoming_timelock,
            outgoing_expiry: info.outgoing_timelock,
        }
    }
}

/// What happened, one per LND event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `ForwardEvent`: the HTLC was added to the outgoing channel (not final yet).
    Forwarded {
        /// Amounts and expiries in and out.
        amounts: HtlcAmounts,
    },
    /// `SettleEvent`: settled, downstream or by htlcgate's SETTLE (not final until
    /// [`OutcomeKind::FinalSettled`]).
    Settled {
        /// The preimage revealed.
        preimage: [u8; 32],
    },
    /// `ForwardFailEvent`: failed back without a link error at this node: failed
    /// downstream, or by htlcgate's FAIL or LND's own fail of an intercepted HTLC.
    /// LND gives no reason.
    ForwardFailed,
    /// `LinkFailEvent`: this node refused the HTLC (forwarding policy, balance,
    /// outgoing link not eligible, ...), with LND's reasons.
    LinkFailed {
        /// The BOLT 4 failure code sent back, as LND's `lnrpc.Failure.FailureCode`
        /// number (see [`OutcomeKind::wire_failure_code`]).
        wire_failure: i32,
        /// LND's failure detail.
        detail: FailureDetail,
        /// LND's text for the failure.
        failure_string: String,
        /// Amounts and expiries LND had.
        amounts: HtlcAmounts,
    },
    /// `FinalHtlcEvent{settled: true}`: the incoming HTLC is irrevocably settled.
    FinalSettled {
        /// Resolved off-chain (false: on-chain, after a force close).
        offchain: bool,
    },
    /// `FinalHtlcEvent{settled: false}`: the incoming HTLC is irrevocably failed.
    FinalFailed {
        /// Resolved off-chain (false: on-chain, after a force close).
        offchain: bool,
    },
}

impl OutcomeKind {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            OutcomeKind::Forwarded { .. } => "forwarded",
            OutcomeKind::Settled { .. } => "settled",
            OutcomeKind::ForwardFailed => "forward_failed",
            OutcomeKind::LinkFailed { .. } => "link_failed",
            OutcomeKind::FinalSettled { .. } => "final_settled",
            OutcomeKind::FinalFailed { .. } => "final_failed",
        }
    }

    /// Whether this is the last event LND sends for the HTLC.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OutcomeKind::FinalSettled { .. } | OutcomeKind::FinalFailed { .. }
        )
    }

    /// The wire failure of a [`OutcomeKind::LinkFailed`] as LND's enum, `None` for
    /// other kinds or a number this build does not know.
    pub fn wire_failure_code(&self) -> Option<FailureCode> {
        match self {
            OutcomeKind::LinkFailed { wire_failure, .. } => {
                FailureCode::try_from(*wire_failure).ok()
            }
            _ => None,
        }
    }
}

/// One outcome of a forwarded HTLC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtlcOutcome {
    /// The incoming circuit key: the key the interceptor saw and the journal holds.
    pub key: CircuitKey,
    /// The outgoing channel and HTLC index, if LND named one (see the module doc
    /// for when the index is not real); `None` for final events.
    pub outgoing: Option<CircuitKey>,
    /// What happened.
    pub kind: OutcomeKind,
    /// When it happened, by LND's clock.
    pub at: SystemTime,
}

impl HtlcOutcome {
    /// The outgoing channel, if any.
    pub fn outgoing_scid(&self) -> Option<Scid> {
        self.outgoing.map(|k| Scid(k.chan_id))
    }
}

/// What an [`HtlcEvent`] means to htlcgate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// An outcome of a forward.
    Outcome(HtlcOutcome),
    /// LND's first message on a new subscription: events flow from now on.
    Subscribed,
    /// Not about a forward (a send, a receive) or malformed: dropped.
    Ignored(&'static str),
}

/// Maps one LND event (see the module doc for the rules).
pub fn map_event(event: &HtlcEvent) -> Mapped {
    let Some(inner) = &event.event else {
        return Mapped::Ignored("event without a body");
    };
    let key = CircuitKey {
        chan_id: event.incoming_channel_id,
        htlc_id: event.incoming_htlc_id,
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(event.timestamp_ns);
    let kind = match inner {
        Event::SubscribedEvent(_) => return Mapped::Subscribed,
        Event::FinalHtlcEvent(f) => {
            // LND sets no event type on final events and sends them for receives
            // too: the consumer matches them by key.
            let kind = if f.settled {
                OutcomeKind::FinalSettled {
                    offchain: f.offchain,
                }
            } else {
                OutcomeKind::FinalFailed {
                    offchain: f.offchain,
                }
            };
            return Mapped::Outcome(HtlcOutcome {
                key,
                outgoing: None,
                kind,
                at,
            });
        }
        _ if event.event_type != EventType::Forward as i32 => {
            return Mapped::Ignored(match EventType::try_from(event.event_type) {
                Ok(EventType::Send) => "a send, not a forward",
                Ok(EventType::Receive) => "a receive, not a forward",
                _ => "an event of unknown type",
            });
        }
        Event::ForwardEvent(f) => OutcomeKind::Forwarded {
            amounts: f.info.as_ref().map(HtlcAmounts::from).unwrap_or_default(),
        },
        Event::ForwardFailEvent(_) => OutcomeKind::ForwardFailed,
        Event::SettleEvent(s) => match <[u8; 32]>::try_from(s.preimage.as_slice()) {
            Ok(preimage) => OutcomeKind::Settled { preimage },
            Err(_) => return Mapped::Ignored("a settle event whose preimage is not 32 bytes"),
        },
        Event::LinkFailEvent(l) => OutcomeKind::LinkFailed {
            wire_failure: l.wire_failure,
            detail: FailureDetail::try_from(l.failure_detail).unwrap_or(FailureDetail::Unknown),
            failure_string: l.failure_string.clone(),
            amounts: l.info.as_ref().map(HtlcAmounts::from).unwrap_or_default(),
        },
    };
    let outgoing = (event.outgoing_channel_id != 0).then_some(CircuitKey {
        chan_id: event.outgoing_channel_id,
        htlc_id: event.outgoing_htlc_id,
    });
    Mapped::Outcome(HtlcOutcome {
        key,
        outgoing,
        kind,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::proto::routerrpc::{
        FinalHtlcEvent, ForwardEvent, ForwardFailEvent, LinkFailEvent, SettleEvent, SubscribedEvent,
    };

    fn event(kind: EventType, body: Event) -> HtlcEvent {
        HtlcEvent {
            incoming_channel_id: 800_000 << 40,
            outgoing_channel_id: 800_001 << 40,
            incoming_htlc_id: 7,
            outgoing_htlc_id: 3,
            timestamp_ns: 1_700_000_000_000_000_000,
            event_type: kind as i32,
            event: Some(body),
        }
    }

    fn outcome(mapped: Mapped) -> HtlcOutcome {
        match mapped {
            Mapped::Outcome(o) => o,
            other => panic!("expected an outcome, got {other:?}"),
        }
    }

    fn info() -> HtlcInfo {
        HtlcInfo {
            incoming_timelock: 800_144,
            outgoing_timelock: 800_104,
            incoming_amt_msat: 1_000_000,
            outgoing_amt_msat: 999_000,
        }
    }

    #[test]
    fn a_forward_event_is_forwarded_with_both_keys_and_amounts() {
        let o = outcome(map_event(&event(
            EventType::Forward,
            Event::ForwardEvent(ForwardEvent { info: Some(info()) }),
        )));
        assert_eq!(o.key.to_string(), format!("{}:7", 800_000u64 << 40));
        assert_eq!(
            o.outgoing,
            Some(CircuitKey {
                chan_id: 800_001 << 40,
                htlc_id: 3
            })
        );
        assert_eq!(o.outgoing_scid().unwrap().to_string(), "800001x0x0");
        assert_eq!(
            o.kind,
            OutcomeKind::Forwarded {
                amounts: HtlcAmounts {
                    incoming_msat: 1_000_000,
                    outgoing_msat: 999_000,
                    incoming_expiry: 800_144,
                    outgoing_expiry: 800_104,
                }
            }
        );
        assert_eq!(
            o.at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(!o.kind.is_final());
    }

    #[test]
    fn a_settle_event_carries_the_preimage() {
        let o = outcome(map_event(&event(
            EventType::Forward,
            Event::SettleEvent(SettleEvent {
                preimage: vec![9; 32],
            }),
        )));
        assert_eq!(o.kind, OutcomeKind::Settled { preimage: [9; 32] });
        let bad = map_event(&event(
            EventType::Forward,
            Event::SettleEvent(SettleEvent {
                preimage: vec![9; 31],
            }),
        ));
        assert!(matches!(bad, Mapped::Ignored(_)), "{bad:?}");
    }

    #[test]
    fn a_forward_fail_event_is_forward_failed() {
        let o = outcome(map_event(&event(
            EventType::Forward,
            Event::ForwardFailEvent(ForwardFailEvent {}),
        )));
        assert_eq!(o.kind, OutcomeKind::ForwardFailed);
        assert_eq!(o.kind.name(), "forward_failed");
    }

    #[test]
    fn a_link_fail_event_keeps_lnd_s_code_detail_and_text() {
        let o = outcome(map_event(&event(
            EventType::Forward,
            Event::LinkFailEvent(LinkFailEvent {
                info: Some(info()),
                wire_failure: FailureCode::FeeInsufficient as i32,
                failure_detail: FailureDetail::InsufficientBalance as i32,
                failure_string: "insufficient bandwidth to route htlc".to_owned(),
            }),
        )));
        match &o.kind {
            OutcomeKind::LinkFailed {
                wire_failure,
                detail,
                failure_string,
                amounts,
            } => {
                assert_eq!(*wire_failure, 12);
                assert_eq!(*detail, FailureDetail::InsufficientBalance);
                assert_eq!(failure_string, "insufficient bandwidth to route htlc");
                assert_eq!(amounts.outgoing_msat, 999_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            o.kind.wire_failure_code(),
            Some(FailureCode::FeeInsufficient)
        );
        // A detail number from a newer LND is LND's own "unknown".
        let o = outcome(map_event(&event(
            EventType::Forward,
            Event::LinkFailEvent(LinkFailEvent {
                info: None,
                wire_failure: 4242,
                failure_detail: 999,
                failure_string: String::new(),
            }),
        )));
        assert!(matches!(
            o.kind,
            OutcomeKind::LinkFailed {
                detail: FailureDetail::Unknown,
                ..
            }
        ));
        assert_eq!(o.kind.wire_failure_code(), None);
    }

    #[test]
    fn final_events_map_whatever_their_type_and_have_no_outgoing_key() {
        for (settled, offchain) in [(true, true), (false, true), (true, false), (false, false)] {
            let mut ev = event(
                EventType::Unknown,
                Event::FinalHtlcEvent(FinalHtlcEvent { settled, offchain }),
            );
            ev.outgoing_channel_id = 0;
            ev.outgoing_htlc_id = 0;
            let o = outcome(map_event(&ev));
            assert!(o.kind.is_final());
            assert_eq!(o.outgoing, None);
            let expected = if settled {
                OutcomeKind::FinalSettled { offchain }
            } else {
                OutcomeKind::FinalFailed { offchain }
            };
            assert_eq!(o.kind, expected);
        }
    }

    #[test]
    fn sends_receives_and_untyped_non_final_events_are_ignored() {
        for kind in [EventType::Send, EventType::Receive, EventType::Unknown] {
            let mapped = map_event(&event(kind, Event::ForwardFailEvent(ForwardFailEvent {})));
            assert!(matches!(mapped, Mapped::Ignored(_)), "{kind:?}: {mapped:?}");
        }
        let mut empty = event(
            EventType::Forward,
            Event::ForwardFailEvent(ForwardFailEvent {}),
        );
        empty.event = None;
        assert!(matches!(map_event(&empty), Mapped::Ignored(_)));
    }

    #[test]
    fn the_subscribed_event_is_recognised() {
        let mut ev = event(
            EventType::Unknown,
            Event::SubscribedEvent(SubscribedEvent {}),
        );
        ev.incoming_channel_id = 0;
        assert_eq!(map_event(&ev), Mapped::Subscribed);
    }

    #[test]
    fn an_outgoing_channel_of_zero_is_no_outgoing_key() {
        let mut ev = event(
            EventType::Forward,
            Event::LinkFailEvent(LinkFailEvent::default()),
        );
        ev.outgoing_channel_id = 0;
        assert_eq!(outcome(map_event(&ev)).outgoing, None);
    }
}
