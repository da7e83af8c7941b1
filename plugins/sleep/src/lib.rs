//! Fault fixture `sleep`: waits in WASI instead of computing.
//!
//! `std::thread::sleep` on wasm32-wasip2 subscribes to the monotonic clock and
//! blocks on the pollable: host code, where neither fuel nor the epoch deadline
//! runs. The host must still end the call at the plugin's `timeout_ms` (or
//! `init_timeout_ms`) as a deadline fault. Not a policy: do not put it in a real
//! chain.
//!
//! Config:
//! - `decide_ms` (optional, default 3600000): how long `decide` sleeps before it
//!   answers `next`.
//! - `init_ms` (optional, default 0): how long `init` sleeps.

use std::time::Duration;

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// A plugin that sleeps.
pub struct Sleep {
    /// How long each `decide` sleeps.
    decide: Duration,
}

impl Plugin for Sleep {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["decide_ms", "init_ms"])?;
        let ms = |key: &str, default: u64| -> Result<u64, String> {
            match config.get(key) {
                None => Ok(default),
                Some(_) => config.require::<u64>(key),
            }
        };
        let decide = Duration::from_millis(ms("decide_ms", 3_600_000)?);
        std::thread::sleep(Duration::from_millis(ms("init_ms", 0)?));
        Ok(Sleep { decide })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        std::thread::sleep(self.decide);
        Verdict::next()
    }
}

export_plugin!(Sleep);
