//! Issue 4's reload benchmark: time from writing a new version of a plugin file to
//! that version deciding, through a running `htlcgate run` (file watcher, 250 ms
//! debounce, build, swap), with the compile cache (returning to a cached version,
//! and a new, never-seen version: a miss) and without it; and the same
//! reload's work alone through the reload API (`htlcgate::reload::build`, then the
//! first decision), which is everything but the debounce and the watcher.
//!
//! The two versions are real Rust plugins that decide a probe HTLC (a forward
//! paying a negative fee) differently with the same (empty) config: `fee-floor`
//! fails it, `channel-filter` passes it (the chain's default then resumes it).
//! After each write, probes are sent one after another until one is answered
//! the new way; the time is taken when LND accepts that answer.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use htlcgate::mock_lnd::{MockLnd, Resolution};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::input::HtlcInput;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::common;
use crate::target::{self, PluginEntry};
use crate::Sizes;

/// The incoming channel of the probes.
const PROBE_CHAN: u64 = 7 << 40;
/// LND's FAIL and RESUME actions.
const FAIL: i32 = 1;
const RESUME: i32 = 2;

/// One version of the plugin file and the answer it gives the probe.
struct Version {
    /// The component.
    bytes: Vec<u8>,
    /// LND's action for the probe when this version decides.
    action: i32,
}

fn versions() -> anyhow::Result<[Version; 2]> {
    let read = |name: &str| {
        std::fs::read(common::plugin_path(name))
            .with_context(|| format!("reading {}", common::plugin_path(name).display()))
    };
    Ok([
        Version {
            bytes: read("fee-floor")?,
            action: FAIL,
        },
        Version {
            bytes: read("channel-filter")?,
            action: RESUME,
        },
    ])
}

/// How the compile cache meets each swap's new file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Cache on, alternating between the two files: after the first two swaps
    /// each is in the cache, so every measured swap is a hit. What returning to
    /// a version the daemon already ran costs (or a config-only edit).
    Cached,
    /// Cache on, and every swap writes a version never seen before (the next
    /// file with a distinct custom section, `common::variant`): a cache miss that
    /// compiles and stores it, as a new release of a plugin does.
    Fresh,
    /// `cache = false`: every swap compiles.
    NoCache,
}

impl Mode {
    /// The three modes, in the table's order.
    const ALL: [Mode; 3] = [Mode::Cached, Mode::Fresh, Mode::NoCache];

    /// The table's label.
    fn label(self) -> &'static str {
        match self {
            Mode::Cached => {
                "with the compile cache: returning to a cached version, or a config-only edit"
            }
            Mode::Fresh => {
                "with the compile cache: a new, never-seen version each time (cache miss)"
            }
            Mode::NoCache => "without the cache (cache = false)",
        }
    }

    /// The working directory's name, after `prefix`.
    fn dir(self, prefix: &str) -> String {
        let suffix = match self {
            Mode::Cached => "cache",
            Mode::Fresh => "cache-fresh",
            Mode::NoCache => "nocache",
        };
        format!("{prefix}-{suffix}")
    }

    /// Whether the compile cache is on.
    fn cache(self) -> bool {
        self != Mode::NoCache
    }

    /// The file swap `swap` writes (the other version of the two from the one
    /// before; in [`Mode::Fresh`] with a custom section no earlier swap had).
    fn bytes(self, v: &Version, swap: usize) -> Vec<u8> {
        match self {
            Mode::Fresh => common::variant(&v.bytes, swap as u32),
            Mode::Cached | Mode::NoCache => v.bytes.clone(),
        }
    }
}

/// A forward paying a negative fee (1 msat less in than out).
fn probe(id: u64) -> htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest {
    let mut r = common::forward(PROBE_CHAN, id, 2_000, 0);
    r.incoming_amount_msat = 1_999;
    r
}

/// Replaces `path` with `bytes` the way a deployment does (write aside, rename).
fn install(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// Sends probes one at a time until one gets `want`; returns when LND accepted it.
async fn until_answered(
    mock: &MockLnd,
    answers: &mut UnboundedReceiver<Resolution>,
    next_id: &mut u64,
    want: i32,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id = *next_id;
        *next_id += 1;
        mock.send_htlc(probe(id));
        loop {
            let r = tokio::time::timeout(Duration::from_secs(30), answers.recv())
                .await
                .context("no answer to a probe within 30 s")?
                .context("the mock LND stopped")?;
            if r.key == (PROBE_CHAN, id) {
                if r.response.action == want {
                    return Ok(r.at);
                }
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the new plugin version did not decide within 30 s of the write");
        }
    }
}

/// Through the daemon: write -> new version deciding, for each of `swaps` swaps
/// (after two unmeasured ones: they warm the daemon up and, in [`Mode::Cached`],
/// put both versions in the cache).
async fn through_daemon(work: &Path, mode: Mode, sizes: Sizes) -> anyhow::Result<Vec<f64>> {
    let dir = work.join(mode.dir("reload"));
    std::fs::create_dir_all(&dir)?;
    let plugin = dir.join("policy.wasm");
    let v = versions()?;
    install(&plugin, &v[0].bytes)?;
    let cache_dir = mode.cache().then(|| dir.join("cache"));
    let (_, mock, mut proc) = target::start_daemon(
        &dir,
        vec![PluginEntry::new("policy", &plugin, &[])],
        cache_dir,
    )
    .await?;
    let mut answers = mock.watch_resolutions();
    let mut id = 0;
    until_answered(&mock, &mut answers, &mut id, v[0].action).await?;
    let mut times = Vec::new();
    for swap in 0..sizes.swaps + 2 {
        let next = &v[(swap + 1) % 2];
        let bytes = mode.bytes(next, swap);
        let t0 = Instant::now();
        install(&plugin, &bytes)?;
        let t1 = until_answered(&mock, &mut answers, &mut id, next.action)
            .await
            .with_context(|| {
                format!(
                    "swap {swap}; htlcgate's log ends with:\n{}",
                    proc.log_tail()
                )
            })?;
        if swap >= 2 {
            times.push(t1.duration_since(t0).as_secs_f64() * 1e3);
        }
        // Let the watcher settle (the next write must start a new debounce).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proc.check_alive()?;
    proc.stop();
    Ok(times)
}

/// Through the reload API in this process: `reload::build` (config, compile or
/// cache, instantiate, init) and the first decision, without watcher or debounce.
async fn through_api(work: &Path, mode: Mode, sizes: Sizes) -> anyhow::Result<Vec<f64>> {
    let dir = work.join(mode.dir("reload-api"));
    std::fs::create_dir_all(&dir)?;
    let plugin = dir.join("policy.wasm");
    let v = versions()?;
    install(&plugin, &v[0].bytes)?;
    let config = dir.join("htlcgate.toml");
    let cache_line = if mode.cache() {
        format!(
            "cache = true\ncache_dir = {:?}\n",
            dir.join("cache").to_string_lossy()
        )
    } else {
        "cache = false\n".to_string()
    };
    std::fs::write(
        &config,
        format!(
            "[sandbox]\n{cache_line}\n[[plugin]]\nname = \"policy\"\npath = {:?}\n",
            plugin.to_string_lossy()
        ),
    )?;
    let cfg = htlcgate::config::Config::load(&config)?;
    let sandbox = Sandbox::new(&cfg.sandbox)?;
    let mut times = Vec::new();
    for swap in 0..sizes.swaps + 2 {
        let next = &v[(swap + 1) % 2];
        install(&plugin, &mode.bytes(next, swap))?;
        let t0 = Instant::now();
        let (_, chain) = htlcgate::reload::build(&config, &sandbox)
            .await
            .map_err(|e| anyhow::anyhow!("reload::build: {e}"))?;
        let input = Arc::new(HtlcInput::from_request(probe(swap as u64))?);
        let decision = chain
            .decide(input)
            .await
            .context("the chain dropped the probe")?;
        let elapsed = t0.elapsed();
        let got = match decision.verdict {
            htlcgate::verdict::Verdict::Resume => RESUME,
            _ => FAIL,
        };
        anyhow::ensure!(
            got == next.action,
            "version {swap} decided {:?}",
            decision.verdict
        );
        if swap >= 2 {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// Runs the part and returns its Markdown section.
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for mode in Mode::ALL {
        let mut daemon = through_daemon(work, mode, sizes).await?;
        let mut api = through_api(work, mode, sizes).await?;
        rows.push((
            mode.label().to_string(),
            common::median(&mut daemon),
            common::median(&mut api),
        ));
    }
    let debounce = htlcgate::reload::DEBOUNCE.as_secs_f64() * 1e3;
    let mut s = String::new();
    writeln!(
        s,
        "## Hot reload: plugin file written -> new version deciding\n"
    )?;
    writeln!(
        s,
        "Median of {} swaps between two real Rust plugins (~50 KB each), after 2 unmeasured \
         ones. Through the daemon: write + rename, then probes until LND accepts an answer \
         from the new version. Reload work alone: `htlcgate::reload::build` + the first \
         decision, in process. \"Returning to a cached version\": the swaps alternate between \
         the two files, so after the first two both are in the cache and every measured swap \
         is a cache hit (as when going back to a version the daemon ran before; a config-only \
         edit also reuses the cached code). \"A new, never-seen version\": every swap writes \
         the next file with a custom section no earlier swap had (a distinct content hash), so \
         the cache misses and compiles and stores it: what deploying a new plugin version \
         costs.\n",
        sizes.swaps
    )?;
    writeln!(
        s,
        "| | through the daemon | of which the debounce | reload work alone (no watcher, no debounce) |"
    )?;
    writeln!(s, "|---|---:|---:|---:|")?;
    for (label, daemon, api) in &rows {
        writeln!(
            s,
            "| {label} | {daemon:.0} ms | {debounce:.0} ms ({:.0}%) | {api:.1} ms |",
            debounce / daemon * 100.0
        )?;
    }
    writeln!(
        s,
        "\nThe debounce is a fixed wait for the files to be quiet ({debounce:.0} ms after the last \
         change event); the rest is the watcher's event, the reload work and the first probe's round trip."
    )?;
    Ok(s)
}
