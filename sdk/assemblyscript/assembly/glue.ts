// The component's core exports for world htlcgate:plugin@0.2.0 `decider`, with
// the canonical ABI by hand. Re-export them from the plugin's entry file:
//
//   export * from "htlcgate-sdk/assembly/glue";
//
// Layouts (canonical ABI: fields at their own alignment, list = (ptr u32,
// len u32), option/variant = discriminant byte then payload at its alignment):
//   htlc (104 bytes, align 8): chan-id u64 @0, htlc-id u64 @8, incoming-amount
//     u64 @16, incoming-expiry u32 @24, payment-hash list @28,
//     outgoing-requested-chan-id u64 @40, outgoing-amount u64 @48,
//     outgoing-expiry u32 @56, custom-records list @60, onion-blob-size u32
//     @68, auto-fail-height s32 @72, in-wire-custom-records list @76,
//     outgoing-requested-node-id option<list> @84 (list @88), attempt u32 @96
//   custom-record (16, align 8): key u64 @0, value list @8
//   resolution (48, align 8): case u8 @0, payload @8; modification: in-amount
//     option<u64> @8 (value @16), out-amount @24 (value @32), records list @40;
//     hold: u32 @8
//   result<_, string> (12, align 4): case u8 @0, string @4
// The optional `outcome` export is in outcome-glue.ts; the imports' results
// are lifted in kv.ts and node.ts.
//
// Memory: the host writes arguments through cabi_realloc into the heap; the
// runtime (runtime/per-call.ts) is released back to its post-init mark in
// cabi_post_decide, after the host has read the result.

import { Config } from "./config";
import { CircuitKey, Htlc, bytesAt } from "./htlc";
import { worldUtf8 } from "./host";
import { runDecide, runInit } from "./plugin";
import { Verdict, VerdictKind } from "./verdict";
// Parsed so that `--use abort=~lib/htlcgate-sdk/assembly/abort/abort` finds it.
import "./abort";

const DECIDE_RET = memory.data(48, 8);
const INIT_RET = memory.data(12, 4);

function recordsAt(at: usize): Map<u64, Uint8Array> {
  const out = new Map<u64, Uint8Array>();
  const n = load<u32>(at, 4);
  const base = <usize>load<u32>(at);
  for (let i: u32 = 0; i < n; i++) {
    const r = base + <usize>i * 16;
    out.set(load<u64>(r), bytesAt(r + 8));
  }
  return out;
}

/** Lifts the `htlc` record at `ptr`. */
export function decodeHtlc(ptr: usize): Htlc {
  const h = new Htlc();
  h.key = new CircuitKey(load<u64>(ptr, 0), load<u64>(ptr, 8));
  h.incomingAmountMsat = load<u64>(ptr, 16);
  h.incomingExpiry = load<u32>(ptr, 24);
  h.paymentHash = bytesAt(ptr + 28);
  h.outgoingChan = load<u64>(ptr, 40);
  h.outgoingAmountMsat = load<u64>(ptr, 48);
  h.outgoingExpiry = load<u32>(ptr, 56);
  h.customRecords = recordsAt(ptr + 60);
  h.onionBlobSize = load<u32>(ptr, 68);
  h.autoFailHeight = load<i32>(ptr, 72);
  h.inWireCustomRecords = recordsAt(ptr + 76);
  if (load<u8>(ptr, 84) != 0) h.outgoingNodeId = bytesAt(ptr + 88);
  h.attempt = load<u32>(ptr, 96);
  return h;
}

function putBytes(at: usize, b: Uint8Array): void {
  store<u32>(at, <u32>b.dataStart);
  store<u32>(at, <u32>b.length, 4);
}

/** Lowers `v` into the decide return area. */
export function encodeResolution(v: Verdict, ret: usize): void {
  memory.fill(ret, 0, 48);
  store<u8>(ret, <u8>v.kind);
  if (v.kind == VerdictKind.Fail) {
    store<u8>(ret, <u8>v.code, 8);
  } else if (v.kind == VerdictKind.Settle) {
    const p = v.preimage;
    putBytes(ret + 8, p != null ? p : new Uint8Array(0));
  } else if (v.kind == VerdictKind.ResumeModified) {
    if (v.hasInAmount) {
      store<u8>(ret, 1, 8);
      store<u64>(ret, v.inAmountMsat, 16);
    }
    if (v.hasOutAmount) {
      store<u8>(ret, 1, 24);
      store<u64>(ret, v.outAmountMsat, 32);
    }
    const keys = v.wireRecords.keys();
    keys.sort((a: u64, b: u64): i32 => (a < b ? -1 : a > b ? 1 : 0));
    const n = keys.length;
    const list = n > 0 ? __alloc(<usize>n * 16) : 8;
    for (let i = 0; i < n; i++) {
      const r = list + <usize>i * 16;
      store<u64>(r, keys[i]);
      putBytes(r + 8, v.wireRecords.get(keys[i]));
    }
    store<u32>(ret, <u32>list, 40);
    store<u32>(ret, <u32>n, 44);
  } else if (v.kind == VerdictKind.Hold) {
    store<u32>(ret, v.holdMs, 8);
  } else if (v.kind != VerdictKind.Next && v.kind != VerdictKind.Resume) {
    // Not a kind the constructors make: `next` cannot lose an HTLC.
    store<u8>(ret, <u8>VerdictKind.Next);
  }
}

/** The allocator the host writes arguments (and the onion blob) with. */
export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (newSize == 0) return align;
  // The runtime's blocks are 16-byte aligned: enough for every ABI alignment.
  const p = __alloc(newSize);
  if (oldPtr != 0) memory.copy(p, oldPtr, min(oldSize, newSize));
  return p;
}

/** init: func(config: list<tuple<string, string>>) -> result<_, string>. */
export function init(ptr: usize, n: u32): usize {
  const config = new Config();
  for (let i: u32 = 0; i < n; i++) {
    const p = ptr + <usize>i * 16;
    config.keys.push(String.UTF8.decodeUnsafe(<usize>load<u32>(p), <usize>load<u32>(p, 4)));
    config.values.push(String.UTF8.decodeUnsafe(<usize>load<u32>(p, 8), <usize>load<u32>(p, 12)));
  }
  const err = runInit(config);
  memory.fill(INIT_RET, 0, 12);
  if (err != null) {
    const utf8 = worldUtf8(err);
    store<u8>(INIT_RET, 1);
    store<u32>(INIT_RET, <u32>changetype<usize>(utf8), 4);
    store<u32>(INIT_RET, <u32>utf8.byteLength, 8);
  }
  return INIT_RET;
}

/** After init: what init built stays; per-call memory starts here. */
export function cabi_post_init(ret: usize): void {
  __htlcgate_mark();
}

/** decide: func(htlc: htlc) -> resolution. */
export function decide(ptr: usize): usize {
  encodeResolution(runDecide(decodeHtlc(ptr)), DECIDE_RET);
  return DECIDE_RET;
}

/** After decide: the call's memory is free again. */
export function cabi_post_decide(ret: usize): void {
  __htlcgate_release();
}
