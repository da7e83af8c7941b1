//! Benchmark 3: HTLCs per second and latency (request sent by LND to answer
//! accepted by LND) through the mock LND over TLS on loopback, for htlcgate's
//! 3-plugin chain and for the Python grpcio interceptor that resumes everything:
//! at full speed with at most 1,000 unanswered, and at a steady 1,000 HTLC/s
//! (open loop: latency from each HTLC's scheduled send time, see `drive.rs`).

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
    /// Steady 1,000 HTLC/s (latency from the scheduled send time, with each
    /// HTLC's send lag).
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
#[derive(Clone, Copy)]
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
    // Every steady HTLC, for a closer look than the table: one line per HTLC in
    // the order the answers came, three space-separated columns, all in µs:
    //   1. when it was actually sent, after the run's start;
    //   2. its latency, from its *scheduled* send time to LND accepting the answer
    //      (so a late send counts against it);
    //   3. when it was scheduled to be sent, after the run's start (column 1 minus
    //      column 3 is its send lag).
    let listing: String = steady
        .timeline_us
        .iter()
        .map(|t| {
            format!(
                "{:.0} {:.1} {:.0}\n",
                t.sent_us, t.latency_us, t.scheduled_us
            )
        })
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

/// The largest of `v` (0 when empty).
fn largest(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

/// The rows of this run, in the table's order: the floor first, Python last
/// (see [`ROWS_VAR`]).
fn rows() -> Vec<Which> {
    let mut rows = vec![Which::Floor];
    if wanted("disk") {
        rows.push(Which::Htlcgate(Setup::Disk));
    }
    if wanted("tmpfs") && Path::new("/dev/shm").is_dir() {
        rows.push(Which::Htlcgate(Setup::Tmpfs));
    }
    if wanted("events") {
        rows.push(Which::Htlcgate(Setup::DiskEvents));
    }
    if wanted("python") {
        rows.push(Which::Python);
    }
    rows
}

/// Runs the part and returns its Markdown section.
///
/// Every interceptor runs once per round, in turns, so that a burst of someone
/// else's load lands on all of them; the order is rotated by one row per round
/// (round `r` starts with row `r`), so no row always runs first or last. The
/// table shows throughput, p50 and p99 as medians over the rounds and each max as
/// the largest over all rounds; the throughput ratio is taken within each round.
pub async fn run(work: PathBuf, sizes: Sizes) -> anyhow::Result<String> {
    let work = work.as_path();
    check_rows()?;
    let order = rows();
    let rows = order.len();
    // Each round's figures in the table's order, whatever order they ran in.
    let mut rounds: Vec<Vec<Figures>> = Vec::new();
    for round in 0..sizes.e2e_rounds {
        eprintln!("load: e2e round {} of {}", round + 1, sizes.e2e_rounds);
        let mut all: Vec<Option<Figures>> = (0..rows).map(|_| None).collect();
        for k in 0..rows {
            let i = (round + k) % rows;
            all[i] = Some(measure(work, order[i], sizes).await?);
        }
        rounds.push(all.into_iter().map(|f| f.expect("every row ran")).collect());
    }
    let mut s = String::new();
    writeln!(s, "## End to end through the mock LND (TLS, loopback)\n")?;
    writeln!(
        s,
        "Full speed: {} HTLCs, at most {WINDOW} unanswered (closed loop: latency from LND \
         sending the request to LND accepting the answer). Steady: {RATE} HTLC/s for {} s, \
         open loop on a fixed schedule: latency from each HTLC's *scheduled* send time to LND \
         accepting the answer, so a late send is not hidden (coordinated omission); \"send lag\" \
         is how late the harness sent each HTLC after its scheduled time. {} round(s), the \
         rows' order rotated each round. HTLC/s, p50 and p99 (and the send lag's p99): the \
         **median of rounds**; max: the largest over all rounds. \"inside htlcgate\": its own \
         `htlcgate_decision_seconds` over the steady run (request read to answer queued; \
         histogram bucket bounds; median of rounds).\n",
        sizes.window_htlcs,
        sizes.steady_seconds,
        rounds.len()
    )?;
    writeln!(
        s,
        "| interceptor | full speed: HTLC/s (median of rounds) | p50 (median of rounds) | p99 (median of rounds) | max (all rounds) \
         | steady {RATE}/s: p50 (median of rounds) | p99 (median of rounds) | max (all rounds) \
         | send lag: p99 (median of rounds) | max (all rounds) \
         | inside htlcgate: p50 (median of rounds) | p99 (median of rounds) |"
    )?;
    writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let ms = |us: f64| {
        if us >= 1_000.0 {
            format!("{:.2} ms", us / 1_000.0)
        } else {
            format!("{us:.0} µs")
        }
    };
    // Median over the rounds, and the largest over the rounds, of row `i`'s `f`.
    let col =
        |i: usize, f: &dyn Fn(&Figures) -> f64| median(rounds.iter().map(|r| f(&r[i])).collect());
    let top = |i: usize, f: &dyn Fn(&Figures) -> f64| largest(rounds.iter().map(|r| f(&r[i])));
    for (i, first) in rounds[0].iter().enumerate() {
        let inside = first.inside.is_some();
        let q = |f: &Figures, p: f64| f.steady.quantile(p);
        writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            first.name,
            col(i, &|f| f.full.throughput()),
            ms(col(i, &|f| f.full.quantile(0.5))),
            ms(col(i, &|f| f.full.quantile(0.99))),
            ms(top(i, &|f| f.full.max())),
            ms(col(i, &|f| q(f, 0.5))),
            ms(col(i, &|f| q(f, 0.99))),
            ms(top(i, &|f| f.steady.max())),
            ms(col(i, &|f| f.steady.lag_quantile(0.99))),
            ms(top(i, &|f| f.steady.max_lag())),
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
                    "{ratio:.1}x the Python interceptor's throughput (median of rounds; rounds \
                     {lo:.1}-{hi:.1}x; target >= 10x): {}; ",
                    verdict(ratio >= 10.0)
                )
            }
            None => String::new(),
        };
        writeln!(
            s,
            "- {}: {throughput}p99 at a steady {RATE}/s, from the scheduled send time {} (median \
             of rounds; target <= 1 ms): {}; the harness's floor alone has p99 {} and the \
             harness's send lag p99 {} in this row",
            rounds[0][i].name,
            ms(p99),
            verdict(p99 <= 1_000.0),
            ms(floor_p99),
            ms(col(i, &|f| f.steady.lag_quantile(0.99))),
        )?;
    }
    Ok(s)
}
