//! Fault fixture `trap`: panics (which traps the instance) in `decide`.
//!
//! Tests load it to prove that a trapping plugin is contained: the HTLC still
//! gets an answer, the instance is replaced (and `init` runs again), and a
//! plugin that keeps trapping is quarantined. Not a policy: do not put it in a
//! real chain.
//!
//! Config:
//! - `every` (optional, default 1): trap on every Nth call of this instance and
//!   answer `next` otherwise. The count restarts with each new instance, so
//!   with `every = 2` the first call on each instance answers `next` and the
//!   second traps.

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Counts calls and traps on every `every`th.
pub struct Trap {
    /// Trap when `calls` is a multiple of this (at least 1).
    every: u64,
    /// Calls of `decide` on this instance.
    calls: u64,
}

impl Plugin for Trap {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["every"])?;
        let every = config.parse_or("every", 1)?;
        if every == 0 {
            return Err("config key `every` must be at least 1 (1 traps on every call)".into());
        }
        Ok(Trap { every, calls: 0 })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        self.calls += 1;
        if !self.calls.is_multiple_of(self.every) {
            return Verdict::next();
        }
        // With `panic = "abort"` (the plugin profile) this is an `unreachable`
        // trap after the message is written to stderr.
        panic!(
            "trap fixture: trapping on call {} ({})",
            self.calls,
            htlc.circuit_key()
        );
    }
}

export_plugin!(Trap);
