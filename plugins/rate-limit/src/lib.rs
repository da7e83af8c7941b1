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
//! 56.25 s; slots are whole milliseconds, rounded up): an HTLC is let through
//! when fewer than `max_htlcs` were let through in the current slot and the 64
//! before it, every slot that overlaps the rolling window ending now. So no
//! window of `window_secs` ever holds more than `max_htlcs`, wherever it
//! starts; the price is that an HTLC counts for between `window_secs` and
//! `window_secs` × 65/64 after it was let through (the rest of its slot, then
//! 64 more; up to 65 ms more where `window_secs` × 1000 is not a multiple of
//! 64, from the rounding).
//! If `window_secs` changes, everything counted so far is kept in the current slot
//! (the limit errs on the strict side for one window, never lets a burst through).
//! If the clock goes back (NTP corrects a clock that ran fast), the counts keep
//! their ages relative to the newest slot: they still count, and leave the window
//! as if the clock had stopped while it was ahead, within one window of the
//! correction, not once it has caught up.
//!
//! Each HTLC is counted once. The host can ask about an HTLC again after this
//! plugin let it through: a hot reload while a later plugin holds it asks the
//! new chain (new instances) from its start, and after a restart LND replays an
//! HTLC still held. `attempt` cannot tell (a plugin after a holder first sees an
//! HTLC with attempt > 1), so each channel's counters also remember which of
//! the last 2048 HTLC ids on the channel were counted (a channel's incoming
//! HTLCs are numbered 0, 1, 2, ...): one counted before gets `next` and is not
//! counted again (an HTLC this plugin failed is never asked again). An id more
//! than 2048 below the newest counted on its channel is counted again (the
//! strict side).
//!
//! Each channel's counters take 541 bytes (format 2, [`ENCODED_LEN`]). Counters
//! written by the previous version (format 1: 64 slots, no ids) still load (where
//! `window_secs` × 1000 is not a multiple of 64 their slots were rounded down,
//! so they are kept in the current slot, as after a change of `window_secs`);
//! versions before this one cannot read format 2 and start those channels afresh.
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

use htlcgate_sdk::{export_plugin, kv, CircuitKey, Config, Htlc, Plugin, Scid, Verdict};

/// The key `init` writes once (and deletes) to check that a channel's counters
/// fit the store's value limit; no channel key (`chan:` + 8 bytes) is like it.
const PROBE_KEY: &[u8] = b"probe:value-size";
/// Slots per window: a slot is `window_secs` / 64.
pub const SLOTS: usize = 64;
/// Slots counted: the current one and the [`SLOTS`] before it, every slot that
/// overlaps the rolling window ending now.
pub const COUNTED_SLOTS: usize = SLOTS + 1;
/// HTLC ids per channel whose counting is remembered.
pub const RECENT_IDS: u64 = 2048;
/// Words of the remembered-ids bitmap.
const RECENT_WORDS: usize = RECENT_IDS as usize / 64;
/// Encoding version of a channel's counters.
const FORMAT: u8 = 2;
/// The previous encoding: 64 slots, no ids.
const FORMAT_V1: u8 = 1;
/// Encoded size of [`FORMAT_V1`]: format, slot length, last slot, 64 counts.
const ENCODED_LEN_V1: usize = 1 + 8 + 8 + 4 * SLOTS;
/// Encoded size: format, slot length, last slot, counts, one past the newest
/// counted id, the remembered-ids bitmap.
pub const ENCODED_LEN: usize = 1 + 8 + 8 + 4 * COUNTED_SLOTS + 8 + RECENT_IDS as usize / 8;

/// Which recent HTLC ids of a channel were counted: bit `id % RECENT_IDS`, for
/// ids in `next_id - RECENT_IDS .. next_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recent {
    /// One past the highest id counted (0: none).
    next_id: u64,
    /// The bits.
    bits: [u64; RECENT_WORDS],
}

impl Recent {
    /// Nothing remembered.
    fn new() -> Recent {
        Recent {
            next_id: 0,
            bits: [0; RECENT_WORDS],
        }
    }

    /// Word and mask of `id`'s bit.
    fn at(id: u64) -> (usize, u64) {
        let i = id % RECENT_IDS;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// True when `id` is remembered as counted.
    fn contains(&self, id: u64) -> bool {
        let (w, m) = Recent::at(id);
        id < self.next_id && self.next_id - id <= RECENT_IDS && self.bits[w] & m != 0
    }

    /// Remembers `id` as counted (unless it is too old to fit).
    fn insert(&mut self, id: u64) {
        if id >= self.next_id {
            let Some(new) = id.checked_add(1) else {
                return;
            };
            if new - self.next_id >= RECENT_IDS {
                self.bits = [0; RECENT_WORDS];
            } else {
                // The ids coming into range were not counted.
                for old in self.next_id..new {
                    let (w, m) = Recent::at(old);
                    self.bits[w] &= !m;
                }
            }
            self.next_id = new;
        } else if self.next_id - id > RECENT_IDS {
            return;
        }
        let (w, m) = Recent::at(id);
        self.bits[w] |= m;
    }
}

/// One channel's counters: HTLCs let through per slot, and the ids counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Slot length in milliseconds when last written.
    slot_ms: u64,
    /// The newest slot written (milliseconds since the epoch / slot_ms).
    last_slot: u64,
    /// Counts, indexed by slot number modulo [`COUNTED_SLOTS`].
    counts: [u32; COUNTED_SLOTS],
    /// The recent ids counted.
    recent: Recent,
}

/// Index of `slot` in [`Window::counts`].
fn index(slot: u64) -> usize {
    (slot % COUNTED_SLOTS as u64) as usize
}

impl Window {
    /// Empty counters for slots of `slot_ms`.
    pub fn new(slot_ms: u64) -> Window {
        Window {
            slot_ms,
            last_slot: 0,
            counts: [0; COUNTED_SLOTS],
            recent: Recent::new(),
        }
    }

    /// HTLCs let through in the slots overlapping the window ending at `now_ms`.
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
        let i = index(self.last_slot);
        self.counts[i] = self.counts[i].saturating_add(1);
        true
    }

    /// True when HTLC `htlc_id` of this channel was counted (and is recent
    /// enough to be remembered).
    pub fn counted(&self, htlc_id: u64) -> bool {
        self.recent.contains(htlc_id)
    }

    /// Remembers that HTLC `htlc_id` of this channel was counted.
    pub fn remember(&mut self, htlc_id: u64) {
        self.recent.insert(htlc_id);
    }

    /// Moves the window to `now_ms`, zeroing the slots that left it. A clock that
    /// went backwards forgets nothing: the counts move back with it, each keeping
    /// its distance from the newest slot.
    fn advance(&mut self, now_ms: u64) {
        let slot = now_ms / self.slot_ms;
        if slot < self.last_slot {
            let old = self.counts;
            self.counts = [0; COUNTED_SLOTS];
            for k in 0..COUNTED_SLOTS as u64 {
                let Some(from) = self.last_slot.checked_sub(k) else {
                    break;
                };
                // Before slot 0 (only in tests): into slot 0, still counted.
                let to = index(slot.saturating_sub(k));
                self.counts[to] = self.counts[to].saturating_add(old[index(from)]);
            }
            self.last_slot = slot;
            return;
        }
        let gone = (slot - self.last_slot).min(COUNTED_SLOTS as u64);
        for s in 1..=gone {
            self.counts[index(self.last_slot + s)] = 0;
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
        b.extend_from_slice(&self.recent.next_id.to_le_bytes());
        for w in self.recent.bits {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Counters from the store (format 2, or format 1 as the previous version
    /// wrote it), re-based onto slots of `slot_ms` at `now_ms` if the window
    /// changed. `None` for bytes this version does not understand.
    pub fn decode(bytes: &[u8], slot_ms: u64, now_ms: u64) -> Option<Window> {
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let mut w = Window::new(1);
        match (bytes.first(), bytes.len()) {
            (Some(&FORMAT), ENCODED_LEN) => {
                w.slot_ms = u64_at(1).max(1);
                w.last_slot = u64_at(9);
                for (i, c) in w.counts.iter_mut().enumerate() {
                    *c = u32_at(17 + 4 * i);
                }
                let at = 17 + 4 * COUNTED_SLOTS;
                w.recent.next_id = u64_at(at);
                for (i, word) in w.recent.bits.iter_mut().enumerate() {
                    *word = u64_at(at + 8 + 8 * i);
                }
            }
            (Some(&FORMAT_V1), ENCODED_LEN_V1) => {
                // 64 counts indexed by slot modulo 64: the newest slot and the
                // 63 before it.
                w.slot_ms = u64_at(1).max(1);
                w.last_slot = u64_at(9);
                for k in 0..SLOTS as u64 {
                    let Some(slot) = w.last_slot.checked_sub(k) else {
                        break;
                    };
                    w.counts[index(slot)] = u32_at(17 + 4 * (slot % SLOTS as u64) as usize);
                }
            }
            _ => return None,
        }
        if w.slot_ms != slot_ms {
            // Strict side: what was counted stays counted, in the current slot.
            let total = w.count(now_ms).min(u64::from(u32::MAX)) as u32;
            let mut re = Window::new(slot_ms);
            re.recent = w.recent;
            re.advance(now_ms);
            re.counts[index(re.last_slot)] = total;
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
    /// Slot length: window / [`SLOTS`], rounded up to whole ms, so that
    /// [`SLOTS`] slots are at least the window.
    slot_ms: u64,
}

/// What [`RateLimit::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Under the limit: counted now.
    Counted,
    /// Counted before (the HTLC is asked about again): not counted again.
    AlreadyCounted,
    /// At the limit: not counted.
    Over,
}

/// The store key of a channel's counters.
fn key(chan: Scid) -> Vec<u8> {
    let mut k = b"chan:".to_vec();
    k.extend_from_slice(&chan.0.to_be_bytes());
    k
}

impl RateLimit {
    /// Decides for the HTLC `circuit` at `now_ms`, updating the store.
    pub fn check(&self, circuit: CircuitKey, now_ms: u64) -> Result<Check, kv::KvError> {
        let chan = circuit.chan();
        let k = key(chan);
        let mut w = match kv::get(&k)? {
            Some(bytes) => Window::decode(&bytes, self.slot_ms, now_ms).unwrap_or_else(|| {
                htlcgate_sdk::warn!("{chan}: stored counters unreadable; starting afresh");
                Window::new(self.slot_ms)
            }),
            None => Window::new(self.slot_ms),
        };
        if w.counted(circuit.htlc_id) {
            return Ok(Check::AlreadyCounted);
        }
        if !w.admit(now_ms, self.max_htlcs) {
            return Ok(Check::Over);
        }
        w.remember(circuit.htlc_id);
        kv::set(&k, &w.encode())?;
        Ok(Check::Counted)
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
        // The store must take a channel's counters: refused now, not failing open
        // (an error log and `next`) on every HTLC.
        if let Err(kv::KvError::ValueTooLong(max)) = kv::set(PROBE_KEY, &[0; ENCODED_LEN]) {
            return Err(format!(
                "rate-limit keeps {ENCODED_LEN} bytes per channel, more than \
                 kv_max_value_bytes = {max} allows; raise kv_max_value_bytes to at least \
                 {ENCODED_LEN} in its [[plugin]] entry"
            ));
        }
        let _ = kv::delete(PROBE_KEY);
        Ok(RateLimit {
            max_htlcs,
            // Rounded up: 64 slots must cover the whole window.
            slot_ms: (window_secs * 1000).div_ceil(SLOTS as u64),
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let circuit = htlc.circuit_key();
        match self.check(circuit, htlcgate_sdk::now_unix_ms()) {
            Ok(Check::Counted) => Verdict::next(),
            Ok(Check::AlreadyCounted) => {
                htlcgate_sdk::debug!("{circuit}: counted before (asked again); not counted twice");
                Verdict::next()
            }
            Ok(Check::Over) => {
                htlcgate_sdk::debug!(
                    "{circuit}: more than {} HTLCs on {} in the window",
                    self.max_htlcs,
                    circuit.chan()
                );
                // Failing back is always safe for funds: the sender gets the HTLC
                // back and may retry later or elsewhere.
                Verdict::fail_temporary()
            }
            Err(e) => {
                htlcgate_sdk::error!("{circuit}: counters not updated: {e}");
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
        // 65 slots after the first admission's slot, the first leaves.
        assert!(!w.admit(t0 + SLOTS as u64 * slot, 4));
        assert!(w.admit(t0 + COUNTED_SLOTS as u64 * slot, 4));
        assert!(!w.admit(t0 + COUNTED_SLOTS as u64 * slot, 4));
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
        let k = |chan, id| CircuitKey::new(Scid(chan), id);
        assert_eq!(rl.check(k(1, 0), now), Ok(Check::Counted));
        assert_eq!(rl.check(k(1, 1), now), Ok(Check::Counted));
        assert_eq!(rl.check(k(1, 2), now), Ok(Check::Over));
        assert_eq!(rl.check(k(2, 0), now), Ok(Check::Counted));
        // A new instance (a reload) sees the same counters.
        let again = rl.clone();
        assert_eq!(again.check(k(1, 3), now + 1000), Ok(Check::Over));
        assert_eq!(again.check(k(1, 1), now + 1000), Ok(Check::AlreadyCounted));
    }

    #[test]
    fn decide_fails_over_the_limit_and_passes_under_it() {
        kv::clear();
        let mut rl = RateLimit::init(&Config::from_pairs([("max_htlcs", "1")])).unwrap();
        assert_eq!(rl.decide(&htlc(0, 1)), Verdict::next());
        assert_eq!(rl.decide(&htlc(1, 1)), Verdict::fail_temporary());
    }

    #[test]
    fn at_most_max_in_any_rolling_window_even_at_slot_edges() {
        // window_secs = 64: slots of 1000 ms.
        let mut w = Window::new(1000);
        let t = 1_700_000_000_000;
        // Three at the last ms of a slot...
        for _ in 0..3 {
            assert!(w.admit(t + 999, 3));
        }
        // ...then none at the start of the slot 64 later: 63,001 ms apart,
        // inside one 64,000 ms window.
        assert!(!w.admit(t + 64_000, 3));
        assert!(!w.admit(t + 64_999, 3));
        // Room again once that slot has left every window that could hold it.
        assert!(w.admit(t + 65_000, 3));
    }

    #[test]
    fn no_rolling_window_ever_holds_more_than_max() {
        // Windows that divide into 64 slots evenly and ones that do not.
        for window_secs in [64, 60, 1, 3600, 7] {
            let window = window_secs * 1000;
            let config = Config::from_pairs([
                ("max_htlcs", "5".to_string()),
                ("window_secs", window_secs.to_string()),
            ]);
            let rl = RateLimit::init(&config).unwrap();
            let max = rl.max_htlcs;
            let mut w = Window::new(rl.slot_ms);
            // Pseudo-random arrivals, from bursts to gaps of a few windows,
            // against a plain list of admission times.
            let mut admitted: Vec<u64> = Vec::new();
            let mut now = 1_700_000_000_000;
            let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..20_000 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let r = (seed >> 20) % 1_000_000;
                now += match seed >> 60 {
                    0..=7 => 0,
                    8..=11 => r * window / 32_000_000,
                    12..=14 => r * window / 3_000_000,
                    _ => r * window / 300_000,
                };
                if w.admit(now, max) {
                    admitted.push(now);
                    let inside = admitted.iter().filter(|&&a| a + window > now).count();
                    assert!(
                        inside <= max as usize,
                        "window {window_secs} s: {inside} in the window ending at {now}"
                    );
                }
            }
            // And it is not just refusing everything.
            assert!(admitted.len() > 1_000, "{}", admitted.len());
        }
    }

    #[test]
    fn a_clock_set_back_after_a_jump_forward_expires_counts_within_a_window() {
        // window_secs = 64: slots of 1000 ms.
        let mut w = Window::new(1000);
        let t = 1_700_000_000_000;
        // The clock is a day fast, then NTP sets it right.
        assert!(w.admit(t + 86_400_000, 2));
        assert!(w.admit(t + 86_400_000, 2));
        // What was counted still counts...
        assert!(!w.admit(t, 2));
        assert!(!w.admit(t + 64_999, 2));
        // ...for one window from the correction, not for a day.
        assert!(w.admit(t + 65_000, 2));
        assert_eq!(w.count(t + 65_000), 1);
    }

    /// HTLC `id` on channel 42, asked for the `attempt`-th time.
    fn htlc(id: u64, attempt: u32) -> Htlc {
        Htlc::builder()
            .incoming_chan(Scid(42))
            .htlc_id(id)
            .attempt(attempt)
            .build()
    }

    #[test]
    fn an_htlc_asked_again_after_a_reload_is_counted_once() {
        kv::clear();
        htlcgate_sdk::clock::set_unix_ms(1_700_000_000_000);
        let config = Config::from_pairs([("max_htlcs", "2")]);
        let mut rl = RateLimit::init(&config).unwrap();
        // 0 is counted, then held by a later plugin.
        assert_eq!(rl.decide(&htlc(0, 1)), Verdict::next());
        // A reload meanwhile: the new chain (a new instance) is asked from its
        // start, attempt 2. 0 was counted already: next, not counted again.
        let mut rl = RateLimit::init(&config).unwrap();
        assert_eq!(rl.decide(&htlc(0, 2)), Verdict::next());
        assert_eq!(rl.decide(&htlc(0, 3)), Verdict::next());
        // So there is room for one more, and only one.
        assert_eq!(rl.decide(&htlc(1, 1)), Verdict::next());
        assert_eq!(rl.decide(&htlc(2, 1)), Verdict::fail_temporary());
    }

    #[test]
    fn an_htlc_first_seen_late_or_out_of_order_is_counted() {
        kv::clear();
        htlcgate_sdk::clock::set_unix_ms(1_700_000_000_000);
        let mut rl = RateLimit::init(&Config::from_pairs([("max_htlcs", "3")])).unwrap();
        // Held by an earlier plugin: first seen with attempt 4, after a newer id.
        assert_eq!(rl.decide(&htlc(7, 1)), Verdict::next());
        assert_eq!(rl.decide(&htlc(5, 4)), Verdict::next());
        assert_eq!(rl.decide(&htlc(6, 1)), Verdict::next());
        assert_eq!(rl.decide(&htlc(4, 2)), Verdict::fail_temporary());
        // Asked again, the three counted ones pass uncounted.
        for id in [5, 6, 7] {
            assert_eq!(rl.decide(&htlc(id, 9)), Verdict::next(), "{id}");
        }
    }

    #[test]
    fn recent_ids_are_remembered_within_their_range() {
        let mut r = Recent::new();
        assert!(!r.contains(0));
        r.insert(0);
        assert!(r.contains(0));
        assert!(!r.contains(1));
        r.insert(10);
        assert!(r.contains(0) && r.contains(10));
        assert!(!r.contains(5));
        // Ids between the two were not counted, whatever the bits held before.
        r.insert(RECENT_IDS + 3);
        assert!(!r.contains(3), "0 left the range, 3 was never counted");
        assert!(r.contains(10));
        assert!(r.contains(RECENT_IDS + 3));
        assert!(!r.contains(RECENT_IDS + 4));
        // Too old to remember: not remembered (counted again if asked).
        r.insert(1);
        assert!(!r.contains(1));
        // A jump beyond the range forgets everything.
        r.insert(10 * RECENT_IDS);
        assert!(!r.contains(10));
        assert!(r.contains(10 * RECENT_IDS));
        r.insert(u64::MAX);
        assert!(!r.contains(u64::MAX));
    }

    #[test]
    fn counters_of_the_previous_format_still_load() {
        // As version 1 wrote them: 64 counts indexed by slot % 64.
        let (slot_ms, last_slot) = (1000u64, 1_700_000_000u64);
        let mut v1 = vec![FORMAT_V1];
        v1.extend_from_slice(&slot_ms.to_le_bytes());
        v1.extend_from_slice(&last_slot.to_le_bytes());
        let mut counts = [0u32; SLOTS];
        counts[(last_slot % 64) as usize] = 2; // the newest slot
        counts[((last_slot - 63) % 64) as usize] = 5; // the oldest kept
        for c in counts {
            v1.extend_from_slice(&c.to_le_bytes());
        }
        assert_eq!(v1.len(), ENCODED_LEN_V1);
        let now = last_slot * slot_ms + 10;
        let mut w = Window::decode(&v1, slot_ms, now).unwrap();
        assert_eq!(w.count(now), 7);
        // The oldest leaves 2 slots later now (65 counted), the newest 64 later.
        assert_eq!(w.count(now + 1000), 7);
        assert_eq!(w.count(now + 2000), 2);
        assert_eq!(w.count(now + 65_000), 0);
        // No ids remembered; written back in the new format.
        assert!(!w.counted(0));
        assert_eq!(w.encode().len(), ENCODED_LEN);
        assert_eq!(w.encode()[0], FORMAT);
        // Through the plugin: the stored counters are the ones it goes on with.
        kv::clear();
        kv::set(&key(Scid(9)), &v1).unwrap();
        let rl = RateLimit {
            max_htlcs: 8,
            slot_ms,
        };
        assert_eq!(
            rl.check(CircuitKey::new(Scid(9), 0), now),
            Ok(Check::Counted)
        );
        assert_eq!(rl.check(CircuitKey::new(Scid(9), 1), now), Ok(Check::Over));
        assert_eq!(kv::get(&key(Scid(9))).unwrap().unwrap().len(), ENCODED_LEN);
    }

    #[test]
    fn the_remembered_ids_survive_a_new_window_length() {
        let mut w = Window::new(1000);
        let now = 77_000_000;
        assert!(w.admit(now, 10));
        w.remember(3);
        let re = Window::decode(&w.encode(), 500, now).unwrap();
        assert!(re.counted(3));
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
