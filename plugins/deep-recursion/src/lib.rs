//! Fault fixture `deep-recursion`: recurses without bound in `decide`.
//!
//! The recursion is not a tail call and every frame keeps values alive across
//! the call (mixed through `black_box`), so the compiler can neither turn it into
//! a loop nor drop it: each level takes a real wasm stack frame until the host's
//! stack cap (`sandbox.max_wasm_stack_kb`) traps the call. Tests load it to prove
//! that a stack overflow is a contained fault and the HTLC is still answered.
//! Not a policy: do not put it in a real chain.
//!
//! Config:
//! - `depth` (optional, default unbounded): stop after this many levels and
//!   answer `next` (a bounded variant that must succeed).
//! - `frame` (optional, default `registers`): `registers` keeps each frame's
//!   values in wasm locals (the wasm stack overflows); `array` also keeps a
//!   1 KiB array per frame on the guest's shadow stack in linear memory (which
//!   overflows first, an out-of-bounds trap).

use core::hint::black_box;

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Recurses `depth` levels per call.
pub struct DeepRecursion {
    /// Levels per call; `u64::MAX` is "until something stops it".
    depth: u64,
    /// Whether each frame also holds an array in linear memory.
    array: bool,
}

/// One level: values computed before the call are used after it, so the frame
/// must stay.
#[inline(never)]
fn registers(n: u64, limit: u64, a: u64, b: u64, c: u64) -> u64 {
    if n >= limit {
        return a ^ b ^ c;
    }
    let x = black_box(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
    let y = black_box(b.rotate_left(13) ^ x);
    let z = black_box(c.wrapping_add(y));
    let below = registers(black_box(n + 1), limit, y, z, x);
    below.rotate_left((x & 63) as u32) ^ y.wrapping_mul(z) ^ x
}

/// One level with a 1 KiB array on the shadow stack.
#[inline(never)]
fn array(n: u64, limit: u64, seed: u64) -> u64 {
    if n >= limit {
        return seed;
    }
    let mut frame = [0u8; 1024];
    frame[(n % 1024) as usize] = seed as u8;
    let frame = black_box(frame);
    let below = array(black_box(n + 1), limit, seed.rotate_left(5) ^ n);
    below.rotate_left(u32::from(frame[((n * 7) % 1024) as usize] & 63)) ^ n
}

impl Plugin for DeepRecursion {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["depth", "frame"])?;
        let depth = config.parse_or("depth", u64::MAX)?;
        let array = match config.get("frame").map(str::trim) {
            None | Some("registers") => false,
            Some("array") => true,
            Some(other) => {
                return Err(format!(
                    "config key `frame`: expected registers or array, got `{other}`"
                ))
            }
        };
        Ok(DeepRecursion { depth, array })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let seed = htlc.outgoing_amount_msat();
        let r = if self.array {
            array(0, self.depth, seed)
        } else {
            registers(0, self.depth, seed, seed ^ 1, seed ^ 2)
        };
        black_box(r);
        Verdict::next()
    }
}

export_plugin!(DeepRecursion);
