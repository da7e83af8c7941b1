// Command go-fee-floor is the fee-floor policy in Go: it fails forwards that pay
// this node less than a minimum fee. It decides exactly like the Rust
// plugins/fee-floor (tests/cross_language.rs checks it on 1,000 HTLCs).
//
// The floor for a forward of `outgoing` msat is
// base_msat + ppm * outgoing / 1_000_000 (rounded down, like LND's own fee
// schedule); a forward whose fee (incoming - outgoing) is below it is failed with
// TEMPORARY_CHANNEL_FAILURE. Everything else, and every HTLC for this node, gets
// next: this plugin only ever says no.
//
// Config (both optional, default 0): base_msat (msat), ppm (parts per million of
// the outgoing amount).
//
// Build: see README.md (scripts/build-plugins builds it into
// target/wasm-plugins/go-fee-floor.wasm).
package main

import (
	"math/bits"
	"strconv"

	htlcgate "htlcgate.dev/sdk/go"
)

// feeFloor is the configured floor.
type feeFloor struct {
	// baseMsat is the fixed part of the minimum fee.
	baseMsat uint64
	// ppm is the proportional part, parts per million of the outgoing amount.
	ppm uint64
}

// paysEnough reports whether forwarding outgoing msat for incoming msat pays at
// least the floor. Exact for every uint64: ppm*outgoing is a 128-bit product,
// and a floor of 2^64 or more is above any fee.
func (f *feeFloor) paysEnough(incoming, outgoing uint64) bool {
	if incoming < outgoing {
		return false // a negative fee never pays
	}
	fee := incoming - outgoing
	hi, lo := bits.Mul64(f.ppm, outgoing)
	// 128-bit division by 10^6 in two steps (bits.Div64 needs hi < divisor).
	quotientHi, rem := hi/1_000_000, hi%1_000_000
	quotientLo, _ := bits.Div64(rem, lo, 1_000_000)
	if quotientHi != 0 {
		return false
	}
	floor, carry := bits.Add64(f.baseMsat, quotientLo, 0)
	return carry == 0 && fee >= floor
}

// Decide fails forwards below the floor and has no opinion on the rest.
func (f *feeFloor) Decide(h *htlcgate.Htlc) htlcgate.Verdict {
	// A payment to this node earns no forwarding fee: not ours to judge.
	if h.IsFinalHop() {
		return htlcgate.Next()
	}
	if f.paysEnough(h.IncomingAmountMsat, h.OutgoingAmountMsat) {
		return htlcgate.Next()
	}
	htlcgate.Debug(h.Key.String() + ": fee below floor for " +
		strconv.FormatUint(h.OutgoingAmountMsat, 10) + " msat out")
	// Failing a forward is always safe for funds: the HTLC goes back to the
	// sender and this node only forgoes the (too small) fee.
	return htlcgate.FailTemporary()
}

func newFeeFloor(cfg htlcgate.Config) (htlcgate.Decider, error) {
	if err := cfg.DenyUnknown("base_msat", "ppm"); err != nil {
		return nil, err
	}
	base, err := cfg.Uint64Or("base_msat", 0)
	if err != nil {
		return nil, err
	}
	ppm, err := cfg.Uint64Or("ppm", 0)
	if err != nil {
		return nil, err
	}
	return &feeFloor{baseMsat: base, ppm: ppm}, nil
}

func init() { htlcgate.Register(newFeeFloor) }

// main is required by Go and never called: a plugin is a reactor.
func main() {}
