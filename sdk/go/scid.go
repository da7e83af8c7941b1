package htlcgate

import (
	"errors"
	"strconv"
	"strings"
)

// Scid is a short channel id (LND's chan_id, BOLT 7's short_channel_id): block
// height (3 bytes) | transaction index (3 bytes) | output index (2 bytes).
//
// String writes BLOCKxTXxOUT (e.g. 800000x1x0), the form LND and explorers show;
// ParseScid reads that form or the plain decimal chan_id lncli prints.
type Scid uint64

const (
	// FinalHop is the outgoing channel LND reports when the HTLC is for this node
	// (and no outgoing node id is set).
	FinalHop Scid = 0
	// NodeAddressed is the all-ones outgoing channel LND reports when the sender
	// asked for a node rather than a channel (blinded, node-addressed forwards).
	NodeAddressed Scid = 1<<64 - 1
	max24              = 1<<24 - 1
)

// ScidFromParts builds a Scid from its parts; ok is false when blockHeight or
// txIndex does not fit in 3 bytes.
func ScidFromParts(blockHeight, txIndex uint32, outputIndex uint16) (scid Scid, ok bool) {
	if blockHeight > max24 || txIndex > max24 {
		return 0, false
	}
	return Scid(uint64(blockHeight)<<40 | uint64(txIndex)<<16 | uint64(outputIndex)), true
}

// BlockHeight is the block height of the funding transaction (top 3 bytes).
func (s Scid) BlockHeight() uint32 { return uint32(s >> 40) }

// TxIndex is the index of the funding transaction in its block (middle 3 bytes).
func (s Scid) TxIndex() uint32 { return uint32(s>>16) & max24 }

// OutputIndex is the index of the funding output in its transaction (low 2 bytes).
func (s Scid) OutputIndex() uint16 { return uint16(s) }

// String writes BLOCKxTXxOUT.
func (s Scid) String() string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, uint64(s.BlockHeight()), 10)
	b = append(b, 'x')
	b = strconv.AppendUint(b, uint64(s.TxIndex()), 10)
	b = append(b, 'x')
	b = strconv.AppendUint(b, uint64(s.OutputIndex()), 10)
	return string(b)
}

// ParseScid accepts BLOCKxTXxOUT (block and tx index below 2^24, output below
// 2^16) or a decimal uint64, without surrounding whitespace. The error says what
// is wrong as a phrase.
func ParseScid(s string) (Scid, error) {
	if !strings.Contains(s, "x") {
		if s == "" {
			return 0, errors.New("empty channel id")
		}
		if !allDigits(s) {
			return 0, errors.New("neither BLOCKxTXxOUT nor a decimal channel id")
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, errors.New("decimal channel id larger than 2^64 - 1")
		}
		return Scid(n), nil
	}
	parts := strings.Split(s, "x")
	if len(parts) != 3 {
		return 0, errors.New("a BLOCKxTXxOUT id has exactly three parts")
	}
	var n [3]uint64
	for i, p := range parts {
		if !allDigits(p) {
			return 0, errors.New("each part of BLOCKxTXxOUT must be a decimal number")
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			v = 1<<64 - 1
		}
		n[i] = v
	}
	switch {
	case n[0] > max24:
		return 0, errors.New("block height does not fit in 3 bytes (max 16777215)")
	case n[1] > max24:
		return 0, errors.New("transaction index does not fit in 3 bytes (max 16777215)")
	case n[2] > 0xffff:
		return 0, errors.New("output index does not fit in 2 bytes (max 65535)")
	}
	scid, _ := ScidFromParts(uint32(n[0]), uint32(n[1]), uint16(n[2]))
	return scid, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
