// The htlcgate plugin runtime: AssemblyScript's `stub` runtime (a bump
// allocator that never frees) plus a mark and a release, so that a plugin's
// memory does not grow across calls.
//
// The SDK's glue marks the heap after `init` (everything the plugin built there,
// its Decider and its config, stays) and releases back to the mark after every
// `decide`, once the host has read the result (`cabi_post_decide`). So each call
// starts from the same heap: the arguments the host writes, the Htlc object and
// the Verdict live for one call only.
//
// The price: an object allocated during `decide` must not be kept in the
// Decider (it is overwritten by the next call). Keep numbers in fields, or
// allocate containers in init with their final capacity (StaticArray, a
// preallocated Uint8Array) and only write into them.
//
// Unlike `stub`, __new and __renew zero what they hand out: asc treats a
// runtime given by path as Incremental and the standard library relies on that.
//
// Build with: asc ... --runtime <this file without .ts>.
// Derived from assemblyscript/std/assembly/rt/stub.ts (Apache-2.0).

import { AL_MASK, OBJECT, OBJECT_OVERHEAD, BLOCK_MAXSIZE, BLOCK_OVERHEAD, BLOCK, OBJECT_MAXSIZE } from "rt/common";
import { E_ALLOCATION_TOO_LARGE } from "util/error";

// @ts-ignore: decorator
@lazy let startOffset: usize = ((__heap_base + BLOCK_OVERHEAD + AL_MASK) & ~AL_MASK) - BLOCK_OVERHEAD;
// @ts-ignore: decorator
@lazy let offset: usize = startOffset;
// @ts-ignore: decorator
@lazy let markOffset: usize = 0;

function maybeGrowMemory(newOffset: usize): void {
  // assumes newOffset is aligned
  let pagesBefore = memory.size();
  let maxOffset = ((<usize>pagesBefore << 16) + AL_MASK) & ~AL_MASK;
  if (newOffset > maxOffset) {
    let pagesNeeded = <i32>(((newOffset - maxOffset + 0xffff) & ~0xffff) >>> 16);
    // Grow by what is needed, not double: the host caps a plugin's memory and
    // counts every page.
    if (memory.grow(pagesNeeded) < 0) unreachable(); // out of memory
  }
  offset = newOffset;
}

// @ts-ignore: decorator
@inline function computeSize(size: usize): usize {
  return ((size + BLOCK_OVERHEAD + AL_MASK) & ~AL_MASK) - BLOCK_OVERHEAD;
}

// @ts-ignore: decorator
@unsafe @global
export function __alloc(size: usize): usize {
  if (size > BLOCK_MAXSIZE) throw new Error(E_ALLOCATION_TOO_LARGE);
  let block = changetype<BLOCK>(offset);
  let ptr = offset + BLOCK_OVERHEAD;
  let payloadSize = computeSize(size);
  maybeGrowMemory(ptr + payloadSize);
  block.mmInfo = payloadSize;
  return ptr;
}

// @ts-ignore: decorator
@unsafe @global
export function __realloc(ptr: usize, size: usize): usize {
  assert(ptr != 0 && !(ptr & AL_MASK)); // must exist and be aligned
  let block = changetype<BLOCK>(ptr - BLOCK_OVERHEAD);
  let actualSize = block.mmInfo;
  let isLast = ptr + actualSize == offset;
  let payloadSize = computeSize(size);
  if (size > actualSize) {
    if (isLast) { // last block: grow
      if (size > BLOCK_MAXSIZE) throw new Error(E_ALLOCATION_TOO_LARGE);
      maybeGrowMemory(ptr + payloadSize);
      block.mmInfo = payloadSize;
    } else { // copy to new block at least double the size
      let newPtr = __alloc(max<usize>(payloadSize, actualSize << 1));
      memory.copy(newPtr, ptr, actualSize);
      block = changetype<BLOCK>((ptr = newPtr) - BLOCK_OVERHEAD);
    }
  } else if (isLast) { // last block: shrink
    offset = ptr + payloadSize;
    block.mmInfo = payloadSize;
  }
  return ptr;
}

// @ts-ignore: decorator
@unsafe @global
export function __free(ptr: usize): void {
  assert(ptr != 0 && !(ptr & AL_MASK)); // must exist and be aligned
  let block = changetype<BLOCK>(ptr - BLOCK_OVERHEAD);
  // Never below the mark: what init built must stay.
  if (ptr + block.mmInfo == offset && changetype<usize>(block) >= markOffset) {
    offset = changetype<usize>(block);
  }
}

// @ts-ignore: decorator
@unsafe @global
export function __reset(): void { // special
  offset = markOffset != 0 ? markOffset : startOffset;
}

/** Marks the heap: what is allocated so far survives every release. */
// @ts-ignore: decorator
@unsafe @global
export function __htlcgate_mark(): void {
  markOffset = offset;
}

/** Frees everything allocated since the mark (nothing before a mark exists). */
// @ts-ignore: decorator
@unsafe @global
export function __htlcgate_release(): void {
  if (markOffset != 0) offset = markOffset;
}

/** The heap's current end, for tests of the per-call reset. */
// @ts-ignore: decorator
@unsafe @global
export function __htlcgate_heap_end(): usize {
  return offset;
}

// @ts-ignore: decorator
@unsafe @global
export function __new(size: usize, id: u32): usize {
  if (size > OBJECT_MAXSIZE) throw new Error(E_ALLOCATION_TOO_LARGE);
  let ptr = __alloc(OBJECT_OVERHEAD + size);
  let object = changetype<OBJECT>(ptr - BLOCK_OVERHEAD);
  object.gcInfo = 0;
  object.gcInfo2 = 0;
  object.rtId = id;
  object.rtSize = <u32>size;
  // asc treats a runtime given by path as Incremental (ASC_RUNTIME), whose
  // __new zeroes memory, so the standard library skips zeroing new
  // ArrayBuffers, Arrays, StaticArrays and Map buckets. Released memory still
  // holds the previous call's bytes: without this, a Map built in one call can
  // find another call's garbage in its buckets.
  memory.fill(ptr + OBJECT_OVERHEAD, 0, size);
  return ptr + OBJECT_OVERHEAD;
}

// @ts-ignore: decorator
@unsafe @global
export function __renew(oldPtr: usize, size: usize): usize {
  if (size > OBJECT_MAXSIZE) throw new Error(E_ALLOCATION_TOO_LARGE);
  let oldSize = <usize>changetype<OBJECT>(oldPtr - OBJECT_OVERHEAD - BLOCK_OVERHEAD).rtSize;
  let newPtr = __realloc(oldPtr - OBJECT_OVERHEAD, OBJECT_OVERHEAD + size);
  changetype<OBJECT>(newPtr - BLOCK_OVERHEAD).rtSize = <u32>size;
  // Zero the growth, as the Incremental runtime's __renew does (see __new).
  if (size > oldSize) memory.fill(newPtr + OBJECT_OVERHEAD + oldSize, 0, size - oldSize);
  return newPtr + OBJECT_OVERHEAD;
}

// @ts-ignore: decorator
@global @unsafe
export function __link(parentPtr: usize, childPtr: usize, expectMultiple: bool): void {
  // nop
}

// @ts-ignore: decorator
@global @unsafe
export function __pin(ptr: usize): usize {
  return ptr;
}

// @ts-ignore: decorator
@global @unsafe
export function __unpin(ptr: usize): void {
  // nop
}

// @ts-ignore: decorator
@global @unsafe
function __visit(ptr: usize, cookie: u32): void { // eslint-disable-line @typescript-eslint/no-unused-vars
  // nop
}

// @ts-ignore: decorator
@global @unsafe
export function __collect(): void {
  // nop
}
