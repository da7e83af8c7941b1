//! Side by side in the strict sense: every subject is timed in short batches, taking
//! turns round after round, and each gets the median of its batches. A burst of
//! load from another process then hits every subject alike, so the ratios hold on
//! a shared, noisy machine where back-to-back criterion runs drift apart.

use std::time::{Duration, Instant};

/// One thing to time: a name and one call.
pub struct Subject<'a> {
    /// Its benchmark id (as in criterion's `decide` group).
    pub id: &'static str,
    /// One call.
    pub call: Box<dyn FnMut() + 'a>,
}

/// How long one batch of one subject should take.
const BATCH: Duration = Duration::from_micros(300);

/// Times the subjects over `rounds` rounds; returns each one's median time per
/// call in nanoseconds, in the subjects' order.
pub fn run(subjects: &mut [Subject<'_>], rounds: usize) -> Vec<(&'static str, f64)> {
    // Calibrate: how many calls make one batch.
    let sizes: Vec<u32> = subjects
        .iter_mut()
        .map(|s| {
            let t = Instant::now();
            for _ in 0..10 {
                (s.call)();
            }
            let per = t.elapsed() / 10;
            (BATCH.as_nanos() / per.as_nanos().max(1)).clamp(1, 100_000) as u32
        })
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); subjects.len()];
    for _ in 0..rounds {
        for (i, s) in subjects.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..sizes[i] {
                (s.call)();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(sizes[i]));
        }
    }
    subjects
        .iter()
        .zip(samples.iter_mut())
        .map(|(s, v)| (s.id, crate::common::median(v)))
        .collect()
}
