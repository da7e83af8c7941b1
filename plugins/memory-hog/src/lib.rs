//! Fault fixture `memory-hog`: allocates without bound in `decide`.
//!
//! Each call allocates 1 MiB blocks, fills them (so the pages are really used)
//! and keeps them, in a loop that never ends by itself: it stops only when the
//! host's memory cap makes an allocation fail, which aborts (traps) the
//! instance. What it took stays held between calls, because the instance lives
//! in the static that `export_plugin!` keeps. Tests load it to prove the memory
//! cap holds and the HTLC still gets an answer. Not a policy: do not put it in a
//! real chain.
//!
//! Config: none.

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Size of each block taken.
const BLOCK: usize = 1 << 20;

/// Holds every block it ever allocated.
pub struct MemoryHog {
    /// Blocks taken so far; never freed.
    hoard: Vec<Vec<u8>>,
}

impl Plugin for MemoryHog {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(MemoryHog { hoard: Vec::new() })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        loop {
            // A non-zero fill writes every byte (zeroed memory could be left
            // untouched), and `black_box` keeps the block from being elided.
            let block = core::hint::black_box(vec![0xA5u8; BLOCK]);
            self.hoard.push(block);
        }
    }
}

export_plugin!(MemoryHog);
