//! The load tool (issue 7, benchmarks 3-5, and issue 4's reload benchmark):
//! end to end through the mock LND over TLS on loopback, with the real `htlcgate
//! run` binary as a child process, beside a minimal Python grpcio interceptor.
//!
//! ```sh
//! cargo bench --bench load                   # everything, prints a Markdown table
//! cargo bench --bench load -- e2e reload     # only these parts (e2e memory startup reload idle)
//! cargo bench --bench load -- --quick        # a short smoke run of every part
//! ```
//!
//! Under `cargo test` (no `--bench` argument) it does nothing: it takes minutes
//! and installs Python packages. See benches/README.md for what each part does.

#[path = "../common/mod.rs"]
mod common;
mod drive;
mod e2e;
mod floor;
mod footprint;
mod idle;
mod memory;
mod reload;
mod startup;
mod target;

use std::path::PathBuf;

use anyhow::Context;

/// The parts, in the order they run.
const PARTS: [&str; 5] = ["e2e", "memory", "startup", "reload", "idle"];

/// Run sizes: full, or a quick smoke run (`--quick`).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// HTLCs per full-speed run (after as many again to warm up, / 10).
    pub window_htlcs: usize,
    /// Seconds of the steady 1,000 HTLC/s run.
    pub steady_seconds: u32,
    /// Plugin counts of the memory part.
    pub plugin_counts: [usize; 3],
    /// HTLCs of the memory part's load (at most 1,000 unanswered) before its
    /// second RSS sample.
    pub memory_load_htlcs: usize,
    /// Repetitions of each start-up measurement.
    pub startups: usize,
    /// Measured swaps per reload mode.
    pub swaps: usize,
    /// Rounds of the end-to-end part (every interceptor once per round).
    pub e2e_rounds: usize,
}

const FULL: Sizes = Sizes {
    window_htlcs: 30_000,
    steady_seconds: 10,
    plugin_counts: [1, 10, 50],
    memory_load_htlcs: 5_000,
    startups: 5,
    swaps: 20,
    e2e_rounds: 3,
};

const QUICK: Sizes = Sizes {
    window_htlcs: 2_000,
    steady_seconds: 2,
    plugin_counts: [1, 2, 4],
    memory_load_htlcs: 1_000,
    startups: 1,
    swaps: 3,
    e2e_rounds: 1,
};

fn main() -> anyhow::Result<()> {
    if std::env::var("HTLCGATE_BENCH_ROLE").as_deref() == Ok(floor::ROLE) {
        return floor::main_role();
    }
    if !common::is_bench_run() {
        println!("load: skipped (runs only under `cargo bench --bench load`)");
        return Ok(());
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let sizes = if args.iter().any(|a| a == "--quick") {
        QUICK
    } else {
        FULL
    };
    let mut parts: Vec<&str> = PARTS
        .iter()
        .copied()
        .filter(|p| args.iter().any(|a| a == p))
        .collect();
    if let Some(unknown) = args
        .iter()
        .find(|a| !a.starts_with("--") && !PARTS.contains(&a.as_str()))
    {
        anyhow::bail!(
            "load: unknown part `{unknown}`; the parts are {}",
            PARTS.join(", ")
        );
    }
    if parts.is_empty() {
        parts = PARTS.to_vec();
    }
    common::build_plugins(&[
        "fee-floor",
        "max-htlc",
        "channel-filter",
        "as-fee-floor",
        "go-fee-floor",
    ])?;
    let work = work_dir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let machine_before = common::machine();
    let mut out = String::new();
    for part in &parts {
        eprintln!("load: {part} ...");
        let section = match *part {
            // On a runtime worker, where the mock's connection tasks run too: from
            // block_on's thread every request sent would first wake a worker.
            "e2e" => rt.block_on(rt.spawn(e2e::run(work.clone(), sizes)))??,
            "memory" => rt.block_on(footprint::run(&work, sizes))?,
            "startup" => rt.block_on(startup::run(&work, sizes))?,
            "reload" => rt.block_on(reload::run(&work, sizes))?,
            "idle" => rt.block_on(idle::run(&work, sizes))?,
            _ => unreachable!("checked above"),
        };
        out.push_str(&section);
        out.push('\n');
    }
    println!("# htlcgate load benchmarks\n");
    println!(
        "Machine: {machine_before} (at the start); {} (at the end).",
        load_now()
    );
    println!(
        "htlcgate: {} (release), command: `cargo bench --bench load -- {}`\n",
        common::htlcgate_bin().display(),
        args.join(" ")
    );
    print!("{out}");
    Ok(())
}

/// The load average now.
fn load_now() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            format!(
                "load average {}",
                s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            )
        })
        .unwrap_or_default()
}

/// A fresh directory under target/ for this run's configs, journals and caches
/// (on the same disk as a real deployment's, not tmpfs).
fn work_dir() -> anyhow::Result<PathBuf> {
    let dir = common::repo().join("target/bench-load");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
