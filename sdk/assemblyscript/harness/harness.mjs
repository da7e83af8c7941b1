// A host for tests on the build machine: loads a plugin's core module (the
// asc output, before `htlcgate componentize`) in Node.js, provides the world's
// imports, and calls init and decide through the same canonical ABI htlcgate
// uses, so that a plugin's unit tests exercise its real glue.
//
//   import { loadPlugin, forward } from "htlcgate-sdk/harness";
//   const p = await loadPlugin("build/core.wasm", { base_msat: "1000" });
//   p.decide(forward(1_001_100n, 1_000_000n)); // => { kind: "next" }

import { readFile } from "node:fs/promises";

const KINDS = ["next", "resume", "fail", "settle", "resume-modified"];
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
  };
}

/** Loads the core module at `path` and runs init with `config` (an object of strings). */
export async function loadPlugin(path, config = {}) {
  const lines = [];
  let current = null;
  let instance;
  const mem = () => new DataView(instance.exports.memory.buffer);
  const bytes = (ptr, len) => new Uint8Array(instance.exports.memory.buffer, ptr, len);
  const alloc = (len, align) => instance.exports.cabi_realloc(0, 0, align, len) >>> 0;
  const put = (data, align = 1) => {
    const ptr = alloc(data.length, align);
    bytes(ptr, data.length).set(data);
    return ptr;
  };
  const putList = (at, data) => {
    mem().setUint32(at, data.length ? put(data) : 1, true);
    mem().setUint32(at + 4, data.length, true);
  };
  const imports = {
    $root: {
      log(level, ptr, len) {
        lines.push({ level: LEVELS[level], message: new TextDecoder().decode(bytes(ptr, len).slice()) });
      },
      "now-unix-ms"() {
        return BigInt(Date.now());
      },
      "onion-blob"(ret) {
        const blob = current ? current.onionBlob : new Uint8Array(0);
        putList(ret, blob);
      },
    },
  };
  ({ instance } = await WebAssembly.instantiate(await readFile(path), imports));

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
    error = new TextDecoder().decode(bytes(mem().getUint32(ret + 4, true), mem().getUint32(ret + 8, true)).slice());
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
    /** Decides one HTLC (see forward()); returns { kind, code?, ... }. */
    decide(h) {
      current = h;
      const r = alloc(96, 8);
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
      const ret = instance.exports.decide(r) >>> 0;
      const out = mem();
      const verdict = { kind: KINDS[out.getUint8(ret)] };
      if (verdict.kind === "fail") verdict.code = CODES[out.getUint8(ret + 8)];
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
    /** Bytes of linear memory, to check that it does not grow. */
    memoryBytes() {
      return instance.exports.memory.buffer.byteLength;
    },
  };
}
