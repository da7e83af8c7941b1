//! Drives HTLCs through the mock LND and times each until LND accepts its answer.
//!
//! Two drivers: [`Driver::window`] is closed-loop (as fast as the interceptor
//! answers, a fixed number unanswered), so an HTLC's latency starts when it is
//! sent; [`Driver::steady`] is open-loop (a fixed schedule, whatever the answers
//! do), so an HTLC's latency starts at its *scheduled* send time, as wrk2 and
//! HdrHistogram do: a sender that falls behind its schedule (a busy machine, a
//! stalled runtime worker) must not hide the wait it caused (coordinated omission).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use htlcgate::mock_lnd::{MockLnd, Resolution};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::common;

/// One answered HTLC of a run, in µs.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it was actually sent, after the run's start.
    pub sent_us: f64,
    /// Its latency: from its scheduled send time (steady runs; the actual send
    /// time in window runs, which have no schedule) to LND accepting its answer.
    pub latency_us: f64,
    /// When it was due to be sent, after the run's start (window runs: when it
    /// was sent).
    pub scheduled_us: f64,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Run {
    /// HTLCs answered.
    pub count: usize,
    /// From the first request sent to the last answer accepted.
    pub elapsed: Duration,
    /// Latency of each HTLC, sorted, in microseconds (see [`Sample::latency_us`]).
    pub latencies_us: Vec<f64>,
    /// How late each HTLC was sent after its scheduled time, sorted, in µs (steady
    /// runs; empty for window runs, which have no schedule).
    pub send_lag_us: Vec<f64>,
    /// Every HTLC, in the order the answers came.
    pub timeline_us: Vec<Sample>,
}

/// The `p`-quantile of the sorted `v` (0.5 = median); 0 when empty.
fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

impl Run {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile of the latencies (0.5 = median), in µs.
    pub fn quantile(&self, p: f64) -> f64 {
        quantile(&self.latencies_us, p)
    }

    /// The largest latency, in µs.
    pub fn max(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0.0)
    }

    /// The `p`-quantile of the send lags, in µs (0 for window runs).
    pub fn lag_quantile(&self, p: f64) -> f64 {
        quantile(&self.send_lag_us, p)
    }

    /// The largest send lag, in µs (0 for window runs).
    pub fn max_lag(&self) -> f64 {
        self.send_lag_us.last().copied().unwrap_or(0.0)
    }
}

/// Sends HTLCs with ids `first..first + n` and receives their answers.
pub struct Driver<'a> {
    mock: &'a MockLnd,
    answers: &'a mut UnboundedReceiver<Resolution>,
}

/// HTLCs with keys (`INCOMING_CHAN`, `first + i`), made before the clock starts.
fn requests(first: u64, n: usize) -> Vec<Option<ForwardHtlcInterceptRequest>> {
    (0..n as u64)
        .map(|i| Some(common::passing_forward(first + i)))
        .collect()
}

/// No answer for this long means the interceptor is stuck.
const STALL: Duration = Duration::from_secs(20);

/// How long before an HTLC's slot the steady sender stops sleeping and
/// yield-spins (`tokio::task::yield_now`, so the worker keeps running the mock's
/// tasks in between) until the slot.
const SPIN_LEAD: Duration = Duration::from_micros(200);

/// When (scheduled, actually) each HTLC of a run was sent; `None` until it is.
type SendTimes = Vec<Option<(Instant, Instant)>>;

/// The steady sender's sleep until shortly before the next slot, with a finer
/// clock than tokio's timer (which rounds every deadline up to its 1 ms tick, and
/// so wakes up to ~1-2 ms late: a whole period at 1,000 HTLC/s). A blocking-pool
/// thread sleeps in `std::thread::sleep` (the kernel's high-resolution timer,
/// ~50 µs slack) and its completion wakes the sending task, which stays on its
/// runtime worker: only the wake-up comes from outside, 200 µs before the slot,
/// and the send itself is done from the worker after the spin.
struct Alarm {
    /// When it goes off.
    at: Instant,
    /// The sleeping thread's task.
    done: JoinHandle<()>,
}

impl Alarm {
    /// An alarm going off at `at`.
    fn set(at: Instant) -> Alarm {
        let done = tokio::task::spawn_blocking(move || {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        });
        Alarm { at, done }
    }
}

/// Waits for `alarm` to go off; never returns without one.
async fn ring(alarm: &mut Option<Alarm>) -> anyhow::Result<()> {
    match alarm {
        Some(a) => (&mut a.done).await.context("the pacing thread failed"),
        None => std::future::pending().await,
    }
}

/// Yield-spins until `at` (see [`SPIN_LEAD`]).
async fn spin_until(at: Instant) {
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

impl<'a> Driver<'a> {
    /// A driver over `mock`; `answers` must come from `mock.watch_resolutions()`.
    pub fn new(mock: &'a MockLnd, answers: &'a mut UnboundedReceiver<Resolution>) -> Self {
        Driver { mock, answers }
    }

    /// Sends `n` HTLCs as fast as the interceptor answers, keeping at most
    /// `window` unanswered. Closed loop: latency starts at the actual send.
    pub async fn window(&mut self, first: u64, n: usize, window: usize) -> anyhow::Result<Run> {
        let mut reqs = requests(first, n);
        let mut sent_at: SendTimes = vec![None; n];
        let mut lat = Vec::with_capacity(n);
        let (mut next, mut done) = (0usize, 0usize);
        let start = Instant::now();
        let mut last = start;
        while done < n {
            while next < n && next - done < window {
                let now = Instant::now();
                sent_at[next] = Some((now, now));
                self.mock.send_htlc(reqs[next].take().expect("sent once"));
                next += 1;
            }
            let r = tokio::time::timeout(STALL, self.answers.recv())
                .await
                .with_context(|| format!("no answer for {STALL:?} after {done} of {n} HTLCs"))?
                .context("the mock LND stopped")?;
            let mut next_answer = Some(r);
            while let Some(r) = next_answer {
                if let Some(t) = self.latency(&r, first, &sent_at, start)? {
                    lat.push(t);
                    done += 1;
                    last = r.at;
                }
                next_answer = self.answers.try_recv().ok();
            }
        }
        Ok(finish(lat, last - start, false))
    }

    /// Sends `rate` HTLCs per second for `seconds`, HTLC `i` at `start + i / rate`
    /// whatever the answers do (open loop); then waits for the last answers.
    /// Latency starts at each HTLC's scheduled time, so a late send counts
    /// against the run; how late each send was is kept as its send lag.
    ///
    /// Pacing: an [`Alarm`] wakes the task [`SPIN_LEAD`] before the next slot,
    /// then it yield-spins until the slot and sends, so on an idle machine the
    /// sends are evenly spaced to within a few µs.
    pub async fn steady(&mut self, first: u64, rate: u32, seconds: u32) -> anyhow::Result<Run> {
        let n = (rate * seconds) as usize;
        let mut reqs = requests(first, n);
        let mut sent_at: SendTimes = vec![None; n];
        let mut lat = Vec::with_capacity(n);
        let (mut next, mut done) = (0usize, 0usize);
        let start = Instant::now();
        // Computed from `i`, not by adding periods, so rounding never drifts.
        let slot =
            |i: usize| start + Duration::from_nanos(i as u64 * 1_000_000_000 / u64::from(rate));
        let mut last = start;
        let mut alarm: Option<Alarm> = None;
        let mut stall = tokio::time::Instant::now() + STALL;
        while done < n {
            // Every HTLC due within SPIN_LEAD goes out at its slot (one that is
            // already late goes out at once).
            while next < n && slot(next) <= Instant::now() + SPIN_LEAD {
                let due = slot(next);
                spin_until(due).await;
                sent_at[next] = Some((due, Instant::now()));
                self.mock.send_htlc(reqs[next].take().expect("sent once"));
                next += 1;
            }
            if next < n {
                let wake = slot(next) - SPIN_LEAD;
                if alarm.as_ref().is_none_or(|a| a.at != wake) {
                    // A previous alarm, if any, finishes its short sleep unheard.
                    alarm = Some(Alarm::set(wake));
                }
            }
            let mut rang = false;
            tokio::select! {
                r = self.answers.recv() => {
                    let r = r.context("the mock LND stopped")?;
                    if let Some(t) = self.latency(&r, first, &sent_at, start)? {
                        lat.push(t);
                        done += 1;
                        last = r.at;
                        stall = tokio::time::Instant::now() + STALL;
                    }
                }
                r = ring(&mut alarm), if next < n => {
                    r?;
                    rang = true;
                }
                _ = tokio::time::sleep_until(stall) => {
                    bail!("no answer for {STALL:?} after {done} of {n} HTLCs");
                }
            }
            if rang {
                alarm = None;
            }
        }
        Ok(finish(lat, last - start, true))
    }

    /// Answer `r`'s HTLC as a [`Sample`], if it answers one of this run's HTLCs.
    fn latency(
        &self,
        r: &Resolution,
        first: u64,
        sent_at: &[Option<(Instant, Instant)>],
        start: Instant,
    ) -> anyhow::Result<Option<Sample>> {
        let (chan, id) = r.key;
        if chan != common::INCOMING_CHAN || id < first {
            return Ok(None);
        }
        let Some(Some((scheduled, sent))) = sent_at.get((id - first) as usize) else {
            return Ok(None);
        };
        if r.response.action != 2 {
            bail!(
                "HTLC {chan}:{id} was answered with action {} (expected RESUME)",
                r.response.action
            );
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Ok(Some(Sample {
            sent_us: us(sent.duration_since(start)),
            latency_us: us(r.at.duration_since(*scheduled)),
            scheduled_us: us(scheduled.duration_since(start)),
        }))
    }
}

/// The run of `timeline` over `elapsed`; `scheduled` keeps the send lags (steady
/// runs).
fn finish(timeline: Vec<Sample>, elapsed: Duration, scheduled: bool) -> Run {
    let mut lat: Vec<f64> = timeline.iter().map(|t| t.latency_us).collect();
    lat.sort_by(f64::total_cmp);
    let mut lag: Vec<f64> = if scheduled {
        timeline
            .iter()
            .map(|t| (t.sent_us - t.scheduled_us).max(0.0))
            .collect()
    } else {
        Vec::new()
    };
    lag.sort_by(f64::total_cmp);
    Run {
        count: lat.len(),
        elapsed,
        latencies_us: lat,
        send_lag_us: lag,
        timeline_us: timeline,
    }
}
