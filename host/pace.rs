//! Pacing for background work that shares the CPUs with the answer path.
//!
//! The journal's checkpoint thread moves a second's worth of verdicts into the
//! redb file in one transaction: ~1.5 µs of CPU per entry, a few milliseconds
//! in all. On a small machine (2 vCPUs) the threads that answer HTLCs wake up
//! while it runs, and the kernel's scheduler (EEVDF, Linux 6.6 and later) lets
//! a running thread finish its slice (3 ms by default) before a woken one of
//! the same priority gets its CPU: measured on the project's 2-core VM, the
//! 1–3 HTLCs that arrived at each checkpoint waited 1–3 ms for it, once a
//! second. Neither `nice 19` nor a rarer checkpoint helped (the slice is the
//! same length in wall time; a rarer checkpoint is longer). Giving the CPU back
//! every few dozen steps (`sched_yield`, which ends the slice when another
//! thread waits and costs a fraction of a microsecond when none does) made
//! those clusters go away; `SCHED_IDLE` did too, but may starve the checkpoint
//! on a busy machine and cannot be undone without privileges.

/// Gives the CPU back every `every` steps of a long loop.
#[derive(Debug)]
pub struct Pacer {
    /// Steps between yields; 0: never yields.
    every: u32,
    /// Steps since the last yield.
    steps: u32,
}

/// Steps between yields for background work: 32 journal inserts are ~50 µs
/// of CPU, well below the scheduler's slice.
const BACKGROUND_EVERY: u32 = 32;

impl Pacer {
    /// For work beside the answer path (checkpoints, pruning).
    pub fn background() -> Pacer {
        Pacer::every(BACKGROUND_EVERY)
    }

    /// For work on the answer path itself, which must not wait on others.
    pub fn unpaced() -> Pacer {
        Pacer::every(0)
    }

    fn every(every: u32) -> Pacer {
        Pacer { every, steps: 0 }
    }

    /// Counts one step; yields the CPU after every `every`-th. Returns whether
    /// it yielded.
    pub fn step(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.steps += 1;
        if self.steps < self.every {
            return false;
        }
        self.steps = 0;
        std::thread::yield_now();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_pacer_yields_once_per_period_and_an_unpaced_one_never() {
        let mut p = Pacer::every(3);
        let yielded: Vec<bool> = (0..7).map(|_| p.step()).collect();
        assert_eq!(yielded, [false, false, true, false, false, true, false]);
        let mut b = Pacer::background();
        let n = (0..BACKGROUND_EVERY * 4).filter(|_| b.step()).count();
        assert_eq!(n, 4);
        let mut u = Pacer::unpaced();
        assert!((0..1000).all(|_| !u.step()));
    }
}
