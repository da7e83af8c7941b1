//go:build wasip1

package outcome

import "htlcgate.dev/sdk/go/internal/bridge"

// export is the world's `outcome(outcome: htlc-outcome)`. The record flattens
// to exactly 16 core values (the canonical ABI's limit for direct parameters),
// so they arrive as parameters, not through a pointer; package htlcgate's
// outcomeFlat documents each slot.
//
//go:wasmexport outcome
func export(inChan, inHtlc uint64, outSome uint32, outChan, outHtlc uint64,
	kind uint32, p0, p1 uint64, p2, p3, p4 uint32, p5, p6 uint64, p7, p8 uint32,
	atUnixMs uint64) {
	bridge.Outcome(&[16]uint64{
		inChan, inHtlc,
		uint64(outSome), outChan, outHtlc,
		uint64(kind), p0, p1, uint64(p2), uint64(p3), uint64(p4), p5, p6, uint64(p7), uint64(p8),
		atUnixMs,
	})
}
