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
