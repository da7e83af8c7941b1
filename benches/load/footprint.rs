//! Benchmark 4: the daemon's resident memory with 1, 10 and 50 plugins loaded,
//! idle after a warm-up and again after a heavier load.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::common;
use crate::drive::Driver;
use crate::memory::{self, Rss};
use crate::target::{self, PluginEntry};
use crate::Sizes;

/// A plugin whose memory is measured: label, file, config.
type Kind = (&'static str, PathBuf, Vec<(&'static str, &'static str)>);

/// The plugins whose memory is measured.
fn kinds() -> Vec<Kind> {
    let fee = vec![("base_msat", "1000"), ("ppm", "100")];
    vec![
        (
            "Rust (fee-floor)",
            common::plugin_path("fee-floor"),
            fee.clone(),
        ),
        (
            "AssemblyScript (as-fee-floor)",
            common::plugin_path("as-fee-floor"),
            fee.clone(),
        ),
        (
            "Go (go-fee-floor)",
            common::plugin_path("go-fee-floor"),
            fee,
        ),
    ]
}

/// HTLCs of the warm-up before the first RSS sample, and how many unanswered.
const WARM_UP: (usize, usize) = (200, 50);
/// Unanswered HTLCs allowed during the load before the second RSS sample (as the
/// end-to-end part's full speed).
const LOAD_WINDOW: usize = 1_000;

/// The per-plugin figures of one sample, from the smallest and largest chains:
/// (per plugin, of which its heap, beyond its heap), in KiB.
fn per_plugin(small: Rss, large: Rss, plugins: usize) -> (f64, f64, f64) {
    let per = (large.total_kib as f64 - small.total_kib as f64) / plugins as f64;
    let heap = (large.linear_kib as f64 - small.linear_kib as f64) / plugins as f64;
    (per, heap, per - heap)
}

/// Benchmark 4: RSS with N copies of each plugin (each its own instance), sampled
/// twice: idle after a warm-up of 200 HTLCs (at most 50 unanswered) that went
/// through all of them, and again after a heavier load
/// ([`Sizes::memory_load_htlcs`] HTLCs, at most [`LOAD_WINDOW`] unanswered),
/// so every plugin thread has run under load (the warm-up may leave some idle).
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    let cache = work.join("cache");
    let load = sizes.memory_load_htlcs;
    let mut s = String::new();
    writeln!(s, "## Memory: `htlcgate run` with N plugins loaded\n")?;
    writeln!(
        s,
        "VmRSS of the daemon, sampled twice per run, each cell \"warm-up / load\": idle after a \
         warm-up of {} HTLCs (at most {} unanswered) went through every plugin, then again \
         after {load} more HTLCs at full speed with at most {LOAD_WINDOW} unanswered (every \
         plugin thread run under load). \"heaps\" is the resident part of the plugins' linear memories \
         (from /proc/PID/smaps). Per plugin: the difference between {} and {} plugins, divided \
         by {}.\n",
        WARM_UP.0,
        WARM_UP.1,
        sizes.plugin_counts[2],
        sizes.plugin_counts[0],
        sizes.plugin_counts[2] - sizes.plugin_counts[0]
    )?;
    let [a, b, c] = sizes.plugin_counts;
    writeln!(
        s,
        "| plugin | RSS, {a}: warm-up / load | RSS, {b}: warm-up / load | RSS, {c}: warm-up / load | per plugin: warm-up / load | of which its heap: warm-up / load | per plugin beyond its heap: warm-up / load | target <= 1 MiB: warm-up / load |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|")?;
    let mib = |kib: f64| format!("{:.1} MiB", kib / 1024.0);
    let pair = |x: String, y: String| format!("{x} / {y}");
    for (label, path, config) in kinds() {
        // Fill the compile cache first: compiling inflates the heap of the process
        // that does it (the allocator keeps freed memory), which is not what a
        // plugin costs to keep loaded.
        let warm = work.join("memory-warm-up");
        let (_, _mock, proc) = target::start_daemon(
            &warm,
            vec![PluginEntry::new("p", &path, &config)],
            Some(cache.clone()),
        )
        .await?;
        proc.stop();
        // Per plugin count: (after the warm-up, after the load).
        let mut rss: Vec<(Rss, Rss)> = Vec::new();
        for &n in &sizes.plugin_counts {
            let plugins = (0..n)
                .map(|i| PluginEntry::new(format!("p{i}"), &path, &config))
                .collect();
            let dir = work.join(format!(
                "memory-{}-{n}",
                label.split(' ').next().unwrap_or("x")
            ));
            let (_, mock, mut proc) =
                target::start_daemon(&dir, plugins, Some(cache.clone())).await?;
            let mut answers = mock.watch_resolutions();
            let mut driver = Driver::new(&mock, &mut answers);
            driver
                .window(0, WARM_UP.0, WARM_UP.1)
                .await
                .with_context(|| format!("{label} x{n}: warm-up"))?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            proc.check_alive()?;
            let idle = memory::rss(proc.pid())?;
            driver
                .window(1_000_000, load, LOAD_WINDOW)
                .await
                .with_context(|| format!("{label} x{n}: load"))?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            proc.check_alive()?;
            let loaded = memory::rss(proc.pid())?;
            rss.push((idle, loaded));
            proc.stop();
        }
        let (per0, heap0, beyond0) = per_plugin(rss[0].0, rss[2].0, c - a);
        let (per1, heap1, beyond1) = per_plugin(rss[0].1, rss[2].1, c - a);
        let target = |beyond: f64| {
            if beyond <= 1024.0 {
                "met".to_string()
            } else {
                format!("MISSED by {}", mib(beyond - 1024.0))
            }
        };
        let target = if label.starts_with("Go") {
            "(reported on its own)".to_string()
        } else {
            pair(target(beyond0), target(beyond1))
        };
        let rss_cell = |r: &(Rss, Rss)| pair(mib(r.0.total_kib as f64), mib(r.1.total_kib as f64));
        writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {} | {} | {target} |",
            rss_cell(&rss[0]),
            rss_cell(&rss[1]),
            rss_cell(&rss[2]),
            pair(mib(per0), mib(per1)),
            pair(format!("{heap0:.0} KiB"), format!("{heap1:.0} KiB")),
            pair(mib(beyond0), mib(beyond1)),
        )?;
    }
    Ok(s)
}
