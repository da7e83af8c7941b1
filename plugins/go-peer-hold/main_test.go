package main

import (
	"bytes"
	"encoding/binary"
	"testing"

	htlcgate "htlcgate.dev/sdk/go"
)

func counter(t *testing.T, key string) uint64 {
	t.Helper()
	v, found, err := htlcgate.KVGet([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func TestAFirstAttemptIsCountedUnderItsPeerAndHeldThenPassedOn(t *testing.T) {
	htlcgate.ResetHostForTest()
	peer := bytes.Repeat([]byte{2}, 33)
	htlcgate.SetChannelForTest(htlcgate.ChannelInfo{ChanID: 1, Peer: peer})
	d, err := newPeerHold(htlcgate.NewConfig("hold_ms", "250"))
	if err != nil {
		t.Fatal(err)
	}
	h := htlcgate.NewForward(1_001_000, 1_000_000)
	if v := d.Decide(h); !v.Equal(htlcgate.Hold(250)) {
		t.Fatalf("first attempt: %v", v)
	}
	h.Attempt = 2
	if v := d.Decide(h); !v.IsNext() {
		t.Fatalf("second attempt: %v", v)
	}
	key := "peer/02" + string(bytes.Repeat([]byte("02"), 32))
	if n := counter(t, key); n != 1 {
		t.Fatalf("%s = %d", key, n)
	}
	h.Key.ChanID = 9 // unknown channel
	h.Attempt = 1
	d.Decide(h)
	if n := counter(t, "peer/unknown"); n != 1 {
		t.Fatalf("peer/unknown = %d", n)
	}
}

func TestOutcomesAreCountedByKindReasonAndVolume(t *testing.T) {
	htlcgate.ResetHostForTest()
	d, _ := newPeerHold(htlcgate.NewConfig())
	obs := d.(htlcgate.OutcomeObserver)
	amounts := htlcgate.HtlcAmounts{OutgoingAmountMsat: 1_000}
	for _, o := range []htlcgate.Outcome{
		{Kind: htlcgate.OutcomeForwarded, Amounts: amounts},
		{Kind: htlcgate.OutcomeForwarded, Amounts: amounts},
		{Kind: htlcgate.OutcomeSettled},
		{Kind: htlcgate.OutcomeLinkFailed, LinkFailure: htlcgate.LinkFailure{Detail: "INSUFFICIENT_BALANCE"}},
		{Kind: htlcgate.OutcomeFinal, Settled: true},
		{Kind: htlcgate.OutcomeFinal},
		{Kind: htlcgate.OutcomeFinal},
	} {
		obs.Outcome(&o)
	}
	for key, want := range map[string]uint64{
		"outcome/forwarded":                2,
		"forwarded-msat":                   2_000,
		"outcome/settled":                  1,
		"outcome/link-failed":              1,
		"link-failed/INSUFFICIENT_BALANCE": 1,
		"outcome/final/settled":            1,
		"outcome/final/failed":             2,
		"outcome/forward-failed":           0,
	} {
		if got := counter(t, key); got != want {
			t.Fatalf("%s = %d, want %d", key, got, want)
		}
	}
}

func TestHoldZeroNeverHoldsAndBadConfigIsRefused(t *testing.T) {
	htlcgate.ResetHostForTest()
	d, _ := newPeerHold(htlcgate.NewConfig("hold_ms", "0"))
	if v := d.Decide(htlcgate.NewForward(2, 1)); !v.IsNext() {
		t.Fatalf("hold_ms 0: %v", v)
	}
	if _, err := newPeerHold(htlcgate.NewConfig("hold_ms", "4294967296")); err == nil {
		t.Fatal("hold_ms above u32 accepted")
	}
	if _, err := newPeerHold(htlcgate.NewConfig("hold", "1")); err == nil {
		t.Fatal("typo accepted")
	}
}
