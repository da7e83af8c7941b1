//! `rate-limit`: at most `max_htlcs` HTLCs per incoming channel in any rolling
//! window of `window_secs`; the rest are failed with TEMPORARY_CHANNEL_FAILURE.
//!
//! The counters live in htlcgate's key-value store (grant `kv`), one key per
//! incoming channel, so a hot swap to a new version of this plugin and a restart
//! of htlcgate keep them: a peer cannot reset its allowance by waiting for a
//! redeploy. Under the limit the answer is `next` (no opinion: later plugins
//! decide), and the HTLC is counted.
//!
//! The window is divided into 64 slots (a window of 1 hour counts in slots of
//! 56.25 s): an HTLC is let through when fewer than `max_htlcs` were let through
//! in the current slot and the 63 before it. Each channel's counters take 273 bytes.
//! If `window_secs` changes, everything counted so far is kept in the current slot
//! (the limit errs on the strict side for one window, never lets a burst through).
//!
//! If the store refuses a write (for example `kv_max_keys` reached) the HTLC gets
//! `next` and an error is logged: a broken store must not stop forwarding.
//!
//! Config:
//! - `max_htlcs` (required, >= 1): HTLCs let through per channel per window.
//! - `window_secs` (default 60, 1..=2592000): the rolling window.
//!
//! ```toml
//! [[plugin]]
//! name = "rate-limit"
//! path = "target/wasm-plugins/rate-limit.wasm"
//! grants = ["kv"]
//! config = { max_htlcs = "100", window_secs = "3600" }
//! ```

use htlcgate_sdk::{export_plugin, kv, Config, Htlc, Plugin, Scid, Verdict};

/// Slots per window.
pub const SLOTS: usize = 64;
/// Encoding version of a channel's counters.
const FORMAT: u8 = 1;
/// Encoded size: format, slot length, last slot, counts.
pub const ENCODED_LEN: usize = 1 + 8 + 8 + 4 * SLOTS;

/// One channel's counters: HTLCs let through per slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Slot length in milliseconds when last written.
    slot_ms: u64,
    /// The newest slot written (milliseconds since the epoch / slot_ms).
    last_slot: u64,
    /// Counts, indexed by slot number modulo [`SLOTS`].
    counts: [u32; SLOTS],
}

impl Window {
    /// Empty counters for slots of `slot_ms`.
    pub fn new(slot_ms: u64) -> Window {
        Window {
            slot_ms,
            last_slot: 0,
            counts: [0; SLOTS],
        }
    }

    /// HTLCs let through in the window ending at `now_ms`.
    pub fn count(&mut self, now_ms: u64) -> u64 {
        self.advance(now_ms);
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Lets one HTLC through at `now_ms` if fewer than `max` were in the window;
    /// whether it did.
    pub fn admit(&mut self, now_ms: u64, max: u64) -> bool {
        if self.count(now_ms) >= max {
            return false;
        }
        let i = (self.last_slot % SLOTS as u64) as usize;
        self.counts[i] = self.counts[i].saturating_add(1);
        true
    }

    /// Moves the window to `now_ms`, zeroing the slots that left it. A clock that
    /// went backwards keeps the newest slot (never forgets counts).
    fn advance(&mut self, now_ms: u64) {
        let slot = now_ms / self.slot_ms;
        if slot <= self.last_slot {
            return;
        }
        let gone = (slot - self.last_slot).min(SLOTS as u64);
        for s in 1..=gone {
            self.counts[((self.last_slot + s) % SLOTS as u64) as usize] = 0;
        }
        self.last_slot = slot;
    }

    /// Bytes for the store.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ENCODED_LEN);
        b.push(FORMAT);
        b.extend_from_slice(&self.slot_ms.to_le_bytes());
        b.extend_from_slice(&self.last_slot.to_le_bytes());
        for c in self.counts {
            b.extend_from_slice(&c.to_le_bytes());
        }
        b
    }

    /// Counters from the store, re-based onto slots of `slot_ms` at `now_ms` if the
    /// window changed. `None` for bytes this version does not understand.
    pub fn decode(bytes: &[u8], slot_ms: u64, now_ms: u64) -> Option<Window> {
        if bytes.len() != ENCODED_LEN || bytes[0] != FORMAT {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
        let mut w = Window {
            slot_ms: u64_at(1).max(1),
            last_slot: u64_at(9),
            counts: [0; SLOTS],
        };
        for (i, c) in w.counts.iter_mut().enumerate() {
            let at = 17 + 4 * i;
            *c = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        }
        if w.slot_ms != slot_ms {
            // Strict side: what was counted stays counted, in the current slot.
            let total = w.count(now_ms).min(u64::from(u32::MAX)) as u32;
            let mut re = Window::new(slot_ms);
            re.advance(now_ms);
            let i = (re.last_slot % SLOTS as u64) as usize;
            re.counts[i] = total;
            return Some(re);
        }
        Some(w)
    }
}

/// The configured limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// HTLCs per channel per window.
    max_htlcs: u64,
    /// Slot length: window / [`SLOTS`], at least 1 ms.
    slot_ms: u64,
}

/// The store key of a channel's counters.
fn key(chan: Scid) -> Vec<u8> {
    let mut k = b"chan:".to_vec();
    k.extend_from_slice(&chan.0.to_be_bytes());
    k
}

impl RateLimit {
    /// Decides for an HTLC on `chan` at `now_ms`, updating the store.
    pub fn check(&self, chan: Scid, now_ms: u64) -> Result<bool, kv::KvError> {
        let k = key(chan);
        let mut w = match kv::get(&k)? {
            Some(bytes) => Window::decode(&bytes, self.slot_ms, now_ms).unwrap_or_else(|| {
                htlcgate_sdk::warn!("{chan}: stored counters unreadable; starting afresh");
                Window::new(self.slot_ms)
            }),
            None => Window::new(self.slot_ms),
        };
        if !w.admit(now_ms, self.max_htlcs) {
            return Ok(false);
        }
        kv::set(&k, &w.encode())?;
        Ok(true)
    }
}

impl Plugin for RateLimit {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["max_htlcs", "window_secs"])?;
        let max_htlcs: u64 = config.require("max_htlcs")?;
        if max_htlcs == 0 {
            return Err("config key `max_htlcs` must be at least 1 (to block a channel, use channel-filter)".into());
        }
        let window_secs: u64 = config.parse_or("window_secs", 60)?;
        if !(1..=2_592_000).contains(&window_secs) {
            return Err(format!(
                "config key `window_secs`: {window_secs} is out of range; use 1..=2592000 (30 days)"
            ));
        }
        Ok(RateLimit {
            max_htlcs,
            slot_ms: (window_secs * 1000 / SLOTS as u64).max(1),
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let chan = htlc.incoming_chan();
        match self.check(chan, htlcgate_sdk::now_unix_ms()) {
            Ok(true) => Verdict::next(),
            Ok(false) => {
                htlcgate_sdk::debug!(
                    "{}: more than {} HTLCs on {chan} in the window",
                    htlc.circuit_key(),
                    self.max_htlcs
                );
                // Failing back is always safe for funds: the sender gets the HTLC
                // back and may retry later or elsewhere.
                Verdict::fail_temporary()
            }
            Err(e) => {
                htlcgate_sdk::error!("{}: counters not updated: {e}", htlc.circuit_key());
                Verdict::next()
            }
        }
    }
}

export_plugin!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn at_most_max_per_window_then_room_again_as_slots_expire() {
        let slot = HOUR / SLOTS as u64;
        let mut w = Window::new(slot);
        let t0 = 1_700_000_000_000;
        for _ in 0..3 {
            assert!(w.admit(t0, 3));
        }
        assert!(!w.admit(t0, 3));
        // Still inside the window one slot before its end.
        assert!(!w.admit(t0 + HOUR - slot, 3));
        // The slot holding all three left the window.
        assert!(w.admit(t0 + HOUR + slot, 3));
        assert_eq!(w.count(t0 + HOUR + slot), 1);
        // A long silence forgets everything.
        assert_eq!(w.count(t0 + 10 * HOUR), 0);
    }

    #[test]
    fn counts_spread_over_slots_roll_out_one_by_one() {
        let slot = 1000;
        let mut w = Window::new(slot);
        let t0 = 5_000_000;
        for i in 0..4 {
            assert!(w.admit(t0 + i * slot, 4));
        }
        assert!(!w.admit(t0 + 4 * slot, 4));
        // 64 slots after the first admission, the first leaves.
        assert!(w.admit(t0 + SLOTS as u64 * slot, 4));
        assert!(!w.admit(t0 + SLOTS as u64 * slot, 4));
    }

    #[test]
    fn a_clock_going_backwards_forgets_nothing() {
        let mut w = Window::new(1000);
        assert!(w.admit(10_000_000, 2));
        assert!(w.admit(10_000_000, 2));
        assert!(!w.admit(9_000_000, 2));
    }

    #[test]
    fn encoding_round_trips_and_a_new_window_keeps_the_counts() {
        let mut w = Window::new(1000);
        let now = 77_000_000;
        w.admit(now, 10);
        w.admit(now + 5000, 10);
        let bytes = w.encode();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(Window::decode(&bytes, 1000, now + 5000), Some(w.clone()));
        let mut re = Window::decode(&bytes, 500, now + 5000).unwrap();
        assert_eq!(re.count(now + 5000), 2);
        assert_eq!(Window::decode(&bytes[1..], 1000, now), None);
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(Window::decode(&other, 1000, now), None);
    }

    #[test]
    fn channels_are_counted_apart_in_the_store() {
        kv::clear();
        let rl = RateLimit {
            max_htlcs: 2,
            slot_ms: HOUR / SLOTS as u64,
        };
        let now = 1_800_000_000_000;
        assert_eq!(rl.check(Scid(1), now), Ok(true));
        assert_eq!(rl.check(Scid(1), now), Ok(true));
        assert_eq!(rl.check(Scid(1), now), Ok(false));
        assert_eq!(rl.check(Scid(2), now), Ok(true));
        // A new instance (a reload) sees the same counters.
        let again = rl.clone();
        assert_eq!(again.check(Scid(1), now + 1000), Ok(false));
    }

    #[test]
    fn decide_fails_over_the_limit_and_passes_under_it() {
        kv::clear();
        let mut rl = RateLimit::init(&Config::from_pairs([("max_htlcs", "1")])).unwrap();
        let htlc = Htlc::builder().incoming_chan(Scid(42)).build();
        assert_eq!(rl.decide(&htlc), Verdict::next());
        assert_eq!(rl.decide(&htlc), Verdict::fail_temporary());
    }

    #[test]
    fn init_checks_its_keys() {
        assert!(RateLimit::init(&Config::default())
            .unwrap_err()
            .contains("max_htlcs"));
        assert!(RateLimit::init(&Config::from_pairs([("max_htlcs", "0")]))
            .unwrap_err()
            .contains("at least 1"));
        assert!(RateLimit::init(&Config::from_pairs([
            ("max_htlcs", "5"),
            ("window_secs", "0")
        ]))
        .unwrap_err()
        .contains("window_secs"));
        assert!(
            RateLimit::init(&Config::from_pairs([("max_htlcs", "5"), ("burst", "1")]))
                .unwrap_err()
                .contains("burst")
        );
    }
}
