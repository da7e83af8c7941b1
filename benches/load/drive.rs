//! Drives HTLCs through the mock LND and times each from the moment LND sends the
//! request to the moment it accepts the answer.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use htlcgate::mock_lnd::{MockLnd, Resolution};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::common;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Run {
    /// HTLCs answered.
    pub count: usize,
    /// From the first request sent to the last answer accepted.
    pub elapsed: Duration,
    /// Latency of each HTLC, sorted, in microseconds.
    pub latencies_us: Vec<f64>,
    /// (µs since the run's start when sent, latency in µs) of each HTLC, in the
    /// order the answers came.
    pub timeline_us: Vec<(f64, f64)>,
}

impl Run {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile of the latencies (0.5 = median), in µs.
    pub fn quantile(&self, p: f64) -> f64 {
        let v = &self.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        v[(((v.len() - 1) as f64) * p).round() as usize]
    }

    /// The largest latency, in µs.
    pub fn max(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0.0)
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

impl<'a> Driver<'a> {
    /// A driver over `mock`; `answers` must come from `mock.watch_resolutions()`.
    pub fn new(mock: &'a MockLnd, answers: &'a mut UnboundedReceiver<Resolution>) -> Self {
        Driver { mock, answers }
    }

    /// Sends `n` HTLCs as fast as the interceptor answers, keeping at most
    /// `window` unanswered.
    pub async fn window(&mut self, first: u64, n: usize, window: usize) -> anyhow::Result<Run> {
        let mut reqs = requests(first, n);
        let mut sent_at = vec![None::<Instant>; n];
        let mut lat = Vec::with_capacity(n);
        let (mut next, mut done) = (0usize, 0usize);
        let start = Instant::now();
        let mut last = start;
        while done < n {
            while next < n && next - done < window {
                sent_at[next] = Some(Instant::now());
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
        Ok(finish(lat, last - start))
    }

    /// Sends `rate` HTLCs per second for `seconds`, evenly spaced, whatever the
    /// answers do; then waits for the last answers.
    pub async fn steady(&mut self, first: u64, rate: u32, seconds: u32) -> anyhow::Result<Run> {
        let n = (rate * seconds) as usize;
        let mut reqs = requests(first, n);
        let mut sent_at = vec![None::<Instant>; n];
        let mut lat = Vec::with_capacity(n);
        let period = Duration::from_secs(1) / rate;
        let (mut next, mut done) = (0usize, 0usize);
        let start = Instant::now();
        let mut last = start;
        let mut stall = tokio::time::Instant::now() + STALL;
        while done < n {
            // Every HTLC due by now goes out (the timer's resolution is ~1 ms).
            let due = ((start.elapsed().as_nanos() / period.as_nanos()) as usize + 1).min(n);
            while next < due {
                sent_at[next] = Some(Instant::now());
                self.mock.send_htlc(reqs[next].take().expect("sent once"));
                next += 1;
            }
            let wake = tokio::time::Instant::from_std(start + period * next as u32);
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
                _ = tokio::time::sleep_until(wake), if next < n => {}
                _ = tokio::time::sleep_until(stall) => {
                    bail!("no answer for {STALL:?} after {done} of {n} HTLCs");
                }
            }
        }
        Ok(finish(lat, last - start))
    }

    /// When answer `r`'s HTLC was sent (µs after `start`) and its latency in µs, if it
    /// answers one of this run's HTLCs.
    fn latency(
        &self,
        r: &Resolution,
        first: u64,
        sent_at: &[Option<Instant>],
        start: Instant,
    ) -> anyhow::Result<Option<(f64, f64)>> {
        let (chan, id) = r.key;
        if chan != common::INCOMING_CHAN || id < first {
            return Ok(None);
        }
        let Some(Some(sent)) = sent_at.get((id - first) as usize) else {
            return Ok(None);
        };
        if r.response.action != 2 {
            bail!(
                "HTLC {chan}:{id} was answered with action {} (expected RESUME)",
                r.response.action
            );
        }
        Ok(Some((
            sent.duration_since(start).as_secs_f64() * 1e6,
            r.at.duration_since(*sent).as_secs_f64() * 1e6,
        )))
    }
}

fn finish(timeline: Vec<(f64, f64)>, elapsed: Duration) -> Run {
    let mut lat: Vec<f64> = timeline.iter().map(|t| t.1).collect();
    lat.sort_by(f64::total_cmp);
    Run {
        count: lat.len(),
        elapsed,
        latencies_us: lat,
        timeline_us: timeline,
    }
}
