// The plugin's key-value namespace (imports kv-get, kv-set, kv-delete; grant
// `kv`: htlcgate refuses to load a plugin that calls them without
// `grants = ["kv"]`). Namespaces are per plugin name: a new version of the
// plugin sees what the old one wrote, and values survive restarts (they are on
// disk before any verdict decided after the write reaches LND).
//
// A refusal is returned, never thrown (AssemblyScript has no exceptions):
// check `error`. Values live in call memory, which the SDK's runtime releases
// after each call: copy what you keep into memory allocated in init.

import { hostKvDelete, hostKvGet, hostKvSet } from "./host";
import { bytesAt } from "./htlc";

/** Where the host writes a kv import's result (16 bytes, align 4). */
const KV_RET = memory.data(16, 4);

/** Why the store refused an operation (the world's `kv-error` case). */
export enum KvErrorKind {
  /** The key is longer than the plugin's kv_max_key_bytes (`limit`). */
  KeyTooLong = 0,
  /** The value is longer than the plugin's kv_max_value_bytes (`limit`). */
  ValueTooLong = 1,
  /** The namespace already holds kv_max_keys keys (`limit`); delete some. */
  TooManyKeys = 2,
  /** The host's database failed (`message` says why). */
  Storage = 3,
}

/** A refusal of the key-value store; nothing was changed. */
export class KvError {
  constructor(
    /** Which refusal. */
    public kind: KvErrorKind,
    /** The limit that was hit (KeyTooLong, ValueTooLong, TooManyKeys). */
    public limit: u32,
    /** The host's reason (Storage). */
    public message: string,
  ) {}

  /** The refusal in words, naming the limit and what to do. */
  toString(): string {
    const limit = this.limit.toString();
    switch (this.kind) {
      case KvErrorKind.KeyTooLong:
        return "kv: key longer than the plugin's limit of " + limit + " bytes (kv_max_key_bytes)";
      case KvErrorKind.ValueTooLong:
        return "kv: value longer than the plugin's limit of " + limit + " bytes (kv_max_value_bytes)";
      case KvErrorKind.TooManyKeys:
        return "kv: the namespace already holds its limit of " + limit + " keys (kv_max_keys); delete some";
      case KvErrorKind.Storage:
        return "kv: the host's storage failed: " + this.message;
    }
    return "kv: refused (" + this.message + ")";
  }
}

/**
 * Lifts the `kv-error` of a result at `ret` (case u8 at 4; the limit u32 or
 * the storage message at 8).
 */
export function kvErrorAt(ret: usize): KvError {
  const kind = load<u8>(ret, 4);
  if (kind == <u8>KvErrorKind.Storage) {
    return new KvError(KvErrorKind.Storage, 0, String.UTF8.decodeUnsafe(<usize>load<u32>(ret, 8), <usize>load<u32>(ret, 12)));
  }
  if (kind < <u8>KvErrorKind.Storage) return new KvError(<KvErrorKind>kind, load<u32>(ret, 8), "");
  return new KvError(KvErrorKind.Storage, 0, "unknown kv-error case " + kind.toString());
}

/** What kvGet found: the value (null when the key is absent), or the refusal. */
export class KvGetResult {
  /** The value, or null when there is none (or on error). */
  value: Uint8Array | null = null;
  /** The refusal, or null. */
  error: KvError | null = null;
}

/** Lifts kv-get's result<option<list<u8>>, kv-error> at `ret`. */
export function kvGetResultAt(ret: usize): KvGetResult {
  const r = new KvGetResult();
  if (load<u8>(ret) != 0) r.error = kvErrorAt(ret);
  else if (load<u8>(ret, 4) != 0) r.value = bytesAt(ret + 8);
  return r;
}

/** What kvDelete did: whether the key was there, or the refusal. */
export class KvDeleteResult {
  /** The key was there (and is gone now). */
  existed: bool = false;
  /** The refusal, or null. */
  error: KvError | null = null;
}

/** The value stored under `key`, if any. Needs the `kv` grant. */
export function kvGet(key: Uint8Array): KvGetResult {
  hostKvGet(key.dataStart, <usize>key.length, KV_RET);
  return kvGetResultAt(KV_RET);
}

/** Stores `value` under `key`; null, or the refusal. Needs the `kv` grant. */
export function kvSet(key: Uint8Array, value: Uint8Array): KvError | null {
  hostKvSet(key.dataStart, <usize>key.length, value.dataStart, <usize>value.length, KV_RET);
  return load<u8>(KV_RET) != 0 ? kvErrorAt(KV_RET) : null;
}

/** Removes `key`; says whether it was there. Needs the `kv` grant. */
export function kvDelete(key: Uint8Array): KvDeleteResult {
  hostKvDelete(key.dataStart, <usize>key.length, KV_RET);
  const r = new KvDeleteResult();
  if (load<u8>(KV_RET) != 0) r.error = kvErrorAt(KV_RET);
  else r.existed = load<u8>(KV_RET, 4) != 0;
  return r;
}

/** A string's UTF-8 bytes, e.g. for a key: kvGet(utf8("count")). */
export function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}
