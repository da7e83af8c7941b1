//! Benchmark 3: HTLCs per second and latency (request sent by LND to answer
//! accepted by LND) through the mock LND over TLS on loopback, for htlcgate's
//! 3-plugin chain and for the Python grpcio interceptor that resumes everything:
//! at full speed with at most 1,000 unanswered, and at a steady 1,000 HTLC/s.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use htlcgate::mock_lnd::{MockLnd, MockOptions};

use crate::drive::{Driver, Run};
use crate::target::{self, DaemonOptions, Interceptor};
use crate::{common, Sizes};

/// Unanswered HTLCs allowed at full speed.
const WINDOW: usize = 1_000;
/// The steady rate.
const RATE: u32 = 1_000;

/// One interceptor's figures.
struct Figures {
    /// The interceptor.
    name: String,
    /// Full speed, window of 1,000.
    full: Run,
    /// Steady 1,000 HTLC/s.
    steady: Run,
    /// htlcgate's own p50 and p99 over the steady run (request read to answer
    /// queued, from its `htlcgate_decision_seconds` histogram: bucket bounds).
    inside: Option<(f64, f64)>,
}

/// Where htlcgate's journal goes, and whether LND sends HTLC events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Journal on disk (fsync), no HTLC events.
    Disk,
    /// Journal on tmpfs (what the fsync costs).
    Tmpfs,
    /// Journal on disk, and the mock sends LND's HTLC events for every answer
    /// (forward + settle + final: what a routing node sees), which htlcgate hands
    /// to every plugin exporting `outcome`.
    DiskEvents,
}

/// Which interceptor to start.
enum Which {
    /// `htlcgate run` with the 3-plugin chain.
    Htlcgate(Setup),
    /// The Python baseline.
    Python,
    /// The harness's floor: a Rust interceptor that resumes at once.
    Floor,
}

async fn measure(work: &Path, which: Which, sizes: Sizes) -> anyhow::Result<Figures> {
    let label = match &which {
        Which::Htlcgate(Setup::Disk) => "htlcgate, 3-plugin chain, journal on disk".into(),
        Which::Htlcgate(Setup::Tmpfs) => {
            "htlcgate, 3-plugin chain, journal on tmpfs (/dev/shm)".into()
        }
        Which::Htlcgate(Setup::DiskEvents) => {
            "htlcgate, 3-plugin chain, journal on disk, LND's HTLC events on".into()
        }
        Which::Python => "Python grpcio interceptor (resume all)".to_string(),
        Which::Floor => {
            "floor: Rust tonic interceptor, resume at once, no chain or journal".to_string()
        }
    };
    let dir = work.join(match &which {
        Which::Htlcgate(Setup::Disk) => "e2e-htlcgate",
        Which::Htlcgate(Setup::Tmpfs) => "e2e-htlcgate-tmpfs",
        Which::Htlcgate(Setup::DiskEvents) => "e2e-htlcgate-events",
        Which::Python => "e2e-python",
        Which::Floor => "e2e-floor",
    });
    std::fs::create_dir_all(&dir)?;
    let mock = MockLnd::start(MockOptions::new(dir.join("lnd"))).await?;
    let mut answers = mock.watch_resolutions();
    let _events = (matches!(which, Which::Htlcgate(Setup::DiskEvents))).then(|| {
        mock.node().auto_outcomes(
            mock.watch_resolutions(),
            htlcgate::mock_node::Downstream::Settle,
            Duration::ZERO,
        )
    });
    let metrics = match &which {
        Which::Htlcgate(_) => Some(target::free_local_addr()?),
        Which::Python | Which::Floor => None,
    };
    let mut proc: Interceptor = match &which {
        Which::Htlcgate(on) => {
            let journal = if *on != Setup::Tmpfs {
                dir.join("htlcgate.journal")
            } else {
                Path::new("/dev/shm").join(format!("htlcgate-bench-{}.journal", std::process::id()))
            };
            target::remove_journal(&journal);
            target::spawn_htlcgate(
                &dir,
                &mock,
                &DaemonOptions {
                    plugins: target::example_chain(),
                    cache_dir: Some(work.join("cache")),
                    journal,
                    metrics,
                },
            )?
        }
        Which::Python => {
            let python = target::python_env()?;
            let stubs = dir.join("stubs");
            std::fs::create_dir_all(&stubs)?;
            target::python_stubs(&python, &stubs)?;
            target::spawn_python(&python, &stubs, &dir, &mock)?
        }
        Which::Floor => target::spawn_floor(&dir, &mock)?,
    };
    proc.wait_connected(&mock, Duration::from_secs(60)).await?;
    let result = async {
        let mut d = Driver::new(&mock, &mut answers);
        // Warm up: connections, allocators, the journal's first pages.
        d.window(0, sizes.window_htlcs / 10, WINDOW).await?;
        let full = d
            .window(1_000_000, sizes.window_htlcs, WINDOW)
            .await
            .context("full speed")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        const HIST: &str = "htlcgate_decision_seconds";
        let before = metrics
            .map(|a| target::scrape_histogram(a, HIST))
            .transpose()?;
        let steady = d
            .steady(2_000_000, RATE, sizes.steady_seconds)
            .await
            .context("steady rate")?;
        let inside = match (metrics, before) {
            (Some(a), Some(before)) => {
                let after = target::scrape_histogram(a, HIST)?;
                let q = |p| target::histogram_quantile(&before, &after, p) * 1e6;
                Some((q(0.5), q(0.99)))
            }
            _ => None,
        };
        anyhow::Ok((full, steady, inside))
    }
    .await;
    let violations = mock.violations();
    let alive = proc.check_alive();
    let tail = proc.log_tail();
    proc.stop();
    if let Which::Htlcgate(on) = which {
        if on == Setup::Tmpfs {
            target::remove_journal(
                &Path::new("/dev/shm")
                    .join(format!("htlcgate-bench-{}.journal", std::process::id())),
            );
        }
    }
    let (full, steady, inside) =
        result.with_context(|| format!("{label}; its log ends with:\n{tail}"))?;
    // Every steady HTLC's send time and latency, for a closer look than the table.
    let listing: String = steady
        .timeline_us
        .iter()
        .map(|(at, us)| format!("{at:.0} {us:.1}\n"))
        .collect();
    std::fs::write(dir.join("steady-timeline-us.txt"), listing)?;
    alive?;
    anyhow::ensure!(
        violations.is_empty(),
        "{label} broke LND's rules: {violations:?}"
    );
    Ok(Figures {
        name: label,
        full,
        steady,
        inside,
    })
}

/// The environment variable that picks rows (comma-separated: disk, tmpfs, events,
/// python; the floor always runs), for quicker experiments. Unset: every row.
const ROWS_VAR: &str = "HTLCGATE_BENCH_E2E_ROWS";

/// The row names [`ROWS_VAR`] accepts.
const ROWS: [&str; 4] = ["disk", "tmpfs", "events", "python"];

/// Refuses a [`ROWS_VAR`] naming a row that does not exist (a typo would
/// otherwise run the floor alone).
fn check_rows() -> anyhow::Result<()> {
    if let Ok(v) = std::env::var(ROWS_VAR) {
        if let Some(bad) = v.split(',').map(str::trim).find(|r| !ROWS.contains(r)) {
            anyhow::bail!(
                "{ROWS_VAR}: no row `{bad}`; the rows are {} (comma-separated; unset for all)",
                ROWS.join(", ")
            );
        }
    }
    Ok(())
}

/// Whether row `name` runs in this run (see [`ROWS_VAR`]).
fn wanted(name: &str) -> bool {
    std::env::var(ROWS_VAR).map_or(true, |v| v.split(',').any(|r| r.trim() == name))
}

/// The median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    common::median(&mut v)
}

/// Runs the part and returns its Markdown section.
///
/// Every interceptor runs once per round, in turns, so that a burst of someone
/// else's load lands on all of them; the table shows per-column medians over the
/// rounds, and the throughput ratio is taken within each round.
pub async fn run(work: PathBuf, sizes: Sizes) -> anyhow::Result<String> {
    let work = work.as_path();
    check_rows()?;
    let mut rounds: Vec<Vec<Figures>> = Vec::new();
    for round in 0..sizes.e2e_rounds {
        eprintln!("load: e2e round {} of {}", round + 1, sizes.e2e_rounds);
        let mut all = vec![measure(work, Which::Floor, sizes).await?];
        if wanted("disk") {
            all.push(measure(work, Which::Htlcgate(Setup::Disk), sizes).await?);
        }
        if wanted("tmpfs") && Path::new("/dev/shm").is_dir() {
            all.push(measure(work, Which::Htlcgate(Setup::Tmpfs), sizes).await?);
        }
        if wanted("events") {
            all.push(measure(work, Which::Htlcgate(Setup::DiskEvents), sizes).await?);
        }
        if wanted("python") {
            all.push(measure(work, Which::Python, sizes).await?);
        }
        rounds.push(all);
    }
    let mut s = String::new();
    writeln!(s, "## End to end through the mock LND (TLS, loopback)\n")?;
    writeln!(
        s,
        "Full speed: {} HTLCs, at most {WINDOW} unanswered. Steady: {RATE} HTLC/s for {} s. \
         Latency: from LND sending the request to LND accepting the answer. Medians over {} \
         interleaved round(s). \"inside htlcgate\": its own `htlcgate_decision_seconds` over the \
         steady run (request read to answer queued; histogram bucket bounds).\n",
        sizes.window_htlcs,
        sizes.steady_seconds,
        rounds.len()
    )?;
    writeln!(
        s,
        "| interceptor | full speed: HTLC/s | p50 | p99 | max | steady {RATE}/s: p50 | p99 | max | inside htlcgate: p50 | p99 |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let ms = |us: f64| {
        if us >= 1_000.0 {
            format!("{:.2} ms", us / 1_000.0)
        } else {
            format!("{us:.0} µs")
        }
    };
    let rows = rounds[0].len();
    let col =
        |i: usize, f: &dyn Fn(&Figures) -> f64| median(rounds.iter().map(|r| f(&r[i])).collect());
    for (i, first) in rounds[0].iter().enumerate() {
        let inside = first.inside.is_some();
        let q = |f: &Figures, p: f64| f.steady.quantile(p);
        writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            first.name,
            col(i, &|f| f.full.throughput()),
            ms(col(i, &|f| f.full.quantile(0.5))),
            ms(col(i, &|f| f.full.quantile(0.99))),
            ms(col(i, &|f| f.full.max())),
            ms(col(i, &|f| q(f, 0.5))),
            ms(col(i, &|f| q(f, 0.99))),
            ms(col(i, &|f| f.steady.max())),
            if inside {
                format!("<= {}", ms(col(i, &|f| f.inside.map_or(0.0, |x| x.0))))
            } else {
                "-".into()
            },
            if inside {
                format!("<= {}", ms(col(i, &|f| f.inside.map_or(0.0, |x| x.1))))
            } else {
                "-".into()
            },
        )?;
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    writeln!(s)?;
    let python = wanted("python").then_some(rows - 1);
    for i in 1..python.unwrap_or(rows) {
        let p99 = col(i, &|f| f.steady.quantile(0.99));
        let floor_p99 = col(0, &|f| f.steady.quantile(0.99));
        let throughput = match python {
            Some(py) => {
                let ratios: Vec<f64> = rounds
                    .iter()
                    .map(|r| r[i].full.throughput() / r[py].full.throughput())
                    .collect();
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                let ratio = median(ratios);
                format!(
                    "{ratio:.1}x the Python interceptor's throughput (rounds {lo:.1}-{hi:.1}x; \
                     target >= 10x): {}; ",
                    verdict(ratio >= 10.0)
                )
            }
            None => String::new(),
        };
        writeln!(
            s,
            "- {}: {throughput}p99 at a steady {RATE}/s {} (target <= 1 ms): {}; the \
             harness's floor alone has p99 {}",
            rounds[0][i].name,
            ms(p99),
            verdict(p99 <= 1_000.0),
            ms(floor_p99),
        )?;
    }
    Ok(s)
}
