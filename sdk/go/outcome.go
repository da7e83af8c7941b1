package htlcgate

import "strconv"

// OutcomeKind says what happened to an HTLC (the world's `outcome-kind` case).
// A forward goes OutcomeForwarded -> OutcomeSettled or OutcomeForwardFailed ->
// OutcomeFinal; a refused one OutcomeLinkFailed -> OutcomeFinal; one that
// htlcgate failed or settled OutcomeForwardFailed / OutcomeSettled ->
// OutcomeFinal.
type OutcomeKind uint8

const (
	// OutcomeForwarded: added to the outgoing channel (not final); Amounts
	// are set.
	OutcomeForwarded OutcomeKind = iota
	// OutcomeSettled: settled downstream or by a Settle verdict; Preimage is
	// set. Not final until OutcomeFinal.
	OutcomeSettled
	// OutcomeForwardFailed: failed back without a link error at this node
	// (downstream, a Fail verdict, or LND itself; LND gives no reason).
	OutcomeForwardFailed
	// OutcomeLinkFailed: this node refused it after the verdict (policy,
	// balance, link down); LinkFailure and Amounts are set.
	OutcomeLinkFailed
	// OutcomeFinal: the incoming HTLC is irrevocably resolved, the last
	// event; Settled and Offchain are set.
	OutcomeFinal
)

// String is the kind's name as in the WIT world.
func (k OutcomeKind) String() string {
	switch k {
	case OutcomeForwarded:
		return "forwarded"
	case OutcomeSettled:
		return "settled"
	case OutcomeForwardFailed:
		return "forward-failed"
	case OutcomeLinkFailed:
		return "link-failed"
	case OutcomeFinal:
		return "final"
	}
	return "outcome-kind(" + strconv.Itoa(int(k)) + ")"
}

// HtlcAmounts are the amounts (msat) and expiries (block heights) LND reports
// with a forward or a link failure (routerrpc.HtlcInfo).
type HtlcAmounts struct {
	// IncomingAmountMsat is the incoming HTLC's amount (0 when LND does not
	// know it).
	IncomingAmountMsat uint64
	// OutgoingAmountMsat is the outgoing HTLC's amount (0 for failures before
	// the onion was read).
	OutgoingAmountMsat uint64
	// IncomingExpiry is the incoming HTLC's CLTV expiry.
	IncomingExpiry uint32
	// OutgoingExpiry is the outgoing HTLC's CLTV expiry.
	OutgoingExpiry uint32
}

// LinkFailure is why this node refused to forward an HTLC (LND's
// LinkFailEvent); its amounts are in Outcome.Amounts.
type LinkFailure struct {
	// WireFailureCode is the BOLT 4 failure sent back, as LND's
	// lnrpc.Failure.FailureCode number (e.g. 1007 TEMPORARY_CHANNEL_FAILURE,
	// 12 FEE_INSUFFICIENT).
	WireFailureCode int32
	// Detail is LND's failure detail name (e.g. "INSUFFICIENT_BALANCE").
	Detail string
	// Message is LND's text for the failure.
	Message string
}

// Outcome is one event about an HTLC htlcgate decided (or a plugin held), as
// LND reports it (the world's `htlc-outcome`). It is the plugin's to keep.
type Outcome struct {
	// Key is the incoming channel and HTLC index: the Htlc.Key Decide saw.
	Key CircuitKey
	// OutgoingKey is the outgoing channel and HTLC index when HasOutgoingKey
	// (for HTLCs resolved at this node the index is 0 and not real).
	OutgoingKey CircuitKey
	// HasOutgoingKey is false when LND names no outgoing HTLC (OutcomeFinal).
	HasOutgoingKey bool
	// Kind is what happened; it says which of the fields below are set.
	Kind OutcomeKind
	// Amounts are LND's amounts (OutcomeForwarded, OutcomeLinkFailed).
	Amounts HtlcAmounts
	// Preimage is the 32-byte preimage (OutcomeSettled).
	Preimage []byte
	// LinkFailure is why this node refused the forward (OutcomeLinkFailed).
	LinkFailure LinkFailure
	// Settled is true when the HTLC was settled, false when failed
	// (OutcomeFinal).
	Settled bool
	// Offchain is true when it was resolved off-chain, false after a force
	// close (OutcomeFinal).
	Offchain bool
	// AtUnixMs is when it happened, by LND's clock (ms since the Unix epoch).
	AtUnixMs uint64
}

// OutcomeObserver is a Decider that also wants to know how the HTLCs went on
// after its verdicts: htlcgate calls Outcome for every LND event about an HTLC
// it decided (also those decided before a restart) and for HTLCs LND resolved
// by itself while a plugin held them. Calls come on the same instance and
// queue as Decide, under the same fuel and time limits; a panic there is
// logged and counted and never changes a verdict. LND does not replay events
// sent while htlcgate was not subscribed: a plugin that counts in-flight
// HTLCs should also expire its entries (e.g. once BlockHeight passes their
// IncomingExpiry).
//
// The world's `outcome` export is optional, and a Go module exports it only
// when the plugin imports package htlcgate.dev/sdk/go/outcome:
//
//	import _ "htlcgate.dev/sdk/go/outcome"
//
// A plugin without that import is never called for outcomes (and costs
// nothing per event); one whose Decider is an OutcomeObserver without it is
// refused at init with that line as the fix.
type OutcomeObserver interface {
	// Outcome is told one event about an HTLC.
	Outcome(o *Outcome)
}
