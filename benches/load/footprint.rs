//! Benchmark 4: the daemon's resident memory with 1, 10 and 50 plugins loaded.

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

/// Benchmark 4: RSS with N copies of each plugin (each its own instance), after
/// 200 HTLCs went through all of them.
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    let cache = work.join("cache");
    let mut s = String::new();
    writeln!(s, "## Memory: `htlcgate run` with N plugins loaded\n")?;
    writeln!(
        s,
        "VmRSS of the daemon after 200 HTLCs went through every plugin; \"heaps\" is the \
         resident part of the plugins' linear memories (from /proc/PID/smaps). Per plugin: \
         the difference between {} and {} plugins, divided by {}.\n",
        sizes.plugin_counts[2],
        sizes.plugin_counts[0],
        sizes.plugin_counts[2] - sizes.plugin_counts[0]
    )?;
    let [a, b, c] = sizes.plugin_counts;
    writeln!(
        s,
        "| plugin | RSS, {a} | RSS, {b} | RSS, {c} | per plugin | of which its heap | per plugin beyond its heap | target <= 1 MiB |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|")?;
    let mib = |kib: f64| format!("{:.1} MiB", kib / 1024.0);
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
        let mut rss: Vec<Rss> = Vec::new();
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
            Driver::new(&mock, &mut answers)
                .window(0, 200, 50)
                .await
                .with_context(|| format!("{label} x{n}"))?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            proc.check_alive()?;
            rss.push(memory::rss(proc.pid())?);
            proc.stop();
        }
        let per = (rss[2].total_kib as f64 - rss[0].total_kib as f64) / (c - a) as f64;
        let heap = (rss[2].linear_kib as f64 - rss[0].linear_kib as f64) / (c - a) as f64;
        let beyond = per - heap;
        let target = if label.starts_with("Go") {
            "(reported on its own)".to_string()
        } else if beyond <= 1024.0 {
            "met".to_string()
        } else {
            format!("MISSED by {}", mib(beyond - 1024.0))
        };
        writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {:.0} KiB | {} | {target} |",
            mib(rss[0].total_kib as f64),
            mib(rss[1].total_kib as f64),
            mib(rss[2].total_kib as f64),
            mib(per),
            heap,
            mib(beyond),
        )?;
    }
    Ok(s)
}
