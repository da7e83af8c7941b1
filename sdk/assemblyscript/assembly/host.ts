// The world's host imports (module `$root`), lowered by hand.

/** log: func(level: log-level, message: string) -> (i32, i32, i32). */
// @ts-ignore: decorator
@external("$root", "log")
export declare function hostLog(level: u32, ptr: usize, len: usize): void;

/** now-unix-ms: func() -> u64. */
// @ts-ignore: decorator
@external("$root", "now-unix-ms")
export declare function hostNowUnixMs(): u64;

/** onion-blob: func() -> list<u8>, written as (ptr, len) at `ret`. */
// @ts-ignore: decorator
@external("$root", "onion-blob")
export declare function hostOnionBlob(ret: usize): void;

/** kv-get: func(key: list<u8>) -> result<option<list<u8>>, kv-error>, written at `ret` (16 bytes). */
// @ts-ignore: decorator
@external("$root", "kv-get")
export declare function hostKvGet(key: usize, keyLen: usize, ret: usize): void;

/** kv-set: func(key: list<u8>, value: list<u8>) -> result<_, kv-error>, written at `ret` (16 bytes). */
// @ts-ignore: decorator
@external("$root", "kv-set")
export declare function hostKvSet(key: usize, keyLen: usize, value: usize, valueLen: usize, ret: usize): void;

/** kv-delete: func(key: list<u8>) -> result<bool, kv-error>, written at `ret` (16 bytes). */
// @ts-ignore: decorator
@external("$root", "kv-delete")
export declare function hostKvDelete(key: usize, keyLen: usize, ret: usize): void;

/** channel: func(chan-id: u64) -> option<channel-info>, written at `ret` (64 bytes, align 8). */
// @ts-ignore: decorator
@external("$root", "channel")
export declare function hostChannel(chanId: u64, ret: usize): void;

/** block-height: func() -> option<u32>, written at `ret` (8 bytes). */
// @ts-ignore: decorator
@external("$root", "block-height")
export declare function hostBlockHeight(ret: usize): void;

/**
 * `s` as UTF-8 for a world `string` (a log line, init's error). An
 * AssemblyScript string is UTF-16 and may hold lone surrogates, which have no
 * UTF-8 form: each becomes U+FFFD, since htlcgate checks the world's strings
 * and faults the plugin on one that is not UTF-8 (String.UTF8.encode's default
 * would write them as WTF-8).
 */
export function worldUtf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
}
