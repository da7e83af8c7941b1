//! Benchmark 3: HTLCs per second and latency (request sent by LND to answer
//! accepted by LND) through the mock LND over TLS on loopback, for htlcgate's
//! 3-plugin chain and for the Python grpcio interceptor that resumes everything:
//! at full speed with at most 1,000 unanswered, and at a steady 1,000 HTLC/s.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use htlcgate::mock_lnd::{MockLnd, MockOptions};

use crate::drive::{Driver, Run};
use crate::target::{self, DaemonOptions, Interceptor};
use crate::Sizes;

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
}

/// Which interceptor to start.
enum Which {
    /// `htlcgate run`, journal at this path.
    Htlcgate(&'static str),
    /// The Python baseline.
    Python,
}

async fn measure(work: &Path, which: Which, sizes: Sizes) -> anyhow::Result<Figures> {
    let label = match &which {
        Which::Htlcgate(j) => format!("htlcgate, 3-plugin chain, journal on {j}"),
        Which::Python => "Python grpcio interceptor (resume all)".to_string(),
    };
    let dir = work.join(match &which {
        Which::Htlcgate("disk") => "e2e-htlcgate",
        Which::Htlcgate(_) => "e2e-htlcgate-tmpfs",
        Which::Python => "e2e-python",
    });
    std::fs::create_dir_all(&dir)?;
    let mock = MockLnd::start(MockOptions::new(dir.join("lnd"))).await?;
    let mut answers = mock.watch_resolutions();
    let mut proc: Interceptor = match &which {
        Which::Htlcgate(on) => {
            let journal = if *on == "disk" {
                dir.join("htlcgate.journal")
            } else {
                Path::new("/dev/shm").join(format!("htlcgate-bench-{}.journal", std::process::id()))
            };
            let _ = std::fs::remove_file(&journal);
            target::spawn_htlcgate(
                &dir,
                &mock,
                &DaemonOptions {
                    plugins: target::example_chain(),
                    cache_dir: Some(work.join("cache")),
                    journal,
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
        let steady = d
            .steady(2_000_000, RATE, sizes.steady_seconds)
            .await
            .context("steady rate")?;
        anyhow::Ok((full, steady))
    }
    .await;
    let violations = mock.violations();
    let alive = proc.check_alive();
    let tail = proc.log_tail();
    proc.stop();
    if let Which::Htlcgate(on) = which {
        if on != "disk" {
            let _ = std::fs::remove_file(
                Path::new("/dev/shm")
                    .join(format!("htlcgate-bench-{}.journal", std::process::id())),
            );
        }
    }
    let (full, steady) = result.with_context(|| format!("{label}; its log ends with:\n{tail}"))?;
    alive?;
    anyhow::ensure!(
        violations.is_empty(),
        "{label} broke LND's rules: {violations:?}"
    );
    Ok(Figures {
        name: label,
        full,
        steady,
    })
}

/// Runs the part and returns its Markdown section.
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    let mut all = vec![measure(work, Which::Htlcgate("disk"), sizes).await?];
    if Path::new("/dev/shm").is_dir() {
        all.push(measure(work, Which::Htlcgate("tmpfs (/dev/shm)"), sizes).await?);
    }
    all.push(measure(work, Which::Python, sizes).await?);
    let mut s = String::new();
    writeln!(s, "## End to end through the mock LND (TLS, loopback)\n")?;
    writeln!(
        s,
        "Full speed: {} HTLCs, at most {WINDOW} unanswered. Steady: {RATE} HTLC/s for {} s. \
         Latency: from LND sending the request to LND accepting the answer.\n",
        sizes.window_htlcs, sizes.steady_seconds
    )?;
    writeln!(
        s,
        "| interceptor | full speed: HTLC/s | p50 | p99 | max | steady {RATE}/s: p50 | p99 | max |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let ms = |us: f64| {
        if us >= 1_000.0 {
            format!("{:.2} ms", us / 1_000.0)
        } else {
            format!("{us:.0} µs")
        }
    };
    for f in &all {
        writeln!(
            s,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            f.name,
            f.full.throughput(),
            ms(f.full.quantile(0.5)),
            ms(f.full.quantile(0.99)),
            ms(f.full.max()),
            ms(f.steady.quantile(0.5)),
            ms(f.steady.quantile(0.99)),
            ms(f.steady.max()),
        )?;
    }
    let python = all.last().expect("python ran");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    writeln!(s)?;
    for f in &all[..all.len() - 1] {
        let ratio = f.full.throughput() / python.full.throughput();
        writeln!(
            s,
            "- {}: {ratio:.1}x the Python interceptor's throughput (target >= 10x): {}; \
             p99 at a steady {RATE}/s {} (target <= 1 ms): {}",
            f.name,
            verdict(ratio >= 10.0),
            ms(f.steady.quantile(0.99)),
            verdict(f.steady.quantile(0.99) <= 1_000.0)
        )?;
    }
    Ok(s)
}
