package htlcgate

import (
	"bytes"
	"slices"
	"strconv"
)

// FailureCode is one of the only failure codes LND accepts from an interceptor
// (any other would end its stream, so none other can be expressed).
type FailureCode uint8

const (
	// TemporaryChannelFailure is BOLT 4's 0x1007: the usual "not now".
	TemporaryChannelFailure FailureCode = iota
	// InvalidOnionHmac is BOLT 4's 0x8005.
	InvalidOnionHmac
	// InvalidOnionKey is BOLT 4's 0x8006.
	InvalidOnionKey
	// InvalidOnionVersion is BOLT 4's 0x8004.
	InvalidOnionVersion
)

// String is the code's name as in the WIT world.
func (c FailureCode) String() string {
	switch c {
	case TemporaryChannelFailure:
		return "temporary-channel-failure"
	case InvalidOnionHmac:
		return "invalid-onion-hmac"
	case InvalidOnionKey:
		return "invalid-onion-key"
	case InvalidOnionVersion:
		return "invalid-onion-version"
	}
	return "failure-code(" + strconv.Itoa(int(c)) + ")"
}

// Kind says which answer a Verdict is.
type Kind uint8

const (
	// KindNext is no opinion: the next plugin decides.
	KindNext Kind = iota
	// KindResume forwards the HTLC unchanged.
	KindResume
	// KindFail fails it back with a FailureCode.
	KindFail
	// KindSettle settles it here with a preimage.
	KindSettle
	// KindResumeModified forwards it with changes.
	KindResumeModified
	// KindHold keeps it held at LND and asks again after HoldMs.
	KindHold
)

// Verdict is a plugin's answer for one HTLC. Build it with Next, Resume, Fail,
// FailTemporary, Settle, ResumeModified or Hold. The host checks every verdict before
// it reaches LND (a settle's preimage must hash to the payment hash, record keys
// must be >= 65536 and distinct, amounts not 0): a bad one is a plugin fault,
// never a lost HTLC.
type Verdict struct {
	// Kind is which answer this is.
	Kind Kind
	// Code is the failure code (KindFail).
	Code FailureCode
	// Preimage is the settle preimage (KindSettle; 32 bytes).
	Preimage []byte
	// InAmountMsat, if not nil, changes the incoming wire amount
	// (KindResumeModified).
	InAmountMsat *uint64
	// OutAmountMsat, if not nil, changes the amount to forward
	// (KindResumeModified).
	OutAmountMsat *uint64
	// WireRecords are TLV records set on the outgoing update_add_htlc
	// (KindResumeModified); they merge into the existing ones.
	WireRecords Records
	// HoldMs is how long to hold before asking again, in milliseconds
	// (KindHold).
	HoldMs uint32
}

// Next has no opinion: the following plugin decides (or the chain's default
// verdict applies when this plugin is the last).
func Next() Verdict { return Verdict{Kind: KindNext} }

// Resume forwards the HTLC unchanged (RESUME).
func Resume() Verdict { return Verdict{Kind: KindResume} }

// Fail fails the HTLC back to the sender with code (FAIL).
func Fail(code FailureCode) Verdict { return Verdict{Kind: KindFail, Code: code} }

// FailTemporary fails the HTLC back with TEMPORARY_CHANNEL_FAILURE, the usual
// "not now". Failing a forward is always safe for funds: the HTLC goes back to
// the sender.
func FailTemporary() Verdict { return Fail(TemporaryChannelFailure) }

// Settle settles the HTLC here with preimage (SETTLE). The host checks that
// sha256(preimage) is the payment hash.
func Settle(preimage [32]byte) Verdict {
	return Verdict{Kind: KindSettle, Preimage: preimage[:]}
}

// SettleBytes is Settle for a preimage held as a slice; one that is not 32
// bytes is a plugin fault.
func SettleBytes(preimage []byte) Verdict {
	return Verdict{Kind: KindSettle, Preimage: preimage}
}

// ResumeModified forwards the HTLC with changes (RESUME_MODIFIED); add them
// with WithInAmountMsat, WithOutAmountMsat and WithWireRecord.
func ResumeModified() Verdict { return Verdict{Kind: KindResumeModified} }

// Hold keeps the HTLC held at LND (no answer yet) and asks this plugin again
// in ms milliseconds, with Htlc.Attempt one higher; the plugins before it are
// not asked again, unless the chain was reloaded meanwhile (then the new chain
// is asked from its start: a plugin that counts HTLCs should count each circuit
// key once). The host bounds every hold (`[chain] max_hold_ms`, default
// 60 s from the HTLC's arrival, and a margin before AutoFailHeight); at the
// bound the plugin's `on_hold_expiry` verdict (default: fail with
// temporary-channel-failure) is sent instead. Hold needs a host that speaks
// world 0.2.0 (htlcgate loads this SDK's plugins only there).
func Hold(ms uint32) Verdict { return Verdict{Kind: KindHold, HoldMs: ms} }

// WithInAmountMsat changes the incoming HTLC's wire amount (msat, not 0).
func (v Verdict) WithInAmountMsat(msat uint64) Verdict {
	v.InAmountMsat = &msat
	return v
}

// WithOutAmountMsat changes the amount to forward (msat, not 0).
func (v Verdict) WithOutAmountMsat(msat uint64) Verdict {
	v.OutAmountMsat = &msat
	return v
}

// WithWireRecord sets TLV record key (>= 65536) on the outgoing update_add_htlc.
func (v Verdict) WithWireRecord(key uint64, value []byte) Verdict {
	records := make(Records, len(v.WireRecords)+1)
	for k, val := range v.WireRecords {
		records[k] = val
	}
	records[key] = value
	v.WireRecords = records
	return v
}

// IsNext is true for Next.
func (v Verdict) IsNext() bool { return v.Kind == KindNext }

// Equal reports whether two verdicts are the same answer.
func (v Verdict) Equal(o Verdict) bool {
	if v.Kind != o.Kind {
		return false
	}
	switch v.Kind {
	case KindFail:
		return v.Code == o.Code
	case KindSettle:
		return bytes.Equal(v.Preimage, o.Preimage)
	case KindHold:
		return v.HoldMs == o.HoldMs
	case KindResumeModified:
		if !equalOpt(v.InAmountMsat, o.InAmountMsat) || !equalOpt(v.OutAmountMsat, o.OutAmountMsat) {
			return false
		}
		if len(v.WireRecords) != len(o.WireRecords) {
			return false
		}
		for k, val := range v.WireRecords {
			other, ok := o.WireRecords[k]
			if !ok || !bytes.Equal(val, other) {
				return false
			}
		}
	}
	return true
}

func equalOpt(a, b *uint64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// String names the verdict, e.g. "fail(temporary-channel-failure)".
func (v Verdict) String() string {
	switch v.Kind {
	case KindNext:
		return "next"
	case KindResume:
		return "resume"
	case KindFail:
		return "fail(" + v.Code.String() + ")"
	case KindSettle:
		return "settle(" + strconv.Itoa(len(v.Preimage)) + " bytes)"
	case KindResumeModified:
		s := "resume-modified("
		if v.InAmountMsat != nil {
			s += "in=" + strconv.FormatUint(*v.InAmountMsat, 10) + " "
		}
		if v.OutAmountMsat != nil {
			s += "out=" + strconv.FormatUint(*v.OutAmountMsat, 10) + " "
		}
		return s + strconv.Itoa(len(v.WireRecords)) + " records)"
	case KindHold:
		return "hold(" + strconv.FormatUint(uint64(v.HoldMs), 10) + " ms)"
	}
	return "verdict(" + strconv.Itoa(int(v.Kind)) + ")"
}

// sortedKeys lists a Records map's keys in ascending order, so that the host
// sees records in a stable order.
func sortedKeys(r Records) []uint64 {
	keys := make([]uint64, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
