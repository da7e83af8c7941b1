//go:build !wasip1

package htlcgate

import (
	"os"
	"time"
)

// Outside WebAssembly (unit tests on the build machine) the host imports are
// stand-ins: log lines go to stderr, the clock is the system's, there is no
// onion blob unless a test sets one with SetOnionBlobForTest, the kv store is
// a map without limits, and Channel and BlockHeight answer what
// SetChannelForTest and SetBlockHeightForTest set. ResetHostForTest forgets
// all of it.

var levelNames = [...]string{"DEBUG", "INFO", "WARN", "ERROR"}

func hostLog(level Level, message string) {
	name := "LOG"
	if int(level) < len(levelNames) {
		name = levelNames[level]
	}
	os.Stderr.WriteString("[plugin " + name + "] " + message + "\n")
}

func hostNow() uint64 { return uint64(time.Now().UnixMilli()) }

// hostOnionBlob answers like htlcgate: the blob of the HTLC being decided,
// which the SDK's own tests set in standInOnion.
func hostOnionBlob() []byte { return append([]byte{}, standInOnion...) }

// The stand-ins' state.
var (
	testKV          = map[string][]byte{}
	testChannels    = map[Scid]ChannelInfo{}
	testHeight      uint32
	testHeightKnown bool
	// standInOnion is what hostOnionBlob answers (empty unless the SDK's own
	// tests set it; plugin tests use SetOnionBlobForTest).
	standInOnion []byte
)

func hostKVGet(key []byte) ([]byte, bool, error) {
	v, ok := testKV[string(key)]
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
}

func hostKVSet(key, value []byte) error {
	testKV[string(key)] = append([]byte{}, value...)
	return nil
}

func hostKVDelete(key []byte) (bool, error) {
	_, ok := testKV[string(key)]
	delete(testKV, string(key))
	return ok, nil
}

func hostChannel(scid Scid) (ChannelInfo, bool) {
	c, ok := testChannels[scid]
	return c, ok
}

func hostBlockHeight() (uint32, bool) { return testHeight, testHeightKnown }

// SetChannelForTest makes Channel(c.ChanID) return c, for unit tests on the
// build machine (not in a wasip1 build).
func SetChannelForTest(c ChannelInfo) { testChannels[c.ChanID] = c }

// SetBlockHeightForTest makes BlockHeight return height as known, for unit
// tests on the build machine (not in a wasip1 build).
func SetBlockHeightForTest(height uint32) {
	testHeight, testHeightKnown = height, true
}

// ResetHostForTest empties the stand-in kv store, forgets the channels and
// makes the block height unknown again, for unit tests on the build machine
// (not in a wasip1 build).
func ResetHostForTest() {
	clear(testKV)
	clear(testChannels)
	testHeight, testHeightKnown = 0, false
	standInOnion = nil
}
