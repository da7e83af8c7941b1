//! Fault fixture `spin-forever`: never returns from `decide`.
//!
//! Tests load it to prove that a plugin stuck in a loop is stopped by the host
//! (fuel or wall-clock deadline) and that the HTLC still gets an answer. Not a
//! policy: do not put it in a real chain.
//!
//! Config: none.

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Spins on every HTLC.
pub struct SpinForever;

impl Plugin for SpinForever {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(SpinForever)
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        let mut spins: u64 = 0;
        loop {
            // `black_box` keeps the counter (and so the loop body) from being
            // optimised away: the fixture must burn fuel, not just hang.
            spins = core::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export_plugin!(SpinForever);
