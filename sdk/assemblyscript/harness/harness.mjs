// A host for tests on the build machine: loads a plugin's core module (the
// asc output, before `htlcgate componentize`) in Node.js, provides the world's
// imports, and calls init and decide through the same canonical ABI htlcgate
// uses, so that a plugin's unit tests exercise its real glue.
//
//   import { loadPlugin, forward } from "htlcgate-sdk/harness";
//   const p = await loadPlugin("build/core.wasm", { base_msat: "1000" });
//   p.decide(forward(1_001_100n, 1_000_000n)); // => { kind: "next" }
//
// The node and the key-value store are stand-ins given as the third argument:
//
//   const p = await loadPlugin(core, {}, {
//     channels: [channel(1n, peerBytes)],  // what channel() answers (default none)
//     blockHeight: 850_000,                // what blockHeight() answers (default unknown)
//     kvLimits: { maxKeyBytes: 64 },       // refusals to provoke (default none)
//   });
//   p.kv;                                   // the namespace: Map of hex key -> Uint8Array
//   p.outcome(outcome("final", { settled: true }));

import { readFile } from "node:fs/promises";

const KINDS = ["next", "resume", "fail", "settle", "resume-modified", "hold"];
const OUTCOME_KINDS = ["forwarded", "settled", "forward-failed", "link-failed", "final"];
const CODES = ["temporary-channel-failure", "invalid-onion-hmac", "invalid-onion-key", "invalid-onion-version"];
const LEVELS = ["debug", "info", "warn", "error"];

/** A forward of `outgoing` msat for `incoming` msat (bigints) on channel 1. */
export function forward(incoming, outgoing, htlcId = 0n) {
  return {
    chanId: 1n,
    htlcId,
    incomingAmountMsat: incoming,
    incomingExpiry: 800_080,
    paymentHash: new Uint8Array(32),
    outgoingChanId: (1n << 40n) | (1n << 16n),
    outgoingAmountMsat: outgoing,
    outgoingExpiry: 800_040,
    customRecords: new Map(),
    onionBlob: new Uint8Array(1366),
    autoFailHeight: 800_070,
    inWireCustomRecords: new Map(),
    outgoingNodeId: null,
    attempt: 1,
  };
}

/** A channel for the `channels` option: peer is a 33-byte Uint8Array. */
export function channel(chanId, peer, fields = {}) {
  return {
    chanId,
    peer,
    capacitySat: 1_000_000n,
    localBalanceSat: 600_000n,
    remoteBalanceSat: 390_000n,
    unsettledBalanceSat: 0n,
    active: true,
    private: false,
    initiator: true,
    ...fields,
  };
}

/**
 * An outcome of `kind` ("forwarded", "settled", "forward-failed",
 * "link-failed", "final") for HTLC 1:htlcId, with the kind's fields:
 * amounts {incomingAmountMsat, outgoingAmountMsat, incomingExpiry,
 * outgoingExpiry}, preimage, linkFailure {wireFailureCode, detail, message},
 * settled, offchain.
 */
export function outcome(kind, fields = {}, htlcId = 0n) {
  return {
    chanId: 1n,
    htlcId,
    outgoingKey: kind === "final" ? null : { chanId: (1n << 40n) | (1n << 16n), htlcId: 5n },
    kind,
    amounts: { incomingAmountMsat: 0n, outgoingAmountMsat: 0n, incomingExpiry: 0, outgoingExpiry: 0 },
    preimage: new Uint8Array(32),
    linkFailure: { wireFailureCode: 0, detail: "", message: "" },
    settled: false,
    offchain: true,
    atUnixMs: 1_700_000_000_000n,
    ...fields,
  };
}

const hex = (b) => Buffer.from(b).toString("hex");

/**
 * The world's strings are UTF-8 and htlcgate checks every one it reads from a
 * plugin: text that is not UTF-8 is a fault there, so it throws here.
 */
function utf8(b, what) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(b);
  } catch {
    throw new Error(`the plugin wrote ${what} that is not valid UTF-8 (htlcgate would fault it): ${hex(b)}`);
  }
}

/**
 * Loads the core module at `path` and runs init with `config` (an object of
 * strings); `node` gives the stand-ins (see the top of this file).
 */
export async function loadPlugin(path, config = {}, node = {}) {
  const lines = [];
  const kv = new Map();
  const channels = new Map((node.channels ?? []).map((c) => [c.chanId, c]));
  const limits = node.kvLimits ?? {};
  let current = null;
  let instance;
  // Log calls made while the module is instantiated (the plugin's top-level
  // code runs then, before its exports exist), read once it is.
  const early = [];
  // The module's memory. Memory.grow detaches the old buffer: take a view only
  // after whatever may allocate (cabi_realloc), never across it.
  const buffer = () => {
    if (!instance) {
      throw new Error("the plugin's top-level code called a host function other than log while the module was instantiated, when the harness cannot reach its memory yet; call it from init or decide");
    }
    return instance.exports.memory.buffer;
  };
  const mem = () => new DataView(buffer());
  const bytes = (ptr, len) => new Uint8Array(buffer(), ptr, len);
  const alloc = (len, align) => instance.exports.cabi_realloc(0, 0, align, len) >>> 0;
  const put = (data, align = 1) => {
    const ptr = alloc(data.length, align);
    bytes(ptr, data.length).set(data);
    return ptr;
  };
  const putList = (at, data) => {
    const ptr = data.length ? put(data) : 1;
    mem().setUint32(at, ptr, true);
    mem().setUint32(at + 4, data.length, true);
  };
  const logLine = (level, ptr, len) => ({ level: LEVELS[level], message: utf8(bytes(ptr, len).slice(), "a log line") });
  const imports = {
    $root: {
      log(level, ptr, len) {
        if (!instance) early.push([level, ptr, len]);
        else lines.push(logLine(level, ptr, len));
      },
      "now-unix-ms"() {
        return BigInt(Date.now());
      },
      "onion-blob"(ret) {
        const blob = current ? current.onionBlob : new Uint8Array(0);
        putList(ret, blob);
      },
      "kv-get"(keyPtr, keyLen, ret) {
        const key = bytes(keyPtr, keyLen).slice();
        if (kvRefused(ret, key, null, false)) return;
        const value = kv.get(hex(key));
        mem().setUint8(ret, 0);
        mem().setUint8(ret + 4, value ? 1 : 0);
        if (value) putList(ret + 8, value);
      },
      "kv-set"(keyPtr, keyLen, valuePtr, valueLen, ret) {
        const key = bytes(keyPtr, keyLen).slice();
        const value = bytes(valuePtr, valueLen).slice();
        if (kvRefused(ret, key, value, !kv.has(hex(key)))) return;
        kv.set(hex(key), value);
        mem().setUint8(ret, 0);
      },
      "kv-delete"(keyPtr, keyLen, ret) {
        const key = bytes(keyPtr, keyLen).slice();
        if (kvRefused(ret, key, null, false)) return;
        mem().setUint8(ret, 0);
        mem().setUint8(ret + 4, kv.delete(hex(key)) ? 1 : 0);
      },
      channel(chanId, ret) {
        const c = channels.get(BigInt.asUintN(64, chanId));
        mem().setUint8(ret, c ? 1 : 0);
        if (!c) return;
        const v = mem();
        v.setBigUint64(ret + 8, c.chanId, true);
        putList(ret + 16, c.peer);
        mem().setBigUint64(ret + 24, c.capacitySat, true);
        mem().setBigUint64(ret + 32, c.localBalanceSat, true);
        mem().setBigUint64(ret + 40, c.remoteBalanceSat, true);
        mem().setBigUint64(ret + 48, c.unsettledBalanceSat, true);
        mem().setUint8(ret + 56, c.active ? 1 : 0);
        mem().setUint8(ret + 57, c.private ? 1 : 0);
        mem().setUint8(ret + 58, c.initiator ? 1 : 0);
      },
      "block-height"(ret) {
        const h = node.blockHeight;
        mem().setUint8(ret, h == null ? 0 : 1);
        if (h != null) mem().setUint32(ret + 4, h, true);
      },
    },
  };
  // Writes the kv-error the limits call for at ret; false when within them.
  const kvRefused = (ret, key, value, isNew) => {
    let kind = -1;
    let limit = 0;
    if (limits.storage) kind = 3;
    else if (limits.maxKeyBytes != null && key.length > limits.maxKeyBytes) [kind, limit] = [0, limits.maxKeyBytes];
    else if (value && limits.maxValueBytes != null && value.length > limits.maxValueBytes) [kind, limit] = [1, limits.maxValueBytes];
    else if (isNew && limits.maxKeys != null && kv.size >= limits.maxKeys) [kind, limit] = [2, limits.maxKeys];
    if (kind < 0) return false;
    mem().setUint8(ret, 1);
    mem().setUint8(ret + 4, kind);
    if (kind === 3) putList(ret + 8, new TextEncoder().encode(limits.storage));
    else mem().setUint32(ret + 8, limit, true);
    return true;
  };
  ({ instance } = await WebAssembly.instantiate(await readFile(path), imports));
  // Nothing ran since: the early lines are still where the plugin wrote them.
  for (const [level, ptr, len] of early) lines.push(logLine(level, ptr, len));

  const enc = new TextEncoder();
  const pairs = Object.entries(config).sort(([a], [b]) => (a < b ? -1 : 1));
  const list = alloc(pairs.length * 16, 4);
  pairs.forEach(([k, v], i) => {
    putList(list + i * 16, enc.encode(k));
    putList(list + i * 16 + 8, enc.encode(String(v)));
  });
  const ret = instance.exports.init(list, pairs.length) >>> 0;
  let error = null;
  if (mem().getUint8(ret) !== 0) {
    error = utf8(bytes(mem().getUint32(ret + 4, true), mem().getUint32(ret + 8, true)).slice(), "init's error");
  }
  instance.exports.cabi_post_init?.(ret);
  if (error !== null) throw new Error(`init refused: ${error}`);

  const putRecords = (at, map) => {
    const keys = [...map.keys()].sort((a, b) => (a < b ? -1 : 1));
    const ptr = keys.length ? alloc(keys.length * 16, 8) : 8;
    keys.forEach((k, i) => {
      mem().setBigUint64(ptr + i * 16, k, true);
      putList(ptr + i * 16 + 8, map.get(k));
    });
    mem().setUint32(at, ptr, true);
    mem().setUint32(at + 4, keys.length, true);
  };

  return {
    /** Log lines the plugin wrote: { level, message }. */
    lines,
    /** The plugin's kv namespace: hex key -> Uint8Array value. */
    kv,
    /** Decides one HTLC (see forward()); returns { kind, code?, ... }. */
    decide(h) {
      current = h;
      const r = alloc(104, 8);
      const v = mem();
      v.setBigUint64(r, h.chanId, true);
      v.setBigUint64(r + 8, h.htlcId, true);
      v.setBigUint64(r + 16, h.incomingAmountMsat, true);
      v.setUint32(r + 24, h.incomingExpiry, true);
      putList(r + 28, h.paymentHash);
      mem().setBigUint64(r + 40, h.outgoingChanId, true);
      mem().setBigUint64(r + 48, h.outgoingAmountMsat, true);
      mem().setUint32(r + 56, h.outgoingExpiry, true);
      putRecords(r + 60, h.customRecords);
      mem().setUint32(r + 68, h.onionBlob.length, true);
      mem().setInt32(r + 72, h.autoFailHeight, true);
      putRecords(r + 76, h.inWireCustomRecords);
      mem().setUint8(r + 84, h.outgoingNodeId ? 1 : 0);
      if (h.outgoingNodeId) putList(r + 88, h.outgoingNodeId);
      mem().setUint32(r + 96, h.attempt ?? 1, true);
      const ret = instance.exports.decide(r) >>> 0;
      const out = mem();
      const verdict = { kind: KINDS[out.getUint8(ret)] };
      if (verdict.kind === "fail") verdict.code = CODES[out.getUint8(ret + 8)];
      if (verdict.kind === "hold") verdict.ms = out.getUint32(ret + 8, true);
      if (verdict.kind === "settle") {
        verdict.preimage = bytes(out.getUint32(ret + 8, true), out.getUint32(ret + 12, true)).slice();
      }
      if (verdict.kind === "resume-modified") {
        if (out.getUint8(ret + 8)) verdict.inAmountMsat = out.getBigUint64(ret + 16, true);
        if (out.getUint8(ret + 24)) verdict.outAmountMsat = out.getBigUint64(ret + 32, true);
        const p = out.getUint32(ret + 40, true);
        verdict.wireRecords = new Map();
        for (let i = 0; i < out.getUint32(ret + 44, true); i++) {
          const at = p + i * 16;
          const val = bytes(out.getUint32(at + 8, true), out.getUint32(at + 12, true)).slice();
          verdict.wireRecords.set(out.getBigUint64(at, true), val);
        }
      }
      instance.exports.cabi_post_decide?.(ret);
      current = null;
      return verdict;
    },
    /** Whether the module exports the optional `outcome`. */
    exportsOutcome: typeof instance.exports.outcome === "function",
    /**
     * Tells the plugin an outcome (see outcome()) through its `outcome`
     * export, lowered to the 16 flat values htlcgate passes.
     */
    outcome(o) {
      const kind = OUTCOME_KINDS.indexOf(o.kind);
      if (kind < 0) throw new Error(`unknown outcome kind ${o.kind}`);
      // The kind's payload slots p0..p8 (i64 i64 i32 i32 i32 i64 i64 i32 i32).
      const p = [0n, 0n, 0, 0, 0, 0n, 0n, 0, 0];
      const a = o.amounts;
      const list = (b) => [b.length ? put(b) : 1, b.length];
      if (o.kind === "forwarded") [p[0], p[1], p[2], p[3]] = [a.incomingAmountMsat, a.outgoingAmountMsat, a.incomingExpiry, a.outgoingExpiry];
      if (o.kind === "settled") {
        const [ptr, len] = list(o.preimage);
        [p[0], p[1]] = [BigInt(ptr), BigInt(len)];
      }
      if (o.kind === "link-failed") {
        const f = o.linkFailure;
        const [dp, dl] = list(new TextEncoder().encode(f.detail));
        const [mp, ml] = list(new TextEncoder().encode(f.message));
        // The s32 is zero-extended into the i64 slot, as the canonical ABI joins it.
        p[0] = BigInt(f.wireFailureCode >>> 0);
        [p[1], p[2], p[3], p[4]] = [BigInt(dp), dl, mp, ml];
        [p[5], p[6], p[7], p[8]] = [a.incomingAmountMsat, a.outgoingAmountMsat, a.incomingExpiry, a.outgoingExpiry];
      }
      if (o.kind === "final") [p[0], p[1]] = [o.settled ? 1n : 0n, o.offchain ? 1n : 0n];
      const out = o.outgoingKey;
      instance.exports.outcome(
        o.chanId, o.htlcId, out ? 1 : 0, out ? out.chanId : 0n, out ? out.htlcId : 0n,
        kind, ...p, o.atUnixMs,
      );
    },
    /** Bytes of linear memory, to check that it does not grow. */
    memoryBytes() {
      return instance.exports.memory.buffer.byteLength;
    },
  };
}
