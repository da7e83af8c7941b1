package htlcgate

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"htlcgate.dev/sdk/go/internal/bridge"
)

// fakeMemory is linear memory for tests: a byte slice addressed from 0.
type fakeMemory struct{ mem []byte }

func (m *fakeMemory) view(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return m.mem[ptr : ptr+n]
}

func (m *fakeMemory) alloc(n, align uint32) (uint32, []byte) {
	p := (uint32(len(m.mem)) + align - 1) / align * align
	m.mem = append(m.mem, make([]byte, p+n-uint32(len(m.mem)))...)
	return p, m.mem[p : p+n]
}

// put writes b into fresh memory and returns its address.
func (m *fakeMemory) put(b []byte, align uint32) uint32 {
	p, buf := m.alloc(uint32(len(b)), align)
	copy(buf, b)
	return p
}

// The record is laid out here from the WIT by hand, independently of the
// offsets in abi.go.
func TestAnHtlcRecordIsLiftedFieldForField(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	hash := m.put(bytes.Repeat([]byte{9}, 32), 1)
	val := m.put([]byte("tag"), 1)
	rec := make([]byte, 16)
	put64(rec, 70000)
	put32(rec[8:], val)
	put32(rec[12:], 3)
	records := m.put(rec, 8)
	node := m.put(bytes.Repeat([]byte{2}, 33), 1)

	r := make([]byte, 104)
	put64(r[0:], 800_000<<40|1<<16)   // chan-id
	put64(r[8:], 7)                   // htlc-id
	put64(r[16:], 1_001_000)          // incoming-amount-msat
	put32(r[24:], 500)                // incoming-expiry
	put32(r[28:], hash)               // payment-hash ptr
	put32(r[32:], 32)                 // payment-hash len
	put64(r[40:], 42)                 // outgoing-requested-chan-id
	put64(r[48:], 1_000_000)          // outgoing-amount-msat
	put32(r[56:], 460)                // outgoing-expiry
	put32(r[60:], records)            // custom-records ptr
	put32(r[64:], 1)                  // custom-records len
	put32(r[68:], 1366)               // onion-blob-size
	put32(r[72:], uint32(0xffffffff)) // auto-fail-height = -1
	put32(r[76:], 8)                  // in-wire-custom-records (empty)
	put32(r[80:], 0)                  //
	r[84] = 1                         // outgoing-requested-node-id: some
	put32(r[88:], node)               //
	put32(r[92:], 33)                 //
	put32(r[96:], 3)                  // attempt (0.2.0)
	ptr := m.put(r, 8)

	h := decodeHtlc(m, ptr)
	if h.Key.ChanID.String() != "800000x1x0" || h.Key.HtlcID != 7 || h.Key.String() != "879609302220865536:7" {
		t.Fatalf("key %v", h.Key)
	}
	if h.IncomingAmountMsat != 1_001_000 || h.OutgoingAmountMsat != 1_000_000 || h.FeeMsat() != 1_000 {
		t.Fatalf("amounts %d %d", h.IncomingAmountMsat, h.OutgoingAmountMsat)
	}
	if h.IncomingExpiry != 500 || h.OutgoingExpiry != 460 || h.CltvDelta() != 40 || h.AutoFailHeight != -1 {
		t.Fatalf("heights %d %d %d", h.IncomingExpiry, h.OutgoingExpiry, h.AutoFailHeight)
	}
	if !bytes.Equal(h.PaymentHash, bytes.Repeat([]byte{9}, 32)) || h.OutgoingChan != 42 || h.OnionBlobSize != 1366 {
		t.Fatalf("hash/chan/onion %x %d %d", h.PaymentHash, h.OutgoingChan, h.OnionBlobSize)
	}
	if string(h.CustomRecords[70000]) != "tag" || len(h.CustomRecords) != 1 || h.InWireCustomRecords != nil {
		t.Fatalf("records %v %v", h.CustomRecords, h.InWireCustomRecords)
	}
	if len(h.OutgoingNodeID) != 33 || h.IsFinalHop() {
		t.Fatalf("node id %x", h.OutgoingNodeID)
	}
	if h.Attempt != 3 {
		t.Fatalf("attempt %d", h.Attempt)
	}
	// The plugin's copy survives the call memory being reused.
	clear(m.mem)
	if h.PaymentHash[0] != 9 || string(h.CustomRecords[70000]) != "tag" {
		t.Fatal("Htlc points into call memory")
	}
}

func TestVerdictsAreLoweredAsTheWorldsResolution(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	ret := make([]byte, 48)

	encodeResolution(m, Next(), ret)
	if ret[0] != 0 {
		t.Fatalf("next: %x", ret)
	}
	encodeResolution(m, Fail(InvalidOnionKey), ret)
	if ret[0] != 2 || ret[8] != 2 {
		t.Fatalf("fail: %x", ret)
	}
	var pre [32]byte
	pre[0] = 0xab
	encodeResolution(m, Settle(pre), ret)
	if ret[0] != 3 || le32(ret[12:]) != 32 || m.view(le32(ret[8:]), 32)[0] != 0xab {
		t.Fatalf("settle: %x", ret)
	}
	v := ResumeModified().WithOutAmountMsat(999).WithWireRecord(65539, []byte("b")).WithWireRecord(65537, []byte("a"))
	encodeResolution(m, v, ret)
	if ret[0] != 4 || ret[8] != 0 || ret[24] != 1 || le64(ret[32:]) != 999 {
		t.Fatalf("modified amounts: %x", ret)
	}
	list, n := le32(ret[40:]), le32(ret[44:])
	if n != 2 || list%8 != 0 {
		t.Fatalf("records list at %d len %d", list, n)
	}
	first := m.view(list, 32)
	if le64(first) != 65537 || string(m.view(le32(first[8:]), le32(first[12:]))) != "a" || le64(first[16:]) != 65539 {
		t.Fatalf("records not sorted by key or misplaced: %x", first)
	}
	encodeResolution(m, Hold(250), ret)
	if ret[0] != 5 || le32(ret[8:]) != 250 || v.Equal(Hold(250)) || !Hold(250).Equal(Hold(250)) || Hold(250).Equal(Hold(251)) {
		t.Fatalf("hold: %x", ret)
	}
	encodeResolution(m, Resume(), ret)
	for i, b := range ret[1:] {
		if b != 0 {
			t.Fatalf("stale byte %d after resume: %x", i+1, ret)
		}
	}
}

func TestConfigIsLiftedAndInitErrorsAreLowered(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	pair := make([]byte, 16)
	put32(pair, m.put([]byte("ppm"), 1))
	put32(pair[4:], 3)
	put32(pair[8:], m.put([]byte("100"), 1))
	put32(pair[12:], 3)
	c := decodeConfig(m, m.put(pair, 4), 1)
	if v, err := c.Uint64Or("ppm", 0); err != nil || v != 100 {
		t.Fatalf("ppm %d %v", v, err)
	}
	ret := make([]byte, 12)
	encodeInitResult(m, c.DenyUnknown("base_msat"), ret)
	msg := string(m.view(le32(ret[4:]), le32(ret[8:])))
	if ret[0] != 1 || msg != "config key `ppm` is not known; known keys: base_msat" {
		t.Fatalf("init error %x %q", ret, msg)
	}
	encodeInitResult(m, nil, ret)
	if ret[0] != 0 {
		t.Fatal("ok lowered as error")
	}
}

func TestDecideBeforeInitAnswersNextAndARefusedInitForgetsTheOldDecider(t *testing.T) {
	current = nil
	if !runDecide(NewForward(1, 1)).IsNext() {
		t.Fatal("decide before init")
	}
	Register(func(cfg Config) (Decider, error) {
		if cfg.Has("refuse") {
			return nil, cfg.DenyUnknown()
		}
		return DeciderFunc(func(*Htlc) Verdict { return Resume() }), nil
	})
	if err := runInit(NewConfig()); err != nil || runDecide(NewForward(1, 1)).Kind != KindResume {
		t.Fatalf("init: %v", err)
	}
	if err := runInit(NewConfig("refuse", "1")); err == nil || !runDecide(NewForward(1, 1)).IsNext() {
		t.Fatal("a refused init left the old Decider answering")
	}
}

// kvResult is a kv import's 16-byte return area written as the host would.
func kvResult(ok bool, caseByte byte, word uint32, list []uint32) []byte {
	r := make([]byte, 16)
	if !ok {
		r[0] = 1
	}
	r[4] = caseByte
	put32(r[8:], word)
	if list != nil {
		put32(r[8:], list[0])
		put32(r[12:], list[1])
	}
	return r
}

func TestKVResultsAndErrorsAreLiftedByCase(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	val := m.put([]byte("seven"), 1)
	if v, found, err := decodeKVGet(m, kvResult(true, 1, 0, []uint32{val, 5})); err != nil || !found || string(v) != "seven" {
		t.Fatalf("get some: %q %v %v", v, found, err)
	}
	if v, found, err := decodeKVGet(m, kvResult(true, 0, 0, nil)); err != nil || found || v != nil {
		t.Fatalf("get none: %q %v %v", v, found, err)
	}
	for kind, want := range map[KVErrorKind]string{
		KVKeyTooLong:   "kv: key longer than the plugin's limit of 64 bytes (kv_max_key_bytes)",
		KVValueTooLong: "kv: value longer than the plugin's limit of 64 bytes (kv_max_value_bytes)",
		KVTooManyKeys:  "kv: the namespace already holds its limit of 64 keys (kv_max_keys); delete some",
	} {
		_, _, err := decodeKVGet(m, kvResult(false, byte(kind), 64, nil))
		var kvErr *KVError
		if !errors.As(err, &kvErr) || kvErr.Kind != kind || kvErr.Limit != 64 || err.Error() != want {
			t.Fatalf("error case %d: %v", kind, err)
		}
	}
	msg := m.put([]byte("disk full"), 1)
	err := decodeKVSet(m, kvResult(false, 3, 0, []uint32{msg, 9}))
	var kvErr *KVError
	if !errors.As(err, &kvErr) || kvErr.Kind != KVStorage || kvErr.Message != "disk full" ||
		err.Error() != "kv: the host's storage failed: disk full" {
		t.Fatalf("storage error: %v", err)
	}
	if err := decodeKVSet(m, kvResult(true, 0, 0, nil)); err != nil {
		t.Fatalf("set ok: %v", err)
	}
	if existed, err := decodeKVDelete(m, kvResult(true, 1, 0, nil)); err != nil || !existed {
		t.Fatalf("delete true: %v %v", existed, err)
	}
	if existed, err := decodeKVDelete(m, kvResult(true, 0, 0, nil)); err != nil || existed {
		t.Fatalf("delete false: %v %v", existed, err)
	}
	if _, err := decodeKVDelete(m, kvResult(false, 2, 10, nil)); err == nil {
		t.Fatal("delete error lost")
	}
}

func TestAChannelAndTheBlockHeightAreLiftedFromTheirOptions(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	peer := m.put(bytes.Repeat([]byte{3}, 33), 1)
	r := make([]byte, 64)
	r[0] = 1                        // some
	put64(r[8:], 700_000<<40|1<<16) // chan-id
	put32(r[16:], peer)             // peer ptr
	put32(r[20:], 33)               // peer len
	put64(r[24:], 1_000_000)        // capacity-sat
	put64(r[32:], 600_000)          // local-balance-sat
	put64(r[40:], 390_000)          // remote-balance-sat
	put64(r[48:], 10_000)           // unsettled-balance-sat
	r[56], r[57], r[58] = 1, 0, 1   // active, private, initiator
	c, ok := decodeChannel(m, r)
	if !ok || c.ChanID.String() != "700000x1x0" || len(c.Peer) != 33 || c.Peer[32] != 3 {
		t.Fatalf("channel %+v", c)
	}
	if c.CapacitySat != 1_000_000 || c.LocalBalanceSat != 600_000 || c.RemoteBalanceSat != 390_000 || c.UnsettledBalanceSat != 10_000 {
		t.Fatalf("balances %+v", c)
	}
	if !c.Active || c.Private || !c.Initiator {
		t.Fatalf("flags %+v", c)
	}
	clear(m.mem)
	if c.Peer[0] != 3 {
		t.Fatal("ChannelInfo.Peer points into call memory")
	}
	if _, ok := decodeChannel(m, make([]byte, 64)); ok {
		t.Fatal("none lifted as a channel")
	}
	h := make([]byte, 8)
	if _, ok := decodeBlockHeight(h); ok {
		t.Fatal("none lifted as a height")
	}
	h[0] = 1
	put32(h[4:], 850_123)
	if height, ok := decodeBlockHeight(h); !ok || height != 850_123 {
		t.Fatalf("height %d %v", height, ok)
	}
}

func TestOutcomesAreLiftedFromTheirSixteenFlatValues(t *testing.T) {
	m := &fakeMemory{mem: make([]byte, 16)}
	key := func(f *outcomeFlat) {
		f[0], f[1] = 42, 7
		f[15] = 1_700_000_000_000
	}

	var f outcomeFlat
	key(&f)
	f[2], f[3], f[4] = 1, 99, 3
	f[5] = uint64(OutcomeForwarded)
	f[6], f[7], f[8], f[9] = 1_001_000, 1_000_000, 500, 460
	o := decodeOutcome(m, &f)
	if o.Key != (CircuitKey{ChanID: 42, HtlcID: 7}) || !o.HasOutgoingKey || o.OutgoingKey != (CircuitKey{ChanID: 99, HtlcID: 3}) {
		t.Fatalf("keys %+v", o)
	}
	if o.Kind != OutcomeForwarded || o.Amounts != (HtlcAmounts{1_001_000, 1_000_000, 500, 460}) || o.AtUnixMs != 1_700_000_000_000 {
		t.Fatalf("forwarded %+v", o)
	}

	f = outcomeFlat{}
	key(&f)
	f[5] = uint64(OutcomeSettled)
	f[6], f[7] = uint64(m.put(bytes.Repeat([]byte{0xee}, 32), 1)), 32
	o = decodeOutcome(m, &f)
	if o.Kind != OutcomeSettled || o.HasOutgoingKey || len(o.Preimage) != 32 || o.Preimage[31] != 0xee {
		t.Fatalf("settled %+v", o)
	}

	f = outcomeFlat{}
	key(&f)
	f[5] = uint64(OutcomeLinkFailed)
	f[6] = uint64(uint32(0xffffffff)) // wire-failure-code -1, zero-extended
	f[7], f[8] = uint64(m.put([]byte("INSUFFICIENT_BALANCE"), 1)), 20
	f[9], f[10] = uint64(m.put([]byte("no room"), 1)), 7
	f[11], f[12], f[13], f[14] = 5, 4, 3, 2
	o = decodeOutcome(m, &f)
	if o.Kind != OutcomeLinkFailed || o.LinkFailure != (LinkFailure{-1, "INSUFFICIENT_BALANCE", "no room"}) ||
		o.Amounts != (HtlcAmounts{5, 4, 3, 2}) {
		t.Fatalf("link-failed %+v", o)
	}

	f = outcomeFlat{}
	key(&f)
	f[5] = uint64(OutcomeFinal)
	f[6], f[7] = 1, 0
	o = decodeOutcome(m, &f)
	if o.Kind != OutcomeFinal || !o.Settled || o.Offchain || o.Kind.String() != "final" {
		t.Fatalf("final %+v", o)
	}

	f = outcomeFlat{}
	key(&f)
	f[5] = uint64(OutcomeForwardFailed)
	if o = decodeOutcome(m, &f); o.Kind != OutcomeForwardFailed || o.Amounts != (HtlcAmounts{}) {
		t.Fatalf("forward-failed %+v", o)
	}
	clear(m.mem)
}

// observer counts outcomes.
type observer struct{ seen []OutcomeKind }

func (o *observer) Decide(*Htlc) Verdict { return Next() }
func (o *observer) Outcome(out *Outcome) { o.seen = append(o.seen, out.Kind) }

func TestAnObservingDeciderNeedsTheOutcomeExportAndThenHearsOutcomes(t *testing.T) {
	obs := &observer{}
	Register(func(Config) (Decider, error) { return obs, nil })
	defer func() { bridge.OutcomeExported = false }()
	bridge.OutcomeExported = false
	err := runInit(NewConfig())
	if err == nil || !strings.Contains(err.Error(), `import _ "htlcgate.dev/sdk/go/outcome"`) {
		t.Fatalf("init without the export: %v", err)
	}
	bridge.OutcomeExported = true
	if err := runInit(NewConfig()); err != nil {
		t.Fatal(err)
	}
	runOutcome(&Outcome{Kind: OutcomeFinal})
	if len(obs.seen) != 1 || obs.seen[0] != OutcomeFinal {
		t.Fatalf("seen %v", obs.seen)
	}
	// A Decider that does not observe ignores outcomes.
	Register(func(Config) (Decider, error) { return DeciderFunc(func(*Htlc) Verdict { return Next() }), nil })
	if err := runInit(NewConfig()); err != nil {
		t.Fatal(err)
	}
	runOutcome(&Outcome{Kind: OutcomeFinal})
	if len(obs.seen) != 1 {
		t.Fatal("the old Decider still hears outcomes")
	}
}

func TestTheStandInsKeepKVChannelsAndHeightForPluginTests(t *testing.T) {
	ResetHostForTest()
	defer ResetHostForTest()
	if _, found, err := KVGet([]byte("k")); found || err != nil {
		t.Fatal("fresh store not empty")
	}
	if err := KVSet([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, found, _ := KVGet([]byte("k")); !found || string(v) != "v" {
		t.Fatalf("get %q", v)
	}
	if existed, _ := KVDelete([]byte("k")); !existed {
		t.Fatal("delete missed the key")
	}
	if existed, _ := KVDelete([]byte("k")); existed {
		t.Fatal("deleted twice")
	}
	if _, ok := Channel(5); ok {
		t.Fatal("unknown channel found")
	}
	SetChannelForTest(ChannelInfo{ChanID: 5, Peer: []byte{2}})
	if c, ok := Channel(5); !ok || c.Peer[0] != 2 {
		t.Fatal("channel not found")
	}
	if _, ok := BlockHeight(); ok {
		t.Fatal("height known before set")
	}
	SetBlockHeightForTest(9)
	if h, ok := BlockHeight(); !ok || h != 9 {
		t.Fatal("height")
	}
}

func TestInitErrorsThatAreNotUTF8AreRepairedNotPassedOn(t *testing.T) {
	// The host refuses a string that is not UTF-8 (a fault, not a refusal):
	// each run of invalid bytes becomes U+FFFD.
	m := &fakeMemory{mem: make([]byte, 16)}
	ret := make([]byte, 12)
	encodeInitResult(m, errors.New("key \xff\xfe `x` \xc3"), ret)
	msg := string(m.view(le32(ret[4:]), le32(ret[8:])))
	if ret[0] != 1 || msg != "key \uFFFD `x` \uFFFD" {
		t.Fatalf("init error %x %q", ret, msg)
	}
	encodeInitResult(m, errors.New("fine: é ✓"), ret)
	if msg := string(m.view(le32(ret[4:]), le32(ret[8:]))); msg != "fine: é ✓" {
		t.Fatalf("valid text changed: %q", msg)
	}
}

func TestAKeptHtlcNeverReadsAnotherHtlcsOnionBlob(t *testing.T) {
	defer ResetHostForTest()
	var kept, readInCall *Htlc
	var seen [][]byte
	Register(func(Config) (Decider, error) {
		return DeciderFunc(func(h *Htlc) Verdict {
			switch h.Key.HtlcID {
			case 1: // kept without reading its blob
				kept = h
			case 2: // kept after reading its blob in its own call
				h.OnionBlob()
				readInCall = h
			default: // a later HTLC: what do the kept ones say now?
				seen = append(seen, kept.OnionBlob(), readInCall.OnionBlob(), h.OnionBlob())
			}
			return Next()
		}), nil
	})
	if err := runInit(NewConfig()); err != nil {
		t.Fatal(err)
	}
	// The host answers onion-blob for the HTLC being decided.
	for id, blob := range []byte{1, 2, 3} {
		standInOnion = []byte{blob}
		h := NewForward(2000, 1000)
		h.Key.HtlcID = uint64(id + 1)
		runDecide(h)
	}
	if len(seen) != 3 || seen[0] != nil || !bytes.Equal(seen[1], []byte{2}) || !bytes.Equal(seen[2], []byte{3}) {
		t.Fatalf("during HTLC 3: kept %v, read in its call %v, own %v", seen[0], seen[1], seen[2])
	}
	// Between calls: the host would answer for no HTLC.
	standInOnion = []byte{9}
	if b := kept.OnionBlob(); b != nil {
		t.Fatalf("a kept Htlc read %v outside its call", b)
	}
	if b := readInCall.OnionBlob(); !bytes.Equal(b, []byte{2}) {
		t.Fatalf("a blob read in its call changed to %v", b)
	}
}
