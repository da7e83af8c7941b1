package htlcgate

// The canonical ABI of world htlcgate:plugin@0.2.0 `decider`, by hand.
//
// The host lowers every argument into this module's linear memory (through
// cabi_realloc) and lifts every result from it. The layouts below follow the
// component model's canonical ABI: a record aligns each field to its own
// alignment and is padded to its largest; list<T> is (ptr u32, len u32);
// option<T> and variants are a discriminant byte, then the payload at the
// payload's alignment; a variant's payloads share one area at the largest
// alignment. A function whose parameters flatten to more than 16 core values
// gets a pointer to them (decide); one whose result flattens to more than one
// value writes it into a return area the caller passes (every import below but
// log and now-unix-ms). The code here works on a memory view so that it is
// tested on the build machine as well (abi_test.go), where no linear memory
// exists. wit-parser's layout of wit/plugin.wit gives the same numbers (checked
// when the layouts were written).

import "strconv"

// memory is what the glue needs from linear memory.
type memory interface {
	// view is the n bytes at ptr, without copying (nil for n == 0).
	view(ptr, n uint32) []byte
	// alloc is n writable bytes aligned to align, valid until the current
	// export call is over (released in cabi_post_*), and their address.
	alloc(n, align uint32) (ptr uint32, buf []byte)
}

// Layout of `htlc` (size 104, align 8).
const (
	htlcSize            = 104
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
	offAttempt          = 96 // u32 (new in 0.2.0; the record grew from 96)
)

// Layout of `custom-record` (size 16, align 8): key u64, value list<u8>.
const recordSize = 16

// Layout of `resolution` (size 48, align 8): discriminant u8, payload at 8.
// The payload of resume-modified is `modification` (size 40, align 8):
// in-amount-msat option<u64> at 0 (value at 8), out-amount-msat at 16 (value at
// 24), out-wire-custom-records list at 32. The payload of hold is its u32 (ms).
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

// Layout of the kv imports' results (size 16, align 4): result discriminant u8
// at 0 (0 ok, 1 error), payload at 4. kv-get's ok is option<list<u8>> (some u8
// at 4, list at 8); kv-delete's ok is a bool at 4; kv-set's ok is empty. The
// error is `kv-error` (size 12, align 4): case u8 at 4, then the u32 limit at 8
// or, for storage, the string at 8.
const (
	kvResultSize  = 16
	offKVPayload  = 4
	offKVValue    = 8
	offKVErrCase  = 4
	offKVErrValue = 8
)

// Layout of option<channel-info> (size 64, align 8): some u8 at 0, then
// `channel-info` (size 56, align 8) at 8: chan-id u64 @0, peer list @8,
// capacity-sat u64 @16, local-balance-sat @24, remote-balance-sat @32,
// unsettled-balance-sat @40, active bool @48, private @49, initiator @50.
const (
	channelResultSize = 64
	offChannelInfo    = 8
)

// Layout of option<u32> (size 8, align 4): some u8 at 0, the u32 at 4.
const heightResultSize = 8

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
		Attempt:             le32(r[offAttempt:]),
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
	case KindHold:
		ret[0] = byte(KindHold)
		put32(ret[offPayload:], v.HoldMs)
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
	msg := validText(err.Error())
	if msg == "" {
		msg = "init refused without a message"
	}
	putBytes(m, ret[4:], []byte(msg))
}

// decodeKVError lifts the `kv-error` at ret[offKVErrCase:].
func decodeKVError(m memory, ret []byte) *KVError {
	e := &KVError{Kind: KVErrorKind(ret[offKVErrCase])}
	switch e.Kind {
	case KVKeyTooLong, KVValueTooLong, KVTooManyKeys:
		e.Limit = le32(ret[offKVErrValue:])
	case KVStorage:
		e.Message = string(bytesAt(m, ret[offKVErrValue:]))
	default:
		e.Message = "unknown kv-error case " + strconv.Itoa(int(e.Kind))
	}
	return e
}

// decodeKVGet lifts kv-get's result<option<list<u8>>, kv-error>.
func decodeKVGet(m memory, ret []byte) ([]byte, bool, error) {
	if ret[0] != 0 {
		return nil, false, decodeKVError(m, ret)
	}
	if ret[offKVPayload] == 0 {
		return nil, false, nil
	}
	return bytesAt(m, ret[offKVValue:]), true, nil
}

// decodeKVSet lifts kv-set's result<_, kv-error>.
func decodeKVSet(m memory, ret []byte) error {
	if ret[0] != 0 {
		return decodeKVError(m, ret)
	}
	return nil
}

// decodeKVDelete lifts kv-delete's result<bool, kv-error>.
func decodeKVDelete(m memory, ret []byte) (bool, error) {
	if ret[0] != 0 {
		return false, decodeKVError(m, ret)
	}
	return ret[offKVPayload] != 0, nil
}

// decodeChannel lifts channel's option<channel-info>.
func decodeChannel(m memory, ret []byte) (ChannelInfo, bool) {
	if ret[0] == 0 {
		return ChannelInfo{}, false
	}
	c := ret[offChannelInfo:]
	return ChannelInfo{
		ChanID:              Scid(le64(c)),
		Peer:                bytesAt(m, c[8:]),
		CapacitySat:         le64(c[16:]),
		LocalBalanceSat:     le64(c[24:]),
		RemoteBalanceSat:    le64(c[32:]),
		UnsettledBalanceSat: le64(c[40:]),
		Active:              c[48] != 0,
		Private:             c[49] != 0,
		Initiator:           c[50] != 0,
	}, true
}

// decodeBlockHeight lifts block-height's option<u32>.
func decodeBlockHeight(ret []byte) (uint32, bool) {
	if ret[0] == 0 {
		return 0, false
	}
	return le32(ret[4:]), true
}

// outcomeFlat is `outcome`'s parameter list as the canonical ABI flattens
// `htlc-outcome`: exactly 16 core values (MAX_FLAT_PARAMS), so they are passed
// directly, not through a pointer. Each slot is held as a u64 (an i32 slot in
// its low half).
//
//	0, 1   incoming-circuit-key chan-id, htlc-id              i64 i64
//	2      outgoing-circuit-key: option discriminant          i32
//	3, 4   ... chan-id, htlc-id                               i64 i64
//	5      kind: outcome-kind discriminant                    i32
//	6..14  kind's payload, the cases' flat values joined slot by slot:
//	         forwarded(htlc-amounts): in-amount 6, out-amount 7, in-expiry 8,
//	           out-expiry 9
//	         settled(list<u8>): ptr 6, len 7
//	         forward-failed: nothing
//	         link-failed(link-failure): wire-failure-code 6 (s32 zero-extended
//	           into the i64 slot), detail ptr 7, len 8, message ptr 9, len 10,
//	           amounts: in-amount 11, out-amount 12, in-expiry 13, out-expiry 14
//	         final(final-resolution): settled 6, offchain 7
//	       slot types: i64 i64 i32 i32 i32 i64 i64 i32 i32
//	15     at-unix-ms                                         i64
type outcomeFlat [16]uint64

// copyAt copies n bytes at ptr out of call memory (the host releases it after
// the call; the copy is the plugin's to keep).
func copyAt(m memory, ptr, n uint32) []byte {
	out := make([]byte, n)
	copy(out, m.view(ptr, n))
	return out
}

// decodeOutcome lifts `htlc-outcome` from its flat parameters.
func decodeOutcome(m memory, f *outcomeFlat) *Outcome {
	o := &Outcome{
		Key:      CircuitKey{ChanID: Scid(f[0]), HtlcID: f[1]},
		Kind:     OutcomeKind(uint32(f[5])),
		AtUnixMs: f[15],
	}
	if uint32(f[2]) != 0 {
		o.OutgoingKey = CircuitKey{ChanID: Scid(f[3]), HtlcID: f[4]}
		o.HasOutgoingKey = true
	}
	switch o.Kind {
	case OutcomeForwarded:
		o.Amounts = HtlcAmounts{
			IncomingAmountMsat: f[6],
			OutgoingAmountMsat: f[7],
			IncomingExpiry:     uint32(f[8]),
			OutgoingExpiry:     uint32(f[9]),
		}
	case OutcomeSettled:
		o.Preimage = copyAt(m, uint32(f[6]), uint32(f[7]))
	case OutcomeLinkFailed:
		o.LinkFailure = LinkFailure{
			WireFailureCode: int32(uint32(f[6])),
			Detail:          string(copyAt(m, uint32(f[7]), uint32(f[8]))),
			Message:         string(copyAt(m, uint32(f[9]), uint32(f[10]))),
		}
		o.Amounts = HtlcAmounts{
			IncomingAmountMsat: f[11],
			OutgoingAmountMsat: f[12],
			IncomingExpiry:     uint32(f[13]),
			OutgoingExpiry:     uint32(f[14]),
		}
	case OutcomeFinal:
		o.Settled = uint32(f[6]) != 0
		o.Offchain = uint32(f[7]) != 0
	}
	return o
}
