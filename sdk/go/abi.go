package htlcgate

// The canonical ABI of world htlcgate:plugin@0.1.0 `decider`, by hand.
//
// The host lowers every argument into this module's linear memory (through
// cabi_realloc) and lifts every result from it. The layouts below follow the
// component model's canonical ABI: a record aligns each field to its own
// alignment and is padded to its largest; list<T> is (ptr u32, len u32);
// option<T> and variants are a discriminant byte, then the payload at the
// payload's alignment. The code here works on a memory view so that it is tested
// on the build machine as well (abi_test.go), where no linear memory exists.

// memory is what the glue needs from linear memory.
type memory interface {
	// view is the n bytes at ptr, without copying (nil for n == 0).
	view(ptr, n uint32) []byte
	// alloc is n writable bytes aligned to align, valid until the current
	// export call is over (released in cabi_post_*), and their address.
	alloc(n, align uint32) (ptr uint32, buf []byte)
}

// Layout of `htlc` (size 96, align 8).
const (
	htlcSize            = 96
	offChanID           = 0  // incoming-circuit-key.chan-id u64
	offHtlcID           = 8  // incoming-circuit-key.htlc-id u64
	offIncomingAmount   = 16 // u64
	offIncomingExpiry   = 24 // u32
	offPaymentHash      = 28 // list<u8>
	offOutgoingChan     = 40 // u64
	offOutgoingAmount   = 48 // u64
	offOutgoingExpiry   = 56 // u32
	offCustomRecords    = 60 // list<custom-record>
	offOnionBlobSize    = 68 // u32
	offAutoFailHeight   = 72 // s32
	offInWireRecords    = 76 // list<custom-record>
	offOutgoingNodeID   = 84 // option<list<u8>>: discriminant u8
	offOutgoingNodeList = 88 // ... then the list at align 4
)

// Layout of `custom-record` (size 16, align 8): key u64, value list<u8>.
const recordSize = 16

// Layout of `resolution` (size 48, align 8): discriminant u8, payload at 8.
// The payload of resume-modified is `modification` (size 40, align 8):
// in-amount-msat option<u64> at 0 (value at 8), out-amount-msat at 16 (value at
// 24), out-wire-custom-records list at 32.
const (
	resolutionSize  = 48
	offPayload      = 8
	offInAmountSet  = offPayload + 0
	offInAmount     = offPayload + 8
	offOutAmountSet = offPayload + 16
	offOutAmount    = offPayload + 24
	offWireRecords  = offPayload + 32
)

// Layout of result<_, string> (size 12, align 4): discriminant u8, string at 4.
const initResultSize = 12

// Layout of tuple<string, string> (size 16, align 4).
const pairSize = 16

func le32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func le64(b []byte) uint64 {
	return uint64(le32(b)) | uint64(le32(b[4:]))<<32
}

func put32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func put64(b []byte, v uint64) {
	put32(b, uint32(v))
	put32(b[4:], uint32(v>>32))
}

// bytesAt copies the list<u8> whose (ptr, len) is at b: the memory it points to
// is released after the call, the copy is the plugin's to keep.
func bytesAt(m memory, b []byte) []byte {
	n := le32(b[4:])
	if n == 0 {
		return []byte{}
	}
	out := make([]byte, n)
	copy(out, m.view(le32(b), n))
	return out
}

// recordsAt copies the list<custom-record> whose (ptr, len) is at b; nil when
// empty (reading a nil map is fine, and most HTLCs carry no records).
func recordsAt(m memory, b []byte) Records {
	n := le32(b[4:])
	if n == 0 {
		return nil
	}
	list := m.view(le32(b), n*recordSize)
	out := make(Records, n)
	for i := uint32(0); i < n; i++ {
		r := list[i*recordSize : (i+1)*recordSize]
		out[le64(r)] = bytesAt(m, r[8:])
	}
	return out
}

// decodeHtlc lifts the `htlc` record at ptr.
func decodeHtlc(m memory, ptr uint32) *Htlc {
	r := m.view(ptr, htlcSize)
	h := &Htlc{
		Key: CircuitKey{
			ChanID: Scid(le64(r[offChanID:])),
			HtlcID: le64(r[offHtlcID:]),
		},
		IncomingAmountMsat:  le64(r[offIncomingAmount:]),
		IncomingExpiry:      le32(r[offIncomingExpiry:]),
		PaymentHash:         bytesAt(m, r[offPaymentHash:]),
		OutgoingChan:        Scid(le64(r[offOutgoingChan:])),
		OutgoingAmountMsat:  le64(r[offOutgoingAmount:]),
		OutgoingExpiry:      le32(r[offOutgoingExpiry:]),
		CustomRecords:       recordsAt(m, r[offCustomRecords:]),
		OnionBlobSize:       le32(r[offOnionBlobSize:]),
		AutoFailHeight:      int32(le32(r[offAutoFailHeight:])),
		InWireCustomRecords: recordsAt(m, r[offInWireRecords:]),
	}
	if r[offOutgoingNodeID] != 0 {
		h.OutgoingNodeID = bytesAt(m, r[offOutgoingNodeList:])
	}
	return h
}

// decodeConfig lifts list<tuple<string, string>> (ptr, n).
func decodeConfig(m memory, ptr, n uint32) Config {
	c := Config{pairs: make([][2]string, n)}
	if n == 0 {
		return c
	}
	list := m.view(ptr, n*pairSize)
	for i := uint32(0); i < n; i++ {
		p := list[i*pairSize:]
		c.pairs[i] = [2]string{string(bytesAt(m, p)), string(bytesAt(m, p[8:]))}
	}
	return c
}

// putBytes copies b into memory released after the call and writes its
// (ptr, len) at dst.
func putBytes(m memory, dst []byte, b []byte) {
	if len(b) == 0 {
		// A zero-length list needs no memory; any aligned pointer will do.
		put32(dst, 1)
		put32(dst[4:], 0)
		return
	}
	ptr, buf := m.alloc(uint32(len(b)), 1)
	copy(buf, b)
	put32(dst, ptr)
	put32(dst[4:], uint32(len(b)))
}

// encodeResolution lowers v into ret (resolutionSize bytes).
func encodeResolution(m memory, v Verdict, ret []byte) {
	clear(ret[:resolutionSize])
	switch v.Kind {
	case KindNext, KindResume:
		ret[0] = byte(v.Kind)
	case KindFail:
		ret[0] = byte(KindFail)
		ret[offPayload] = byte(v.Code)
	case KindSettle:
		ret[0] = byte(KindSettle)
		putBytes(m, ret[offPayload:], v.Preimage)
	case KindResumeModified:
		ret[0] = byte(KindResumeModified)
		if v.InAmountMsat != nil {
			ret[offInAmountSet] = 1
			put64(ret[offInAmount:], *v.InAmountMsat)
		}
		if v.OutAmountMsat != nil {
			ret[offOutAmountSet] = 1
			put64(ret[offOutAmount:], *v.OutAmountMsat)
		}
		keys := sortedKeys(v.WireRecords)
		if len(keys) == 0 {
			put32(ret[offWireRecords:], 8)
			break
		}
		ptr, list := m.alloc(uint32(len(keys))*recordSize, 8)
		for i, k := range keys {
			r := list[i*recordSize:]
			put64(r, k)
			putBytes(m, r[8:], v.WireRecords[k])
		}
		put32(ret[offWireRecords:], ptr)
		put32(ret[offWireRecords+4:], uint32(len(keys)))
	default:
		// Not a verdict the constructors make. `next` cannot lose an HTLC: the
		// chain goes on as if this plugin had no opinion.
		Error("decide returned a Verdict of unknown kind; answering `next`")
		ret[0] = byte(KindNext)
	}
}

// encodeInitResult lowers init's result<_, string> into ret.
func encodeInitResult(m memory, err error, ret []byte) {
	clear(ret[:initResultSize])
	if err == nil {
		return
	}
	ret[0] = 1
	msg := err.Error()
	if msg == "" {
		msg = "init refused without a message"
	}
	putBytes(m, ret[4:], []byte(msg))
}
