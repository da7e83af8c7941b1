//! `htlcgate demo`: the newcomer's first run, no LND needed.
//!
//! Starts the mock LND on loopback (real TLS gRPC, LND's rules enforced, its
//! channels, HTLC events and block height served), connects htlcgate to it exactly
//! as to a real node, streams a realistic mix of HTLCs through the example chain —
//! `circuitbreaker` first (per-peer in-flight limits, a queue, a rate limit,
//! learning from outcomes), then channel-filter, max-htlc, fee-floor and one
//! deliberately broken plugin — prints one line per decision and a summary, and
//! shows the broken plugin cut off while forwarding goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::{mpsc, watch};

use crate::chain::{Chain, DecidedBy};
use crate::circuit::Scid;
use crate::config::{ChainConfig, OnFault, PluginConfig, SandboxConfig};
use crate::gate::{DecisionEvent, Gate, GateOptions};
use crate::lnd::feature::{Feature, Features};
use crate::lnd::node::{NodeContext, NodeOptions};
use crate::lnd::proto::routerrpc::{CircuitKey, ForwardHtlcInterceptRequest};
use crate::mock_lnd::{sample_request, MockLnd, MockOptions};
use crate::mock_node::{sample_channel, Downstream};
use crate::verdict::Verdict;
use crate::wasm::engine::Sandbox;

/// Arguments of `htlcgate demo`, for the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory with the built example plugins.
    #[arg(long, default_value = "target/wasm-plugins")]
    pub plugins: PathBuf,
    /// Number of HTLCs to stream (at least 1).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Milliseconds between HTLCs.
    #[arg(long, default_value_t = 40)]
    pub pace_ms: u64,
}

impl From<DemoArgs> for DemoOptions {
    fn from(a: DemoArgs) -> DemoOptions {
        DemoOptions {
            plugins: a.plugins,
            count: usize::try_from(a.count).unwrap_or(usize::MAX),
            pace: Duration::from_millis(a.pace_ms),
        }
    }
}

/// Demo options.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Directory holding the built example plugins (`fee-floor.wasm`, ...).
    pub plugins: PathBuf,
    /// Number of HTLCs to stream.
    pub count: usize,
    /// Pause between HTLCs, so the lines can be read as they come.
    pub pace: Duration,
}

/// A channel of the demo node: its SCID and a peer nickname.
const CHANNELS: &[(u64, u64, u64, &str)] = &[
    (812_345, 1_204, 0, "ACINQ"),
    (826_001, 77, 1, "Kraken"),
    (799_999, 2_048, 0, "Boltz"),
    (840_512, 3, 0, "old-peer"),
];

fn scid(i: usize) -> u64 {
    let (b, t, o, _) = CHANNELS[i];
    (b << 40) | (t << 16) | o
}

fn plugin(dir: &Path, name: &str) -> anyhow::Result<PluginConfig> {
    let path = dir.join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "plugin {} not found; build the example plugins first: scripts/build-plugins (or run scripts/demo)",
            path.display()
        );
    }
    Ok(PluginConfig::with_defaults(name, path))
}

/// The demo node's channels as LND lists them: one per peer; Kraken opened its
/// channel to us, we opened the others.
pub fn demo_channels() -> Vec<crate::lnd::proto::lnrpc::Channel> {
    (0..CHANNELS.len())
        .map(|i| {
            let mut c = sample_channel(scid(i));
            c.initiator = CHANNELS[i].3 != "Kraken";
            c
        })
        .collect()
}

/// The peer pubkey (hex) of demo channel `i`.
fn peer(i: usize) -> String {
    sample_channel(scid(i)).remote_pubkey
}

/// The example chain: `circuitbreaker` (at most 3 HTLCs in flight per peer;
/// Kraken's are queued beyond 1, Boltz is held to 3 HTLCs/s with a burst of 2),
/// channel-filter, max-htlc, fee-floor, and `spin-forever` (a plugin that loops)
/// with `on_fault = "skip"` and quarantine after 3 faults.
pub fn demo_chain(dir: &Path) -> anyhow::Result<Vec<PluginConfig>> {
    let mut breaker = plugin(dir, "circuitbreaker")?;
    breaker.grants = vec!["kv".into(), "node".into()];
    breaker.config = vec![
        ("mode".into(), "fail".into()),
        ("max_pending".into(), "3".into()),
        ("max_hourly_rate".into(), "0".into()),
        ("queue_retry_ms".into(), "50".into()),
        (format!("peer.{}.mode", peer(1)), "queue".into()),
        (format!("peer.{}.max_pending", peer(1)), "1".into()),
        (format!("peer.{}.max_hourly_rate", peer(2)), "10800".into()),
        (format!("peer.{}.burst", peer(2)), "2".into()),
    ];
    let mut filter = plugin(dir, "channel-filter")?;
    filter.config = vec![("deny_in".into(), Scid(scid(3)).to_string())];
    let mut max = plugin(dir, "max-htlc")?;
    max.config = vec![("max_msat".into(), "5000000000".into())];
    let mut fee = plugin(dir, "fee-floor")?;
    fee.config = vec![
        ("base_msat".into(), "1000".into()),
        ("ppm".into(), "100".into()),
    ];
    let mut spin = plugin(dir, "spin-forever")?;
    spin.on_fault = OnFault::Skip;
    spin.max_faults = 3;
    spin.fuel = 50_000_000;
    Ok(vec![breaker, filter, max, fee, spin])
}

/// A realistic mix: amounts from 1 sat to 8 M sat, fees mostly above the floor
/// (base 1000 msat + 100 ppm), some below, some from the denied peer.
pub fn demo_htlcs(count: usize, seed: u64) -> Vec<ForwardHtlcInterceptRequest> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut htlc_ids = [0u64; 4];
    (0..count)
        .map(|_| {
            let from = rng.usize(0..CHANNELS.len());
            let mut to = rng.usize(0..CHANNELS.len() - 1);
            if to >= from {
                to += 1;
            }
            let chan = scid(from);
            let id = htlc_ids[from];
            htlc_ids[from] += 1;
            let mut req = sample_request(chan, id);
            req.incoming_circuit_key = Some(CircuitKey {
                chan_id: chan,
                htlc_id: id,
            });
            let out = match rng.u8(0..10) {
                0 => rng.u64(1_000..100_000),
                1 => rng.u64(5_000_000_000..8_000_000_000),
                _ => rng.u64(100_000..2_000_000_000),
            };
            let floor = 1_000 + out / 10_000;
            let fee = match rng.u8(0..10) {
                0 | 1 => rng.u64(0..floor),
                _ => floor + rng.u64(0..floor * 3),
            };
            req.outgoing_amount_msat = out;
            req.incoming_amount_msat = out + fee;
            req.outgoing_requested_chan_id = scid(to);
            req
        })
        .collect()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn line(n: usize, ev: &DecisionEvent) -> String {
    let verdict = match &ev.decision.verdict {
        Verdict::Fail(_) => "FAIL  ".to_string(),
        Verdict::Resume => "resume".to_string(),
        v => v.to_string(),
    };
    let (route, amounts) = match &ev.input {
        Some(i) => {
            let r = &i.record;
            (
                format!(
                    "{:>16} → {:<16}",
                    Scid(ev.key.chan_id).to_string(),
                    Scid(r.outgoing_requested_chan_id).to_string()
                ),
                format!(
                    "{:>15} msat  fee {:>9}",
                    thousands(r.outgoing_amount_msat),
                    r.incoming_amount_msat as i128 - r.outgoing_amount_msat as i128
                ),
            )
        }
        None => (format!("{:>35}", ev.key), String::new()),
    };
    let faults: Vec<String> = ev
        .decision
        .trace
        .iter()
        .filter_map(|t| match &t.step {
            crate::wasm::plugin::Step::Fault(f) => Some(format!("{} {}", t.plugin, f.reason())),
            crate::wasm::plugin::Step::Quarantined => Some(format!("{} quarantined", t.plugin)),
            _ => None,
        })
        .collect();
    let mut notes = faults;
    if let Some(attempt) = ev
        .input
        .as_ref()
        .map(|i| i.record.attempt)
        .filter(|&a| a > 1)
    {
        notes.insert(0, format!("queued: asked {attempt}x"));
    }
    let note = if notes.is_empty() {
        String::new()
    } else {
        format!("  [{}]", notes.join(", "))
    };
    format!(
        "{n:>4}  {route}  {amounts}  {verdict:<6} by {:<14} {:>7} µs{note}",
        ev.decision.by.to_string(),
        ev.decision.elapsed.as_micros()
    )
}

/// What happened to plugin `name` over the demo, in words: its faults by
/// reason, and whether it was quarantined (a step says so, or `max_faults` of its
/// calls in a row faulted).
fn fault_summary(events: &[DecisionEvent], name: &str, max_faults: u32) -> String {
    let mut reasons: BTreeMap<&'static str, u32> = BTreeMap::new();
    let (mut in_a_row, mut quarantined) = (0u32, false);
    for t in events
        .iter()
        .flat_map(|e| &e.decision.trace)
        .filter(|t| &*t.plugin == name)
    {
        match &t.step {
            crate::wasm::plugin::Step::Fault(f) => {
                *reasons.entry(f.reason()).or_default() += 1;
                in_a_row += 1;
                quarantined |= in_a_row >= max_faults;
            }
            crate::wasm::plugin::Step::Quarantined => quarantined = true,
            _ => in_a_row = 0,
        }
    }
    let faults: u32 = reasons.values().sum();
    let why = match reasons.len() {
        0 => String::new(),
        1 => format!(" ({})", reasons.keys().next().expect("one")),
        _ => format!(
            " ({})",
            reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let end = if quarantined {
        "then quarantined".to_string()
    } else {
        format!("not quarantined (it would be after {max_faults} in a row)")
    };
    format!("{name}: {faults} faults{why}, {end}; forwarding never stopped")
}

/// The `p`-quantile (0..=1) of sorted `values`; 0 for none.
fn quantile(values: &[u128], p: f64) -> u128 {
    match values.len() {
        0 => 0,
        n => values[((n - 1) as f64 * p) as usize],
    }
}

/// Runs the demo and prints to stdout.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    if opts.count == 0 {
        // The printer would wait for a first decision that never comes.
        bail!("--count 0: nothing to stream; give --count 1 or more");
    }
    let plugins = demo_chain(&opts.plugins)?;
    let dir = tempfile_dir()?;
    let mock = MockLnd::start(MockOptions::new(&dir))
        .await
        .context("starting the mock LND")?;
    println!("htlcgate demo");
    println!(
        "  mock LND on {} (TLS, macaroon checked, LND's stream rules enforced)",
        mock.addr()
    );
    println!(
        "  chain: {}",
        plugins
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    println!("  circuitbreaker: at most 3 HTLCs in flight per peer (fail beyond); Kraken: 1, queued beyond;");
    println!("                  Boltz: 3 HTLCs/s, burst 2; it learns when HTLCs settle from LND's HTLC events");
    println!("  policies: deny HTLCs from {} (old-peer); fail above 5,000,000 sat; fail fees below 1000 msat + 100 ppm", Scid(scid(3)));
    println!("  spin-forever loops on every HTLC: watch it get cut off by fuel and quarantined\n");

    // The node side: channels, and every forward settles downstream 150 ms after
    // htlcgate resumes it (LND's HTLC events tell circuitbreaker).
    mock.node().set_channels(demo_channels());
    let _auto = mock.node().auto_outcomes(
        mock.watch_resolutions(),
        Downstream::Settle,
        Duration::from_millis(150),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let features = Features::new();
    let node = NodeContext::spawn(
        mock.endpoint(),
        NodeOptions::default(),
        features.clone(),
        stop_rx.clone(),
    );
    let journal = crate::journal::Journal::in_memory();
    let sandbox = Sandbox::new(&SandboxConfig::default())?
        .with_kv(journal.kv())
        .with_node(node.clone());
    // Off the runtime: a plugin's `init` may wait in WASI, which would panic on a
    // runtime thread (as in `run` and `replay`).
    let specs = plugins.clone();
    let chain = tokio::task::spawn_blocking(move || Chain::load(&sandbox, &specs, Verdict::Resume))
        .await
        .context("loading the demo chain")??;
    let (obs_tx, mut obs_rx) = mpsc::unbounded_channel();
    let gate = Gate::with_options(
        chain,
        ChainConfig::default(),
        journal,
        GateOptions {
            observer: Some(obs_tx),
            node: Some(node),
            ..GateOptions::default()
        },
    );
    crate::daemon::deliver_outcomes(
        mock.endpoint(),
        features.clone(),
        gate.clone(),
        stop_rx.clone(),
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        features.wait_for(|s| {
            [Feature::ChannelCache, Feature::HtlcOutcomes]
                .iter()
                .all(|f| s.get(f).is_some_and(|st| st.is_on()))
        }),
    )
    .await
    .context("the mock LND's channels and HTLC events did not come up")?;
    let stream = tokio::spawn(crate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        stop_rx,
    ));
    mock.wait_connected(Duration::from_secs(10))
        .await
        .context("htlcgate did not connect to the mock LND")?;

    let htlcs = demo_htlcs(opts.count, 21);
    let total = htlcs.len();
    let printer = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(ev) = obs_rx.recv().await {
            println!("{}", line(events.len() + 1, &ev));
            events.push(ev);
            if events.len() == total {
                break;
            }
        }
        events
    });
    for req in htlcs {
        mock.send_htlc(req);
        tokio::time::sleep(opts.pace).await;
    }
    mock.wait_resolved(total, Duration::from_secs(30)).await?;
    let events = printer.await?;
    let _ = stop_tx.send(true);
    let _ = stream.await;

    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    let queued = events
        .iter()
        .filter(|e| e.input.as_ref().is_some_and(|i| i.record.attempt > 1))
        .count();
    let mut micros: Vec<u128> = Vec::new();
    for ev in &events {
        let who = match &ev.decision.by {
            DecidedBy::Plugin(p) => format!("{} by {p}", ev.decision.verdict.kind()),
            other => format!("{} by {other}", ev.decision.verdict.kind()),
        };
        *by.entry(who).or_default() += 1;
        micros.push(ev.decision.elapsed.as_micros());
    }
    micros.sort_unstable();
    let pct = |p: f64| quantile(&micros, p);
    let resolutions = mock.resolutions();
    let mut per_key: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for r in &resolutions {
        *per_key.entry(r.key).or_default() += 1;
    }
    println!("\nsummary");
    println!(
        "  {} HTLCs, {} answers accepted by LND, {} keys answered twice, {} stream violations",
        total,
        resolutions.len(),
        per_key.values().filter(|&&n| n > 1).count(),
        mock.violations().len()
    );
    for (k, n) in &by {
        println!("  {n:>4}  {k}");
    }
    println!(
        "  circuitbreaker: {queued} HTLCs queued (held at LND, asked again) before their verdict"
    );
    for p in plugins.iter().filter(|p| p.name == "spin-forever") {
        println!("  {}", fault_summary(&events, &p.name, p.max_faults));
    }
    println!(
        "  decision time: p50 {} µs, p99 {} µs, max {} µs (chain of {})",
        pct(0.5),
        pct(0.99),
        micros.last().copied().unwrap_or(0),
        plugins.len()
    );
    if resolutions.len() != total || !mock.violations().is_empty() {
        bail!("the mock LND did not see exactly one valid answer per HTLC");
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("htlcgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Decision, Trace};
    use crate::wasm::fault::PluginFault;
    use crate::wasm::plugin::{Cost, Step};
    use std::sync::Arc;

    fn event(steps: Vec<(&str, Step)>) -> DecisionEvent {
        DecisionEvent {
            key: crate::circuit::CircuitKey {
                chan_id: 1,
                htlc_id: 1,
            },
            input: None,
            decision: Decision {
                verdict: Verdict::Resume,
                hold: None,
                by: DecidedBy::Default,
                trace: steps
                    .into_iter()
                    .map(|(p, step)| Trace {
                        plugin: Arc::from(p),
                        step,
                        cost: Cost::default(),
                    })
                    .collect(),
                elapsed: Duration::ZERO,
            },
        }
    }

    #[test]
    fn the_fault_summary_counts_one_plugins_faults_by_reason_and_tells_quarantine() {
        let fuel = || Step::Fault(PluginFault::FuelExhausted { fuel: 1 });
        let trap = || {
            Step::Fault(PluginFault::Trap {
                message: "x".into(),
            })
        };
        let two = vec![
            event(vec![("other", trap()), ("spin", fuel())]),
            event(vec![("spin", fuel())]),
        ];
        assert_eq!(
            fault_summary(&two, "spin", 3),
            "spin: 2 faults (fuel), not quarantined (it would be after 3 in a row); forwarding never stopped"
        );
        let mut three = two.clone();
        three.push(event(vec![("spin", trap())]));
        assert_eq!(
            fault_summary(&three, "spin", 3),
            "spin: 3 faults (fuel 2, trap 1), then quarantined; forwarding never stopped"
        );
        let mut broken_run = two;
        broken_run.push(event(vec![("spin", Step::Next)]));
        broken_run.push(event(vec![("spin", fuel())]));
        assert!(fault_summary(&broken_run, "spin", 3).contains("not quarantined"));
        assert!(
            fault_summary(&[event(vec![("spin", Step::Quarantined)])], "spin", 3)
                .contains("0 faults, then quarantined")
        );
    }

    #[test]
    fn quantiles_of_no_values_are_zero() {
        assert_eq!(quantile(&[], 0.99), 0);
        assert_eq!(quantile(&[5, 7], 0.5), 5);
        assert_eq!(quantile(&[5, 7], 1.0), 7);
    }
}
