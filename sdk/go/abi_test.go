package htlcgate

import (
	"bytes"
	"testing"
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

	r := make([]byte, 96)
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
