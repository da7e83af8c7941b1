//! Fault fixture `slow-init`: spins in `init`.
//!
//! `init` burns CPU for `spins` iterations (or forever) before it accepts the
//! config. Forever: the host must stop it with `init_fuel` or `init_timeout_ms`
//! and refuse the load naming the plugin. A bounded count: it loads and answers
//! `next`, or traps in every `decide` (`decide = "trap"`) so that the host has to
//! run the slow `init` again for each replacement instance. Not a policy: do not
//! put it in a real chain.
//!
//! Config:
//! - `spins` (optional, default `forever`): iterations of the loop in `init`, or
//!   `forever`.
//! - `decide` (optional, default `next`): `next` or `trap`.

use core::hint::black_box;

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// A plugin whose start-up is slow.
pub struct SlowInit {
    /// Trap in every `decide`.
    trap: bool,
    /// What the spin computed (kept so the loop is not dead code).
    spun: u64,
}

impl Plugin for SlowInit {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["spins", "decide"])?;
        let spins = match config.get("spins").map(str::trim) {
            None | Some("forever") => u64::MAX,
            Some(_) => config.require::<u64>("spins")?,
        };
        let trap = match config.get("decide").map(str::trim) {
            None | Some("next") => false,
            Some("trap") => true,
            Some(other) => {
                return Err(format!(
                    "config key `decide`: expected next or trap, got `{other}`"
                ))
            }
        };
        let mut acc: u64 = 0;
        let mut i: u64 = 0;
        // `u64::MAX` iterations is forever for any practical purpose; `black_box`
        // keeps the loop from being folded away.
        while i < spins {
            acc = black_box(acc.wrapping_mul(31).wrapping_add(i));
            i += 1;
        }
        Ok(SlowInit { trap, spun: acc })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        black_box(self.spun);
        if self.trap {
            panic!(
                "slow-init fixture: trapping in decide ({})",
                htlc.circuit_key()
            );
        }
        Verdict::next()
    }
}

export_plugin!(SlowInit);
