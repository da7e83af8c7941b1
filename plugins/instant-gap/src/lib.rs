//! Fixture `instant-gap`: decides by the monotonic clock and by randomness, the
//! two things a plugin reads from WASI without a grant. `htlcgate replay` must
//! give it the recorded spacing of the HTLCs (not how fast it reads the file) and
//! the same random draws on every run. Not a policy: do not put it in a real
//! chain.
//!
//! Config:
//! - `min_gap_ms` (optional, default 0): fail an HTLC that comes sooner than this
//!   after the previous one by `std::time::Instant`.
//! - `coin` (optional, default false): fail an HTLC when a random u64 is odd.

use std::time::{Duration, Instant};

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// A plugin that decides by the monotonic clock and randomness.
pub struct InstantGap {
    /// The shortest gap between two HTLCs that is not failed.
    min_gap: Duration,
    /// Fail on an odd random draw.
    coin: bool,
    /// When the previous HTLC came.
    last: Option<Instant>,
}

impl Plugin for InstantGap {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["min_gap_ms", "coin"])?;
        Ok(InstantGap {
            min_gap: Duration::from_millis(config.parse_or("min_gap_ms", 0)?),
            coin: config.parse_or("coin", false)?,
            last: None,
        })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        let now = Instant::now();
        let too_soon = self
            .last
            .is_some_and(|last| now.duration_since(last) < self.min_gap);
        self.last = Some(now);
        if too_soon {
            return Verdict::fail_temporary();
        }
        if self.coin && getrandom::u64().is_ok_and(|v| v % 2 == 1) {
            return Verdict::fail_temporary();
        }
        Verdict::next()
    }
}

export_plugin!(InstantGap);
