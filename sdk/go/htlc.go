package htlcgate

import "strconv"

// CircuitKey identifies one HTLC at this node: the incoming channel and the
// HTLC's index in it (LND's routerrpc.CircuitKey). Unique per HTLC; a replayed
// HTLC has the same key, so it is the key to remember decisions by (not the
// payment hash, which MPP parts and probes share).
type CircuitKey struct {
	// ChanID is the incoming channel.
	ChanID Scid
	// HtlcID is the HTLC's index within the incoming channel.
	HtlcID uint64
}

// String writes chan_id:htlc_id with the numeric channel id, as htlcgate's logs
// do.
func (k CircuitKey) String() string {
	return strconv.FormatUint(uint64(k.ChanID), 10) + ":" + strconv.FormatUint(k.HtlcID, 10)
}

// Records are TLV records: type number to raw value. Custom records use types
// >= 65536.
type Records map[uint64][]byte

// Htlc is the HTLC LND holds and asks about (LND's ForwardHtlcInterceptRequest),
// copied out of the host's message: a Decider may keep it after Decide returns
// (its onion blob only if read during that Decide call; see OnionBlob).
// Amounts are in millisatoshi, expiries are absolute block heights.
type Htlc struct {
	// Key is the incoming channel and HTLC index.
	Key CircuitKey
	// IncomingAmountMsat is the amount of the incoming HTLC.
	IncomingAmountMsat uint64
	// IncomingExpiry is the block height at which the incoming HTLC expires.
	IncomingExpiry uint32
	// PaymentHash is the 32-byte payment hash (shared by MPP parts and probes).
	PaymentHash []byte
	// OutgoingChan is the channel the sender asked to forward over: FinalHop
	// for a payment to this node, NodeAddressed when OutgoingNodeID is set.
	OutgoingChan Scid
	// OutgoingAmountMsat is the amount to forward.
	OutgoingAmountMsat uint64
	// OutgoingExpiry is the block height at which the outgoing HTLC expires.
	OutgoingExpiry uint32
	// CustomRecords are the onion payload's TLV records for this hop.
	CustomRecords Records
	// OnionBlobSize is the size of the next hop's onion blob (read it with
	// OnionBlob).
	OnionBlobSize uint32
	// AutoFailHeight is the block height at which LND fails the HTLC back by
	// itself.
	AutoFailHeight int32
	// InWireCustomRecords are the TLV records of the peer's update_add_htlc.
	InWireCustomRecords Records
	// OutgoingNodeID is the 33-byte key of the node the sender asked to forward
	// to (blinded, node-addressed forwards); nil otherwise.
	OutgoingNodeID []byte
	// Attempt is how many times the chain has been asked about this HTLC: 1
	// the first time, n + 1 after n Holds. A replay after a restart starts
	// again at 1.
	Attempt uint32

	// onion caches the blob once read (or set by SetOnionBlobForTest).
	onion     []byte
	onionRead bool
	// call is the Decide call this Htlc was handed to (0: not from the host);
	// only during that call does the host's onion-blob answer for it.
	call uint64
}

// IsFinalHop is true when the HTLC is for this node rather than a forward:
// outgoing channel 0 and no outgoing node id.
func (h *Htlc) IsFinalHop() bool {
	return h.OutgoingChan == FinalHop && h.OutgoingNodeID == nil
}

// FeeMsat is the fee this node earns by forwarding: incoming minus outgoing
// amount. It is exact only while both amounts are below 2^63; use FeeAtLeast
// to compare with a floor for any amounts. Negative when the sender asks to
// forward more than it pays in.
func (h *Htlc) FeeMsat() int64 {
	return int64(h.IncomingAmountMsat) - int64(h.OutgoingAmountMsat)
}

// FeeAtLeast reports whether incoming - outgoing >= floor, exactly, for every
// pair of uint64 amounts (a negative fee never is).
func (h *Htlc) FeeAtLeast(floorMsat uint64) bool {
	if h.IncomingAmountMsat < h.OutgoingAmountMsat {
		return false
	}
	return h.IncomingAmountMsat-h.OutgoingAmountMsat >= floorMsat
}

// CltvDelta is the CLTV delta this node gets: incoming minus outgoing expiry.
func (h *Htlc) CltvDelta() int64 {
	return int64(h.IncomingExpiry) - int64(h.OutgoingExpiry)
}

// OnionBlob is the next hop's onion blob (normally 1366 bytes). The first call
// during the Decide call that received h asks the host for it (most policies
// never need it); later calls return the same bytes, also after Decide
// returned. The host answers only for the HTLC being decided: a kept Htlc whose
// blob was not read during its own Decide call returns nil (read it there if
// you will need it later). An Htlc not from the host (NewForward) returns nil
// unless a test set a blob with SetOnionBlobForTest.
func (h *Htlc) OnionBlob() []byte {
	if !h.onionRead {
		if h.call == 0 || h.call != deciding {
			return nil
		}
		h.onion = hostOnionBlob()
		h.onionRead = true
	}
	return h.onion
}

// SetOnionBlobForTest makes OnionBlob return blob without asking the host, for
// unit tests on the build machine.
func (h *Htlc) SetOnionBlobForTest(blob []byte) {
	h.onion = blob
	h.onionRead = true
	h.OnionBlobSize = uint32(len(blob))
}

// NewForward is a forward of outgoingMsat for incomingMsat over outgoing
// channel 1x1x0 on channel 1, first attempt, for tests; change any field after.
func NewForward(incomingMsat, outgoingMsat uint64) *Htlc {
	out, _ := ScidFromParts(1, 1, 0)
	return &Htlc{
		Key:                 CircuitKey{ChanID: 1, HtlcID: 0},
		IncomingAmountMsat:  incomingMsat,
		IncomingExpiry:      800_080,
		PaymentHash:         make([]byte, 32),
		OutgoingChan:        out,
		OutgoingAmountMsat:  outgoingMsat,
		OutgoingExpiry:      800_040,
		CustomRecords:       Records{},
		AutoFailHeight:      800_070,
		InWireCustomRecords: Records{},
		Attempt:             1,
	}
}
