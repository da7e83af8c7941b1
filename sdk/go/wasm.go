//go:build wasip1

package htlcgate

import (
	"unsafe"

	"htlcgate.dev/sdk/go/internal/bridge"
)

// The component's core exports and imports, and the memory they share with the
// host.
//
// Memory rule: everything the host writes into this module (arguments, through
// cabi_realloc) and everything it reads back (results) lives in `arena`, a
// static array the garbage collector never frees or moves, or, when a call
// needs more, in Go slices kept reachable from `overflow`. Both are released by
// cabi_post_decide / cabi_post_init, which the host calls after it has read the
// result. The glue copies what the plugin sees out of that memory first, so a
// plugin may keep an Htlc after Decide returns.

const arenaBytes = 64 << 10

// adapterArenaBytes is the memory reserved for the WASI preview-1 adapter; it
// must match ARENA_BYTES in host/componentize/adapter_arena.rs.
const adapterArenaBytes = 3 * 65536

// adapterArena is where the WASI adapter keeps its state and stack. The adapter
// needs that memory during the Go runtime's own start-up, before any Go export
// can run, and memory grown behind the runtime's back would be handed out again
// by Go's allocator. `htlcgate componentize` finds the marker (kept in a data
// segment; the zeros after it take no file space) and gives the adapter a
// plain-WebAssembly bump allocator over `mem`. Go never allocates inside its own
// data, so the two never meet.
var adapterArena = struct {
	marker [32]byte
	mem    [adapterArenaBytes]byte
}{marker: [32]byte{'h', 't', 'l', 'c', 'g', 'a', 't', 'e', ':', 'p', 'r', 'e', 'v', 'i', 'e', 'w', '1', '-', 'a', 'd', 'a', 'p', 't', 'e', 'r', '-', 'a', 'r', 'e', 'n', 'a', '1'}}

var (
	// arena holds the current call's canonical-ABI memory (8-byte aligned).
	arena [arenaBytes / 8]uint64
	// arenaUsed is how many bytes of arena the current call has taken.
	arenaUsed uint32
	// overflow keeps larger allocations of the current call reachable.
	overflow [][]uint64
	// decideRet and initRet are the return areas the host reads results from.
	decideRet [resolutionSize / 8]uint64
	initRet   [2]uint64
	// onionRet is where the host writes the (ptr, len) of the onion blob.
	onionRet [1]uint64
	// kvRet, channelRet and heightRet are the imports' return areas.
	kvRet      [kvResultSize / 8]uint64
	channelRet [channelResultSize / 8]uint64
	heightRet  [heightResultSize / 8]uint64
)

func addrOf(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

// allocate takes size bytes aligned to align (at most 8) for the current call.
func allocate(size, align uint32) uint32 {
	if size == 0 {
		// Any non-zero aligned address: nothing will be read or written.
		return align
	}
	// The arena starts 8-byte aligned and is handed out in 8-byte steps, which
	// satisfies every alignment of the canonical ABI (1, 2, 4, 8).
	words := (size + 7) / 8
	if arenaUsed+words*8 <= arenaBytes {
		p := addrOf(unsafe.Pointer(&arena[arenaUsed/8]))
		arenaUsed += words * 8
		return p
	}
	buf := make([]uint64, words)
	overflow = append(overflow, buf)
	return addrOf(unsafe.Pointer(&buf[0]))
}

// release ends the current call: its arena and overflow memory are free again.
func release() {
	arenaUsed = 0
	clear(overflow)
	overflow = overflow[:0]
}

// wasmMemory is linear memory seen from Go.
type wasmMemory struct{}

func (wasmMemory) view(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(ptr))), n)
}

func (m wasmMemory) alloc(n, align uint32) (uint32, []byte) {
	p := allocate(n, align)
	return p, m.view(p, n)
}

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	p := allocate(newSize, align)
	if oldPtr != 0 && oldSize != 0 && newSize != 0 {
		n := min(oldSize, newSize)
		copy(wasmMemory{}.view(p, n), wasmMemory{}.view(oldPtr, n))
	}
	return p
}

//go:wasmexport init
func exportInit(ptr, n uint32) uint32 {
	m := wasmMemory{}
	if adapterArena.marker[0] != 'h' {
		// Only a write past the adapter's reservation could change the marker.
		Error("the WASI adapter's memory reservation was overwritten")
	}
	err := runInit(decodeConfig(m, ptr, n))
	ret := m.view(addrOf(unsafe.Pointer(&initRet)), initResultSize)
	encodeInitResult(m, err, ret)
	return addrOf(unsafe.Pointer(&initRet))
}

//go:wasmexport cabi_post_init
func postInit(uint32) { release() }

//go:wasmexport decide
func exportDecide(ptr uint32) uint32 {
	m := wasmMemory{}
	v := runDecide(decodeHtlc(m, ptr))
	ret := m.view(addrOf(unsafe.Pointer(&decideRet)), resolutionSize)
	encodeResolution(m, v, ret)
	return addrOf(unsafe.Pointer(&decideRet))
}

//go:wasmexport cabi_post_decide
func postDecide(uint32) { release() }

// The world's optional `outcome` export lives in package outcome (so that only
// plugins that import it export it); it calls this through package bridge.
func init() { bridge.Outcome = exportOutcome }

// exportOutcome decodes `outcome`'s flat parameters and tells the Decider.
// `outcome` has no result, so no cabi_post_outcome: the call's memory (the
// strings the host wrote, anything kv calls returned) is released here.
func exportOutcome(flat *[16]uint64) {
	m := wasmMemory{}
	o := decodeOutcome(m, (*outcomeFlat)(flat))
	runOutcome(o)
	release()
}

//go:wasmimport $root log
func rawLog(level uint32, ptr unsafe.Pointer, n uint32)

//go:wasmimport $root now-unix-ms
func rawNow() uint64

//go:wasmimport $root onion-blob
func rawOnionBlob(ret unsafe.Pointer)

//go:wasmimport $root kv-get
func rawKVGet(key unsafe.Pointer, keyLen uint32, ret unsafe.Pointer)

//go:wasmimport $root kv-set
func rawKVSet(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32, ret unsafe.Pointer)

//go:wasmimport $root kv-delete
func rawKVDelete(key unsafe.Pointer, keyLen uint32, ret unsafe.Pointer)

//go:wasmimport $root channel
func rawChannel(chanID uint64, ret unsafe.Pointer)

//go:wasmimport $root block-height
func rawBlockHeight(ret unsafe.Pointer)

func hostLog(level Level, message string) {
	rawLog(uint32(level), unsafe.Pointer(unsafe.StringData(message)), uint32(len(message)))
}

func hostNow() uint64 { return rawNow() }

func hostOnionBlob() []byte {
	rawOnionBlob(unsafe.Pointer(&onionRet))
	r := wasmMemory{}.view(addrOf(unsafe.Pointer(&onionRet)), 8)
	// The host wrote the blob into call memory (cabi_realloc); copy it out.
	return bytesAt(wasmMemory{}, r)
}

// retView is a return area seen as bytes.
func retView[T any](area *T, n uint32) []byte {
	return wasmMemory{}.view(addrOf(unsafe.Pointer(area)), n)
}

// The host writes lists it returns (a kv value, a channel's peer) into call
// memory through cabi_realloc; the decoders copy them out.

func hostKVGet(key []byte) ([]byte, bool, error) {
	rawKVGet(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)), unsafe.Pointer(&kvRet))
	return decodeKVGet(wasmMemory{}, retView(&kvRet, kvResultSize))
}

func hostKVSet(key, value []byte) error {
	rawKVSet(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)),
		unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)), unsafe.Pointer(&kvRet))
	return decodeKVSet(wasmMemory{}, retView(&kvRet, kvResultSize))
}

func hostKVDelete(key []byte) (bool, error) {
	rawKVDelete(unsafe.Pointer(unsafe.SliceData(key)), uint32(len(key)), unsafe.Pointer(&kvRet))
	return decodeKVDelete(wasmMemory{}, retView(&kvRet, kvResultSize))
}

func hostChannel(scid Scid) (ChannelInfo, bool) {
	rawChannel(uint64(scid), unsafe.Pointer(&channelRet))
	return decodeChannel(wasmMemory{}, retView(&channelRet, channelResultSize))
}

func hostBlockHeight() (uint32, bool) {
	rawBlockHeight(unsafe.Pointer(&heightRet))
	return decodeBlockHeight(retView(&heightRet, heightResultSize))
}
