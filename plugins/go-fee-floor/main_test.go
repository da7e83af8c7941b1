package main

import (
	"testing"

	htlcgate "htlcgate.dev/sdk/go"
)

func floor(base, ppm uint64) *feeFloor { return &feeFloor{baseMsat: base, ppm: ppm} }

func TestFeeExactlyAtTheFloorPasses(t *testing.T) {
	f := floor(1_000, 100) // floor for 1,000,000 out is 1,100
	if v := f.Decide(htlcgate.NewForward(1_001_100, 1_000_000)); !v.IsNext() {
		t.Fatalf("fee at the floor: got %v, want next", v)
	}
	if v := f.Decide(htlcgate.NewForward(1_001_099, 1_000_000)); !v.Equal(htlcgate.FailTemporary()) {
		t.Fatalf("fee one below: got %v, want fail", v)
	}
}

func TestExtremeAmountsAreExact(t *testing.T) {
	const max = ^uint64(0)
	f := floor(0, 1)
	out := uint64(18_446_725_626_983_924_632) // fee u64::MAX - out == floor exactly
	if !f.paysEnough(max, out) || f.paysEnough(max, out+1) {
		t.Fatal("boundary at u64::MAX is off by one")
	}
	if floor(max, max).paysEnough(max, 1) || !floor(max, max).paysEnough(max, 0) {
		t.Fatal("a floor above 2^64 must fail and one equal to u64::MAX pass")
	}
	if floor(0, 0).paysEnough(0, 1) {
		t.Fatal("a negative fee never pays")
	}
}

func TestPaymentsToThisNodeGetNext(t *testing.T) {
	h := htlcgate.NewForward(5, 5)
	h.OutgoingChan = htlcgate.FinalHop
	if v := floor(1_000_000, 1_000_000).Decide(h); !v.IsNext() {
		t.Fatalf("got %v", v)
	}
}

func TestInitRefusesUnknownKeysAndBadNumbers(t *testing.T) {
	if _, err := newFeeFloor(htlcgate.NewConfig("base_sat", "1")); err == nil {
		t.Fatal("typo accepted")
	}
	_, err := newFeeFloor(htlcgate.NewConfig("base_msat", "abc"))
	if err == nil || err.Error() != "config key `base_msat`: expected an unsigned integer, got `abc`" {
		t.Fatalf("got %v", err)
	}
}
