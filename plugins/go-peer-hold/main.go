// Command go-peer-hold shows the powers of world htlcgate:plugin@0.2.0 in Go.
//
// On an HTLC's first attempt it looks up the incoming channel (Channel, grant
// `node`) to find the peer, counts the HTLC under that peer in its key-value
// namespace (grant `kv`) and holds the HTLC for hold_ms; asked again (attempt 2
// and later) it has no opinion (next), so the rest of the chain decides. It
// also counts the outcomes htlcgate tells it about (it imports
// htlcgate.dev/sdk/go/outcome, so its module exports `outcome`).
//
// Not a policy to run as is: holding every HTLC delays every payment.
//
// Config: hold_ms (default 100; 0 never holds).
// Grants: kv, node.
//
// Key-value state, each value an 8-byte big-endian counter:
//
//	peer/<66 hex digits of the peer's key>   first attempts from that peer
//	peer/unknown                             ... over a channel htlcgate does not know
//	outcome/<kind>                           outcomes of that kind (forwarded, settled,
//	                                         forward-failed, link-failed), and
//	outcome/final/settled, outcome/final/failed
//	link-failed/<LND's failure detail>       refusals by reason
//	forwarded-msat                           total outgoing msat of forwarded HTLCs
//
// A key-value error is logged and never changes a verdict.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"

	htlcgate "htlcgate.dev/sdk/go"
	_ "htlcgate.dev/sdk/go/outcome" // export `outcome`: this Decider observes
)

// peerHold is the configured hold.
type peerHold struct {
	// holdMs is how long a first attempt is held; 0 never holds.
	holdMs uint32
}

// peerKey is the kv key counting HTLCs from the incoming channel's peer.
func peerKey(chanID htlcgate.Scid) string {
	c, ok := htlcgate.Channel(chanID)
	if !ok {
		return "peer/unknown"
	}
	return "peer/" + hex.EncodeToString(c.Peer)
}

// bump adds one to the counter under key.
func bump(key string) { add(key, 1) }

// add adds n to the counter under key (wrapping at 2^64).
func add(key string, n uint64) {
	k := []byte(key)
	v, found, err := htlcgate.KVGet(k)
	if err != nil {
		htlcgate.Warn("cannot read " + key + ": " + err.Error())
		return
	}
	var sum uint64
	if found && len(v) == 8 {
		sum = binary.BigEndian.Uint64(v)
	}
	if err := htlcgate.KVSet(k, binary.BigEndian.AppendUint64(nil, sum+n)); err != nil {
		htlcgate.Warn("cannot count " + key + ": " + err.Error())
	}
}

// Decide holds a first attempt and passes every later one on.
func (p *peerHold) Decide(h *htlcgate.Htlc) htlcgate.Verdict {
	if h.Attempt > 1 {
		htlcgate.Debug(h.Key.String() + ": attempt " + strconv.FormatUint(uint64(h.Attempt), 10) + ", passing on")
		return htlcgate.Next()
	}
	bump(peerKey(h.Key.ChanID))
	if p.holdMs == 0 {
		return htlcgate.Next()
	}
	return htlcgate.Hold(p.holdMs)
}

// Outcome counts outcomes by kind, refusals by reason and forwarded volume.
func (p *peerHold) Outcome(o *htlcgate.Outcome) {
	switch o.Kind {
	case htlcgate.OutcomeFinal:
		if o.Settled {
			bump("outcome/final/settled")
		} else {
			bump("outcome/final/failed")
		}
		return
	case htlcgate.OutcomeForwarded:
		add("forwarded-msat", o.Amounts.OutgoingAmountMsat)
	case htlcgate.OutcomeLinkFailed:
		bump("link-failed/" + o.LinkFailure.Detail)
	}
	bump("outcome/" + o.Kind.String())
}

func newPeerHold(cfg htlcgate.Config) (htlcgate.Decider, error) {
	if err := cfg.DenyUnknown("hold_ms"); err != nil {
		return nil, err
	}
	ms, err := cfg.Uint64Or("hold_ms", 100)
	if err != nil {
		return nil, err
	}
	if ms > 1<<32-1 {
		return nil, errors.New("config key `hold_ms`: expected at most 4294967295 (ms), got " + strconv.FormatUint(ms, 10))
	}
	return &peerHold{holdMs: uint32(ms)}, nil
}

func init() { htlcgate.Register(newPeerHold) }

// main is required by Go and never called: a plugin is a reactor.
func main() {}
