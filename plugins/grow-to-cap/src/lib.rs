//! Fault fixture `grow-to-cap`: grows its linear memory in one `memory.grow`.
//!
//! Each call grows memory 0 with one `memory.grow` instruction, either to a
//! total of `pages` (when it is smaller) or by `delta_pages`, then answers
//! `next`. Tests set `pages` to the cap plus one (the host must trap the call
//! with a memory fault), to exactly the cap or just below it (must succeed), or
//! `delta_pages` to something huge. Not a policy: do not put it in a real chain.
//!
//! Config (exactly one of):
//! - `pages`: the total size, in 64 KiB pages, to grow memory to.
//! - `delta_pages`: how many pages to add on every call.
//!
//! If the host refuses a grow without trapping (`memory.grow` returns -1), the
//! call answers `fail`, so a test sees that the grow did not happen.

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// How to grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grow {
    /// To this many pages in total.
    To(usize),
    /// By this many pages.
    By(usize),
}

/// Grows memory once per call.
pub struct GrowToCap {
    /// How to grow.
    grow: Grow,
}

impl Plugin for GrowToCap {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["pages", "delta_pages"])?;
        let grow = match (config.parse("pages")?, config.parse("delta_pages")?) {
            (Some(pages), None) => Grow::To(pages),
            (None, Some(delta)) => Grow::By(delta),
            _ => {
                return Err(
                    "set exactly one of config keys `pages` (total size) or `delta_pages` (growth per call), in 64 KiB pages".into(),
                )
            }
        };
        Ok(GrowToCap { grow })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        let delta = match self.grow {
            Grow::To(pages) => pages.saturating_sub(current_pages()),
            Grow::By(delta) => delta,
        };
        if delta > 0 && grow(delta) == usize::MAX {
            return Verdict::fail_temporary();
        }
        Verdict::next()
    }
}

/// Pages of memory 0 now.
#[cfg(target_arch = "wasm32")]
fn current_pages() -> usize {
    core::arch::wasm32::memory_size(0)
}

/// One `memory.grow`; the old size in pages, or `usize::MAX` if refused.
#[cfg(target_arch = "wasm32")]
fn grow(delta: usize) -> usize {
    core::arch::wasm32::memory_grow(0, delta)
}

/// Host builds (unit tests) have no linear memory.
#[cfg(not(target_arch = "wasm32"))]
fn current_pages() -> usize {
    0
}

/// Host builds (unit tests) have no linear memory.
#[cfg(not(target_arch = "wasm32"))]
fn grow(_delta: usize) -> usize {
    usize::MAX
}

export_plugin!(GrowToCap);
