//! What an idle daemon costs: `htlcgate run` with the 3-plugin chain, connected to
//! the mock LND, after some HTLCs, with nothing to do. CPU time and thread wake-ups
//! (context switches) per second, from /proc: a node's machine (often a small
//! board) runs htlcgate around the clock, mostly idle.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::drive::Driver;
use crate::target;
use crate::Sizes;

/// CPU time (utime + stime, in clock ticks) and context switches (voluntary and
/// involuntary, over every thread) of process `pid` so far.
fn usage(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok((ticks, switches))
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Measures the idle daemon and returns its Markdown section.
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    let seconds = sizes.steady_seconds.max(2) as u64 * 2;
    let (_, mock, mut proc) = target::start_daemon(
        &work.join("idle"),
        target::example_chain(),
        Some(work.join("cache")),
    )
    .await?;
    let mut answers = mock.watch_resolutions();
    Driver::new(&mock, &mut answers)
        .window(0, 200, 50)
        .await
        .context("idle: the HTLCs before idling")?;
    // Past every "recently busy" state (the epoch ticker parks after 100 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, s0) = usage(proc.pid())?;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (t1, s1) = usage(proc.pid())?;
    let elapsed = start.elapsed().as_secs_f64();
    proc.check_alive()?;
    proc.stop();
    let cpu_pct = (t1 - t0) as f64 / USER_HZ / elapsed * 100.0;
    let wakes = (s1 - s0) as f64 / elapsed;
    let mut s = String::new();
    writeln!(
        s,
        "## Idle: `htlcgate run` with the 3-plugin chain, connected, nothing to do\n"
    )?;
    writeln!(
        s,
        "Over {elapsed:.0} s, 1 s after the last of 200 HTLCs (from /proc/PID/stat and every \
         thread's ctxt_switches).\n"
    )?;
    writeln!(s, "| CPU | context switches |")?;
    writeln!(s, "|---:|---:|")?;
    writeln!(s, "| {cpu_pct:.2}% of a core | {wakes:.0} per second |")?;
    Ok(s)
}
