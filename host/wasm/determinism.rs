//! The monotonic clock and the randomness a plugin sees under `htlcgate replay`:
//! derived from each recorded HTLC instead of the machine, so that a replay
//! decides the same way on every run and both configs of `--against` see the same
//! values, and so that a plugin timing its own traffic with the monotonic clock
//! (`std::time::Instant`, Go's `time.Since`) sees the recorded spacing, not how
//! fast replay reads the file.
//!
//! - Monotonic clock: the HTLC's recorded time (in ns) plus the real time spent
//!   since its decision started, never going backwards (lines whose recorded
//!   times go back in time leave it where it was).
//! - Randomness (`wasi:random/random` and `insecure`): a splitmix64 stream seeded
//!   from the plugin's name, the circuit key and the recorded time when each
//!   decision starts (from the name alone before the first one, as in `init`);
//!   `insecure-seed` is derived from the name.
//!
//! The daemon never uses this: there, plugins get the machine's clock and
//! randomness (wasmtime's defaults). A plugin that reads randomness while it
//! decides cannot have its recorded verdicts reproduced; replay counts those
//! decisions per plugin ([`Determinism::decisions_reading_randomness`]) and says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::wasm::input::HtlcInput;

/// One plugin's replay clock and randomness, shared by its instances (a plugin
/// rebuilt after a fault keeps its clock and its count).
#[derive(Debug)]
pub struct Determinism {
    state: Mutex<State>,
    /// Decisions during which the plugin read randomness.
    reading: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The plugin's name, mixed into every seed.
    name_seed: u64,
    /// The recorded time the clock counts from, in ns.
    base_ns: u64,
    /// When `base_ns` was set.
    since: Instant,
    /// The last reading: the clock never goes back.
    last_ns: u64,
    /// The splitmix64 state.
    rng: u64,
    /// A decision is running.
    deciding: bool,
    /// The running decision read randomness.
    read: bool,
}

/// splitmix64's step: a well-mixed 64-bit value from a counter (Steele, Lea and
/// Flood; the generator that seeds xoshiro).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of `bytes` (FNV-1a), the same on every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl Determinism {
    /// A fresh clock (at the Unix epoch) and random stream for plugin `name`.
    pub fn new(name: &str) -> Arc<Determinism> {
        let name_seed = fnv1a(name.as_bytes());
        Arc::new(Determinism {
            state: Mutex::new(State {
                name_seed,
                base_ns: 0,
                since: Instant::now(),
                last_ns: 0,
                rng: name_seed,
                deciding: false,
                read: false,
            }),
            reading: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A decision of `htlc` starts (`Some`) or the running one ended (`None`).
    pub fn set_current(&self, htlc: Option<&HtlcInput>) {
        let mut st = self.lock();
        match htlc {
            Some(h) => {
                if let Some(ms) = h.clock_ms {
                    st.base_ns = ms.saturating_mul(1_000_000);
                    st.since = Instant::now();
                }
                let mut seed = st.name_seed ^ h.key.chan_id;
                splitmix(&mut seed);
                seed ^= h.key.htlc_id;
                splitmix(&mut seed);
                seed ^= h.clock_ms.unwrap_or(0);
                st.rng = splitmix(&mut seed);
                st.deciding = true;
                st.read = false;
            }
            None => {
                if st.deciding && st.read {
                    self.reading.fetch_add(1, Ordering::Relaxed);
                }
                st.deciding = false;
                st.read = false;
            }
        }
    }

    /// Decisions so far during which the plugin read randomness.
    pub fn decisions_reading_randomness(&self) -> u64 {
        self.reading.load(Ordering::Relaxed)
    }

    /// The `insecure-seed` value: derived from the plugin's name.
    pub fn insecure_seed(&self) -> u128 {
        let mut s = self.lock().name_seed;
        (u128::from(splitmix(&mut s)) << 64) | u128::from(splitmix(&mut s))
    }

    /// The monotonic clock's reading, in ns.
    fn now_ns(&self) -> u64 {
        let mut st = self.lock();
        let elapsed = u64::try_from(st.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let now = st.base_ns.saturating_add(elapsed).max(st.last_ns);
        st.last_ns = now;
        now
    }

    /// The next random value.
    fn next(&self) -> u64 {
        let mut st = self.lock();
        if st.deciding {
            st.read = true;
        }
        splitmix(&mut st.rng)
    }
}

/// The monotonic clock handed to WASI (see the module doc).
pub struct ReplayMonotonic(pub Arc<Determinism>);

impl wasmtime_wasi::HostMonotonicClock for ReplayMonotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.now_ns()
    }
}

/// The random source handed to WASI (see the module doc).
pub struct ReplayRandom(pub Arc<Determinism>);

impl rand_core::TryRng for ReplayRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.0.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    fn htlc(chan_id: u64, htlc_id: u64, clock_ms: u64) -> HtlcInput {
        HtlcInput::from_request(crate::mock_lnd::sample_request(chan_id, htlc_id))
            .unwrap()
            .at(Some(clock_ms))
    }

    #[test]
    fn randomness_depends_only_on_the_plugin_and_the_htlc() {
        let draw = |name: &str, h: &HtlcInput| {
            let d = Determinism::new(name);
            d.set_current(Some(h));
            let mut r = ReplayRandom(d.clone());
            let v = (r.next_u64(), r.next_u32());
            d.set_current(None);
            (v, d.decisions_reading_randomness())
        };
        let a = htlc(7, 1, 1_700_000_000_000);
        assert_eq!(draw("p", &a), draw("p", &a));
        assert_eq!(draw("p", &a).1, 1, "the decision is counted");
        assert_ne!(draw("p", &a).0, draw("q", &a).0, "plugins differ");
        assert_ne!(draw("p", &a).0, draw("p", &htlc(7, 2, 1_700_000_000_000)).0);
        assert_ne!(draw("p", &a).0, draw("p", &htlc(8, 1, 1_700_000_000_000)).0);
        // The same HTLC after other decisions draws the same values.
        let d = Determinism::new("p");
        let mut r = ReplayRandom(d.clone());
        d.set_current(Some(&htlc(1, 1, 5)));
        let _ = r.next_u64();
        d.set_current(None);
        d.set_current(Some(&a));
        let again = (r.next_u64(), r.next_u32());
        assert_eq!(again, draw("p", &a).0);
        // Reads outside a decision (init) are not counted.
        let d = Determinism::new("p");
        let _ = ReplayRandom(d.clone()).next_u64();
        assert_eq!(d.decisions_reading_randomness(), 0);
        let mut buf = [0u8; 13];
        ReplayRandom(d).fill_bytes(&mut buf);
        assert_ne!(buf, [0u8; 13]);
    }

    #[test]
    fn the_monotonic_clock_follows_the_recorded_time_and_never_goes_back() {
        let d = Determinism::new("p");
        d.set_current(Some(&htlc(1, 1, 1_000)));
        let t1 = d.now_ns();
        assert!((1_000_000_000..1_000_000_000 + 5_000_000_000).contains(&t1));
        d.set_current(None);
        d.set_current(Some(&htlc(1, 2, 61_000)));
        let t2 = d.now_ns();
        // A minute later by the record, however fast replay runs.
        assert!(t2 - t1 >= 60_000_000_000 - 5_000_000_000, "{t1} {t2}");
        d.set_current(None);
        // A line recorded earlier does not move it back.
        d.set_current(Some(&htlc(1, 3, 2_000)));
        assert!(d.now_ns() >= t2);
    }
}
