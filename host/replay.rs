//! `htlcgate replay --config A.toml [--against B.toml] [--json] FILE...`: runs a
//! config's chain offline over recorded HTLCs (audit log lines, or the output of
//! `htlcgate corpus`) and prints, per HTLC, the verdict, the deciding plugin, the
//! fuel and the time, then a summary (verdict counts, fuel p50/p99). With
//! `--against` both chains decide every HTLC and the HTLCs whose verdicts differ are
//! shown: an operator tries a new plugin version on yesterday's traffic before
//! swapping it in.
//!
//! A replay never touches the production journal or plugin state: each chain runs
//! behind a gate with an in-memory journal ([`Journal::in_memory`]) and a sandbox of
//! its own (plugin key-value state in memory), deciding as the daemon would (same
//! budget, `on_fault`, quarantine; a key seen twice gets its first verdict, as
//! LND's replays do). `[lnd]`, `[journal]`, `[metrics]` and `[audit]` are ignored.
//! HTLCs are decided one at a time in file order, so stateful plugins see the
//! traffic in the order it came. The plugins' clock reads each line's recorded
//! time, or a synthetic one ([`ReplayClock`]), never the wall clock. A plugin's
//! hold passes in simulated time ([`HoldTime::Simulated`]): the chain is asked
//! again at once, the clock moved on by the hold, up to `max_hold_ms`, then the
//! holder's `on_hold_expiry` applies; a held HTLC's later asks come before the
//! next line's, not between the lines that arrived during the hold. A plugin that
//! reads the onion blob gets zeros of the recorded size (the log does not keep
//! onions). Replay has no LND: no node context and no outcomes; the plugins that
//! need them are named at the start, on stderr and in the summary
//! ([`cannot_reproduce`]). The plugins' monotonic clock and randomness come from
//! the recorded HTLCs too ([`crate::wasm::determinism`]): a replay decides the
//! same way on every run, and the plugins that read randomness while deciding
//! are named in the summary.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::audit::{decided_by, AuditStep};
use crate::chain::Chain;
use crate::config::Config;
use crate::gate::{DecisionEvent, Gate, GateOptions, HoldTime, StreamGen};
use crate::journal::Journal;
use crate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse;
use crate::record::HtlcRecord;
use crate::verdict::Verdict;
use crate::wasm::determinism::Determinism;
use crate::wasm::engine::Sandbox;
use crate::wasm::plugin::Plugin;

/// Arguments of `htlcgate replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The configuration whose chain decides ([lnd], [journal], [metrics] and
    /// [audit] are ignored).
    #[arg(long, default_value = "htlcgate.toml")]
    pub config: PathBuf,
    /// A second configuration: both chains decide every HTLC and the HTLCs whose
    /// verdicts differ are shown.
    #[arg(long, value_name = "OTHER.toml")]
    pub against: Option<PathBuf>,
    /// Print one JSON object per line (the summary last) instead of text.
    #[arg(long)]
    pub json: bool,
    /// JSON-lines files of HTLCs: audit log lines or `htlcgate corpus` output
    /// (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// One input line: the HTLC, and when it was answered and the verdict it got if
/// the line is from the audit log.
#[derive(Debug, Deserialize)]
struct InputLine {
    htlc: HtlcRecord,
    /// When the answer was queued (RFC 3339), on audit log lines.
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    decided_by: Option<String>,
}

/// What one chain decided for one HTLC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `resume`, `fail`, `settle` or `resume-modified`.
    pub verdict: String,
    /// The verdict in full (`fail(TemporaryChannelFailure)`).
    pub detail: String,
    /// The deciding plugin, or `default`, `budget`, `replay`.
    pub decided_by: String,
    /// `plugin`, `on_fault`, `default`, `budget` or `replay`.
    pub source: String,
    /// Fuel the chain used.
    pub fuel: u64,
    /// Chain time in µs (of the last ask, for a held HTLC).
    pub us: u64,
    /// How many times the chain was asked (1, or 1 + the holds).
    #[serde(default)]
    pub attempt: u32,
    /// Each plugin's step (in the last ask, for a held HTLC).
    pub plugins: Vec<AuditStep>,
    /// The verdict itself, to compare two chains exactly.
    #[serde(skip)]
    verdict_value: Option<Verdict>,
}

impl Outcome {
    fn from_event(ev: &DecisionEvent) -> Outcome {
        let d = &ev.decision;
        let (by, source) = decided_by(&d.by);
        let plugins: Vec<AuditStep> = d
            .trace
            .iter()
            .map(|t| {
                let (step, fault) = crate::audit::step_words(&t.step);
                AuditStep {
                    plugin: t.plugin.to_string(),
                    step,
                    fault,
                    fuel: t.cost.fuel,
                    us: t.cost.elapsed.as_micros() as u64,
                }
            })
            .collect();
        Outcome {
            verdict: d.verdict.kind().into(),
            detail: d.verdict.to_string(),
            decided_by: by,
            source: source.into(),
            fuel: plugins.iter().map(|p| p.fuel).sum(),
            us: d.elapsed.as_micros() as u64,
            attempt: ev.input.as_ref().map_or(0, |i| i.record.attempt),
            plugins,
            verdict_value: Some(d.verdict.clone()),
        }
    }

    /// Who decided, for people: the plugin, with `(on_fault)` or
    /// `(on_hold_expiry)` when the verdict is its configured one.
    pub fn by(&self) -> String {
        match self.source.as_str() {
            "on_fault" | "on_hold_expiry" => format!("{} ({})", self.decided_by, self.source),
            _ => self.decided_by.clone(),
        }
    }

    /// Whether two outcomes are different verdicts (who decided does not matter).
    pub fn differs(&self, other: &Outcome) -> bool {
        match (&self.verdict_value, &other.verdict_value) {
            (Some(a), Some(b)) => a != b,
            _ => self.detail != other.detail,
        }
    }
}

/// One configuration's chain behind a private gate and in-memory journal.
pub struct Replayer {
    /// The configuration file.
    pub config: PathBuf,
    /// The plugins, in order.
    pub plugins: Vec<String>,
    /// What replay cannot reproduce for some plugins (see [`cannot_reproduce`]),
    /// one message per plugin.
    pub cannot_reproduce: Vec<String>,
    /// Each plugin's replay clock and randomness, which count the decisions
    /// that read randomness.
    determinism: Vec<(String, Arc<Determinism>)>,
    gate: Arc<Gate>,
    gen: StreamGen,
    events: mpsc::UnboundedReceiver<DecisionEvent>,
    answers: mpsc::UnboundedReceiver<ForwardHtlcInterceptResponse>,
    limit: Duration,
}

impl Replayer {
    /// Loads `config`'s chain (compile, instantiate, `init`).
    pub fn load(config: &Path) -> anyhow::Result<Replayer> {
        let cfg = Config::load(config)?;
        let sandbox = Sandbox::new(&cfg.sandbox)
            .context("starting the wasm engine")?
            .for_replay();
        let loaded = cfg
            .plugins
            .iter()
            .map(|p| Plugin::load(&sandbox, p.clone()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("loading the chain of {}", config.display()))?;
        let cannot_reproduce = loaded.iter().filter_map(cannot_reproduce).collect();
        let determinism = loaded
            .iter()
            .filter_map(|p| Some((p.name.to_string(), p.determinism()?)))
            .collect();
        let chain = Chain::from_plugins(loaded, cfg.chain.default_verdict.verdict());
        let plugins = chain.names().iter().map(|n| n.to_string()).collect();
        let (tx, events) = mpsc::unbounded_channel();
        // A longer wait than a decision takes: each round within the budget, and
        // the rounds of a held HTLC (simulated time, so each takes less real time
        // than the hold it follows unless a plugin is slower than its own holds)
        // within max_hold_ms.
        let limit = cfg.chain.budget + cfg.chain.max_hold + Duration::from_secs(30);
        // A plugin's hold passes in simulated time: the chain is asked again at
        // once with the clock moved on by the hold, up to max_hold_ms, then the
        // holder's on_hold_expiry verdict (shown as "<plugin> (on_hold_expiry)").
        let gate = Gate::with_hold_time(
            chain,
            cfg.chain.clone(),
            Journal::in_memory(),
            GateOptions {
                observer: Some(tx),
                ..GateOptions::default()
            },
            HoldTime::Simulated,
        );
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let gen = gate.open_stream(answers_tx);
        Ok(Replayer {
            config: config.to_owned(),
            plugins,
            cannot_reproduce,
            determinism,
            gate,
            gen,
            events,
            answers,
            limit,
        })
    }

    /// Decides one HTLC as the daemon would, with the plugins' clock reading
    /// `clock_ms` (ms since the Unix epoch; see [`ReplayClock`]).
    pub async fn decide(&mut self, htlc: &HtlcRecord, clock_ms: u64) -> anyhow::Result<Outcome> {
        self.gate
            .on_request_at(self.gen, htlc.to_request(), Some(clock_ms));
        let ev = tokio::time::timeout(self.limit, self.events.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| {
                format!(
                    "{}: no decision for {} within {:?}",
                    self.config.display(),
                    htlc.key(),
                    self.limit
                )
            })?;
        while self.answers.try_recv().is_ok() {}
        Ok(Outcome::from_event(&ev))
    }

    /// [`Replayer::cannot_reproduce`], plus the plugins that read randomness
    /// while deciding so far: replay's randomness is derived from each HTLC (the
    /// same on every run and for both configs), so it cannot be the one the
    /// daemon's plugin drew.
    pub fn cannot_reproduce_now(&self) -> Vec<String> {
        let mut all = self.cannot_reproduce.clone();
        for (name, d) in &self.determinism {
            let n = d.decisions_reading_randomness();
            if n > 0 {
                all.push(format!(
                    "{name}: it read randomness in {} decisions; replay's randomness is \
                     derived from each HTLC (the same on every run and for both configs), \
                     not the daemon's, so those verdicts may differ from the recorded ones",
                    thousands(n)
                ));
            }
        }
        all
    }
}

/// What replay cannot reproduce of a plugin's decisions, if anything: replay has
/// no LND, so a plugin with the `node` grant finds no channel (and no plugin a
/// block height), and one that listens to outcomes is told none (the audit log
/// records no settles or failures). Such a plugin may decide differently from
/// the daemon; the operator is told which and why.
pub fn cannot_reproduce(p: &Plugin) -> Option<String> {
    let node = p.cfg.grants.iter().any(|g| g == "node");
    let outcomes = p.listens_to_outcomes();
    let mut what = Vec::new();
    if node {
        what.push(
            "it has the `node` grant, and replay has no node context (`channel` and \
             `block-height` answer none: no peers, balances, channel states or height)",
        );
    }
    if outcomes {
        what.push(
            "it listens to outcomes, and replay tells it none (the audit log records no \
             settles or failures, so it never learns that a forward ended)",
        );
    }
    if what.is_empty() {
        return None;
    }
    Some(format!(
        "{}: {}; its verdicts here may differ from the daemon's",
        p.name,
        what.join("; ")
    ))
}

/// Where the clock of a line without a recorded time starts (`htlcgate corpus`
/// output): 2026-01-01T00:00:00Z.
pub const SYNTHETIC_START_MS: u64 = 1_767_225_600_000;

/// The time the plugins' clock reads for each replayed HTLC: the time its line
/// recorded (an audit log line's `time`); for a line without one (`htlcgate
/// corpus` output), 1 ms after the previous line's, starting at
/// [`SYNTHETIC_START_MS`]. Never the wall clock: a file replays to the same
/// verdicts on any day.
#[derive(Debug, Default)]
pub struct ReplayClock {
    /// The previous line's time.
    last_ms: Option<u64>,
}

impl ReplayClock {
    /// The clock for the next line, given the time it recorded.
    pub fn next(&mut self, recorded_ms: Option<u64>) -> u64 {
        let t = recorded_ms.unwrap_or_else(|| {
            self.last_ms
                .map_or(SYNTHETIC_START_MS, |l| l.saturating_add(1))
        });
        self.last_ms = Some(t);
        t
    }
}

/// An audit line's `time` (RFC 3339) in ms since the Unix epoch.
fn parse_time(time: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`time` {time:?} is not an RFC 3339 time ({e})"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`time` {time:?} is before 1970"))
}

/// Counts and distributions over one chain's outcomes.
#[derive(Debug, Default)]
pub struct Stats {
    verdicts: BTreeMap<String, u64>,
    decided_by: BTreeMap<String, BTreeMap<String, u64>>,
    faults: BTreeMap<String, BTreeMap<String, u64>>,
    fuel: Vec<u64>,
    us: Vec<u64>,
    recorded_compared: u64,
    recorded_differ: u64,
}

/// The nearest-rank percentile `p` (0..=100) of sorted values.
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// A summary of one chain's replay, as `--json` prints it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// The configuration file.
    pub config: String,
    /// The chain.
    pub plugins: Vec<String>,
    /// HTLCs decided.
    pub htlcs: u64,
    /// Verdicts by kind.
    pub verdicts: BTreeMap<String, u64>,
    /// Verdicts by deciding plugin (or default/budget/replay), then kind.
    pub decided_by: BTreeMap<String, BTreeMap<String, u64>>,
    /// Faults by plugin, then reason.
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Median fuel per HTLC.
    pub fuel_p50: u64,
    /// 99th percentile of fuel per HTLC.
    pub fuel_p99: u64,
    /// Most fuel one HTLC used.
    pub fuel_max: u64,
    /// Median chain time per HTLC, µs.
    pub us_p50: u64,
    /// 99th percentile of chain time per HTLC, µs.
    pub us_p99: u64,
    /// Input lines that carried a recorded verdict (audit log lines).
    pub recorded_compared: u64,
    /// Of those, how many now get a different verdict kind.
    pub recorded_differ: u64,
    /// Plugins whose decisions replay cannot reproduce, and why (no node
    /// context, no outcomes); empty when replay decides as the daemon would.
    #[serde(default)]
    pub cannot_reproduce: Vec<String>,
}

impl Stats {
    fn add(&mut self, o: &Outcome, recorded: Option<&str>) {
        *self.verdicts.entry(o.verdict.clone()).or_default() += 1;
        *self
            .decided_by
            .entry(o.decided_by.clone())
            .or_default()
            .entry(o.verdict.clone())
            .or_default() += 1;
        for p in &o.plugins {
            if let Some(f) = &p.fault {
                *self
                    .faults
                    .entry(p.plugin.clone())
                    .or_default()
                    .entry(f.clone())
                    .or_default() += 1;
            }
        }
        self.fuel.push(o.fuel);
        self.us.push(o.us);
        if let Some(r) = recorded {
            self.recorded_compared += 1;
            if r != o.verdict {
                self.recorded_differ += 1;
            }
        }
    }

    fn summary(&mut self, r: &Replayer) -> Summary {
        self.fuel.sort_unstable();
        self.us.sort_unstable();
        Summary {
            config: r.config.display().to_string(),
            plugins: r.plugins.clone(),
            htlcs: self.fuel.len() as u64,
            verdicts: self.verdicts.clone(),
            decided_by: self.decided_by.clone(),
            faults: self.faults.clone(),
            fuel_p50: percentile(&self.fuel, 50),
            fuel_p99: percentile(&self.fuel, 99),
            fuel_max: self.fuel.last().copied().unwrap_or(0),
            us_p50: percentile(&self.us, 50),
            us_p99: percentile(&self.us, 99),
            recorded_compared: self.recorded_compared,
            recorded_differ: self.recorded_differ,
            cannot_reproduce: r.cannot_reproduce_now(),
        }
    }
}

/// Thousands separators: 1234567 -> 1,234,567.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary_text(s: &Summary) -> Vec<String> {
    let mut out = vec![
        format!(
            "  {} HTLCs; verdicts: {}",
            thousands(s.htlcs),
            counts(&s.verdicts)
        ),
        format!(
            "  decided by: {}",
            s.decided_by
                .iter()
                .map(|(by, m)| format!("{by} ({})", counts(m)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "  fuel per HTLC: p50 {}, p99 {}, max {}",
            thousands(s.fuel_p50),
            thousands(s.fuel_p99),
            thousands(s.fuel_max)
        ),
        format!(
            "  time per HTLC: p50 {} µs, p99 {} µs",
            thousands(s.us_p50),
            thousands(s.us_p99)
        ),
    ];
    if !s.faults.is_empty() {
        out.push(format!(
            "  faults: {}",
            s.faults
                .iter()
                .map(|(p, m)| format!("{p} ({})", counts(m)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for w in &s.cannot_reproduce {
        out.push(format!("  not reproduced: {w}"));
    }
    if s.recorded_compared > 0 {
        out.push(format!(
            "  against the recorded verdicts: {} of {} differ",
            thousands(s.recorded_differ),
            thousands(s.recorded_compared)
        ));
    }
    out
}

/// Where the lines go: stdout, around the progress bar.
struct Out {
    out: std::io::BufWriter<std::io::Stdout>,
    bar: indicatif::ProgressBar,
    /// Whether lines must be written with the bar suspended (both on one terminal).
    suspend: bool,
    /// The reader went away (`| head`): stop quietly.
    closed: bool,
}

impl Out {
    fn new(total_bytes: Option<u64>) -> Out {
        // A bar only for a large input, and only on a terminal.
        let bar = match total_bytes {
            Some(total) if total >= 1 << 20 && std::io::stderr().is_terminal() => {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(total),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "replay [{bar:40}] {bytes}/{total_bytes} {msg} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            _ => indicatif::ProgressBar::hidden(),
        };
        Out {
            out: std::io::BufWriter::new(std::io::stdout()),
            suspend: !bar.is_hidden() && std::io::stdout().is_terminal(),
            bar,
            closed: false,
        }
    }

    fn line(&mut self, s: &str) -> anyhow::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = if self.suspend {
            let out = &mut self.out;
            self.bar
                .suspend(|| writeln!(out, "{s}").and_then(|_| out.flush()))
        } else {
            writeln!(self.out, "{s}")
        };
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.context("writing to stdout"),
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.bar.finish_and_clear();
        match self.out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing to stdout")
            }
            _ => Ok(()),
        }
    }
}

/// One HTLC read from a file, with where it came from.
struct Read {
    file: String,
    line: u64,
    input: InputLine,
    /// The line's `time` in ms since the Unix epoch, when it has one.
    time_ms: Option<u64>,
}

/// Reads the JSON lines of every file in turn, calling `each` for every HTLC
/// until it returns `false` (the output's reader is gone). A malformed line
/// stops the replay with `file:line` and the way out; a line cut short (a log
/// cut off mid-write) is skipped with a warning.
async fn read_all(
    files: &[PathBuf],
    bar: &indicatif::ProgressBar,
    mut each: impl AsyncFnMut(Read) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut consumed = 0u64;
    for path in files {
        let name = path.display().to_string();
        let mut reader: Box<dyn BufRead> = if name == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(path).with_context(|| {
                format!("cannot read {name}; give an audit log or the output of `htlcgate corpus`")
            })?;
            Box::new(std::io::BufReader::with_capacity(256 * 1024, f))
        };
        let mut buf = String::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            let read = reader
                .read_line(&mut buf)
                .with_context(|| format!("{name}:{}: cannot read", n + 1))?;
            if read == 0 {
                break;
            }
            n += 1;
            consumed += read as u64;
            bar.set_position(consumed);
            let text = buf.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<InputLine>(text) {
                Ok(input) => {
                    let time_ms = match input.time.as_deref().map(parse_time).transpose() {
                        Ok(t) => t,
                        Err(e) => bail!(
                            "{name}:{n}: {e}; write it as the audit log does (2026-03-01T10:00:00.000000Z), or delete the field to replay the line on a synthetic clock"
                        ),
                    };
                    let go_on = each(Read {
                        file: name.clone(),
                        line: n,
                        input,
                        time_ms,
                    })
                    .await?;
                    if !go_on {
                        return Ok(());
                    }
                }
                Err(e) if !buf.ends_with('\n') && e.is_eof() => {
                    eprintln!("warning: {name}:{n}: the last line is cut off (written while htlcgate stopped?); skipped");
                }
                // A line cut short further up: the audit log ends a cut line when
                // it reopens the file after a crash or a full disk.
                Err(e) if e.is_eof() => {
                    eprintln!("warning: {name}:{n}: the line is cut short (a crash or a full disk while it was written?); skipped");
                }
                Err(e) => bail!(
                    "{name}:{n}: {e}; each line must be a JSON object with an `htlc` object, as written by the audit log or `htlcgate corpus` (fix or delete the line)"
                ),
            }
        }
    }
    Ok(())
}

fn plugin_list(r: &Replayer) -> String {
    if r.plugins.is_empty() {
        "(empty chain)".into()
    } else {
        r.plugins.join(" → ")
    }
}

/// [`Replayer::load`] on a blocking thread: a plugin's `init` may wait in WASI (a
/// sleep, Go's runtime, a `println!`), and wasmtime-wasi's waits panic on a
/// thread that drives the async runtime (as the daemon's loads, these run off it).
async fn load_off_runtime(config: &Path) -> anyhow::Result<Replayer> {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || Replayer::load(&config))
        .await
        .context("loading a chain to replay")?
}

/// Runs `htlcgate replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    // Anything readable goes: regular files, pipes (`/dev/stdin`, `<(zcat ...)`).
    for f in args.files.iter().filter(|f| f.as_os_str() != "-") {
        match std::fs::metadata(f) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "cannot read {}: no such file; give an audit log or the output of `htlcgate corpus --count N`",
                f.display()
            ),
            Err(e) => bail!(
                "cannot read {}: {e}; give an audit log or the output of `htlcgate corpus --count N` that htlcgate may read",
                f.display()
            ),
            Ok(m) if m.is_dir() => bail!(
                "cannot read {}: it is a directory; give the files in it (for example {}/htlcgate-audit.jsonl*)",
                f.display(),
                f.display()
            ),
            Ok(_) => {}
        }
    }
    let mut a = load_off_runtime(&args.config).await?;
    let mut b = match &args.against {
        Some(p) => Some(load_off_runtime(p).await?),
        None => None,
    };
    for r in std::iter::once(&a).chain(&b) {
        for w in &r.cannot_reproduce {
            eprintln!("warning: {}: {w}", r.config.display());
        }
    }
    let total: Option<u64> = args
        .files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
        })
        .sum();
    let mut out = Out::new(total);
    let bar = out.bar.clone();
    let mut stats_a = Stats::default();
    let mut stats_b = Stats::default();
    let mut differ = 0u64;
    let mut seen = 0u64;
    let mut clock = ReplayClock::default();
    if !args.json {
        match &b {
            None => out.line(&format!(
                "replaying with {} ({})",
                args.config.display(),
                plugin_list(&a)
            ))?,
            Some(b) => {
                out.line(&format!(
                    "A = {} ({})",
                    args.config.display(),
                    plugin_list(&a)
                ))?;
                out.line(&format!("B = {} ({})", b.config.display(), plugin_list(b)))?;
                out.line("HTLCs whose verdicts differ:")?;
            }
        }
    }
    read_all(&args.files, &bar, async |r: Read| {
        let h = &r.input.htlc;
        seen += 1;
        if seen.is_multiple_of(1024) {
            bar.set_message(format!("{} HTLCs", thousands(seen)));
        }
        let key = h.key().to_string();
        let route = format!("{} → {}", h.scid_in(), h.scid_out());
        let now_ms = clock.next(r.time_ms);
        match b.as_mut() {
            None => {
                let o = a.decide(h, now_ms).await?;
                stats_a.add(&o, r.input.verdict.as_deref());
                if args.json {
                    let mut v = serde_json::json!({
                        "file": r.file,
                        "line": r.line,
                        "key": key,
                        "scid_in": h.scid_in().to_string(),
                        "scid_out": h.scid_out().to_string(),
                    });
                    merge(&mut v, serde_json::to_value(&o)?);
                    if let Some(rec) = &r.input.verdict {
                        v["recorded"] = rec.clone().into();
                        v["recorded_by"] = r.input.decided_by.clone().into();
                    }
                    out.line(&v.to_string())?;
                } else {
                    let recorded = match &r.input.verdict {
                        Some(rec) if *rec != o.verdict => format!(
                            "  (recorded: {rec} by {})",
                            r.input.decided_by.as_deref().unwrap_or("?")
                        ),
                        _ => String::new(),
                    };
                    out.line(&format!(
                        "{:>6}  {:<24} {:<33} {:>15} msat  fee {:>8}  {:<15} by {:<16} fuel {:>10}  {:>6} µs{recorded}",
                        r.line,
                        key,
                        route,
                        thousands(h.outgoing_amount_msat),
                        h.fee_msat(),
                        o.verdict,
                        o.by(),
                        thousands(o.fuel),
                        o.us,
                    ))?;
                }
            }
            Some(b) => {
                let (oa, ob) = tokio::join!(a.decide(h, now_ms), b.decide(h, now_ms));
                let (oa, ob) = (oa?, ob?);
                stats_a.add(&oa, r.input.verdict.as_deref());
                stats_b.add(&ob, r.input.verdict.as_deref());
                if oa.differs(&ob) {
                    differ += 1;
                    if args.json {
                        let v = serde_json::json!({
                            "file": r.file,
                            "line": r.line,
                            "key": key,
                            "scid_in": h.scid_in().to_string(),
                            "scid_out": h.scid_out().to_string(),
                            "a": oa,
                            "b": ob,
                        });
                        out.line(&v.to_string())?;
                    } else {
                        out.line(&format!(
                            "{:>6}  {:<24} {:<33} {:>15} msat  fee {:>8}  A: {} by {}  B: {} by {}",
                            r.line,
                            key,
                            route,
                            thousands(h.outgoing_amount_msat),
                            h.fee_msat(),
                            oa.detail,
                            oa.by(),
                            ob.detail,
                            ob.by(),
                        ))?;
                    }
                }
            }
        }
        // The reader went away (`| head`): stop reading, nothing more is shown.
        Ok(!out.closed)
    })
    .await?;
    if out.closed {
        return out.finish();
    }
    let sa = stats_a.summary(&a);
    match &b {
        None => {
            if args.json {
                out.line(&serde_json::json!({ "summary": sa }).to_string())?;
            } else {
                out.line("summary:")?;
                for l in summary_text(&sa) {
                    out.line(&l)?;
                }
            }
        }
        Some(b) => {
            let sb = stats_b.summary(b);
            if args.json {
                out.line(
                    &serde_json::json!({
                        "summary": { "htlcs": sa.htlcs, "differ": differ, "a": sa, "b": sb }
                    })
                    .to_string(),
                )?;
            } else {
                out.line(&format!(
                    "{} of {} verdicts differ",
                    thousands(differ),
                    thousands(sa.htlcs)
                ))?;
                out.line(&format!("A = {}:", sa.config))?;
                for l in summary_text(&sa) {
                    out.line(&l)?;
                }
                out.line(&format!("B = {}:", sb.config))?;
                for l in summary_text(&sb) {
                    out.line(&l)?;
                }
            }
        }
    }
    out.finish()
}

/// Adds the fields of object `extra` to object `v`.
fn merge(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::DecidedBy;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }

    #[test]
    fn the_clock_reads_recorded_times_else_advances_1_ms_per_line_from_a_fixed_start() {
        let mut c = ReplayClock::default();
        assert_eq!(c.next(None), SYNTHETIC_START_MS);
        assert_eq!(c.next(None), SYNTHETIC_START_MS + 1);
        assert_eq!(c.next(Some(5_000)), 5_000);
        assert_eq!(c.next(None), 5_001);
        assert_eq!(
            parse_time("2026-01-01T00:00:00.000000Z"),
            Ok(SYNTHETIC_START_MS)
        );
        assert_eq!(
            parse_time("2026-03-01T10:10:00.250000Z").unwrap() - SYNTHETIC_START_MS,
            ((31 + 28) * 86_400 + 10 * 3600 + 600) * 1000 + 250
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_time("1969-12-31T23:59:59Z")
            .unwrap_err()
            .contains("before 1970"));
    }

    #[test]
    fn outcomes_differ_by_verdict_not_by_who_decided() {
        let o = |v: Verdict, by: DecidedBy| {
            Outcome::from_event(&DecisionEvent {
                key: crate::circuit::CircuitKey {
                    chan_id: 1,
                    htlc_id: 2,
                },
                input: None,
                decision: crate::chain::Decision {
                    hold: None,
                    verdict: v,
                    by,
                    trace: vec![],
                    elapsed: Duration::ZERO,
                },
            })
        };
        let fail = Verdict::Fail(crate::verdict::FailCode::TemporaryChannelFailure);
        let onion = Verdict::Fail(crate::verdict::FailCode::InvalidOnionHmac);
        let a = o(fail.clone(), DecidedBy::Plugin(Arc::from("a")));
        assert!(!a.differs(&o(fail.clone(), DecidedBy::Plugin(Arc::from("b")))));
        assert!(a.differs(&o(onion, DecidedBy::Plugin(Arc::from("a")))));
        assert!(a.differs(&o(Verdict::Resume, DecidedBy::Default)));
    }

    #[test]
    fn summary_lines_name_counts_and_percentiles() {
        let mut s = Stats::default();
        let out = |fuel: u64, verdict: &str, by: &str| Outcome {
            verdict: verdict.into(),
            detail: verdict.into(),
            decided_by: by.into(),
            source: "plugin".into(),
            fuel,
            us: 3,
            plugins: vec![AuditStep {
                plugin: "trap".into(),
                step: "fault".into(),
                fault: Some("trap".into()),
                fuel: 1,
                us: 1,
            }],
            attempt: 1,
            verdict_value: None,
        };
        for i in 1..=100 {
            s.add(&out(i * 10, "resume", "default"), Some("resume"));
        }
        s.add(&out(5, "fail", "fee-floor"), Some("resume"));
        s.fuel.sort_unstable();
        let summary = Summary {
            config: "a.toml".into(),
            plugins: vec![],
            htlcs: 101,
            verdicts: s.verdicts.clone(),
            decided_by: s.decided_by.clone(),
            faults: s.faults.clone(),
            fuel_p50: percentile(&s.fuel, 50),
            fuel_p99: percentile(&s.fuel, 99),
            fuel_max: 1000,
            us_p50: 3,
            us_p99: 3,
            recorded_compared: s.recorded_compared,
            recorded_differ: s.recorded_differ,
            cannot_reproduce: vec![],
        };
        let text = summary_text(&summary).join("\n");
        assert!(text.contains("verdicts: fail 1, resume 100"), "{text}");
        assert!(
            text.contains("decided by: default (resume 100), fee-floor (fail 1)"),
            "{text}"
        );
        assert!(
            text.contains("fuel per HTLC: p50 500, p99 990, max 1,000"),
            "{text}"
        );
        assert!(text.contains("faults: trap (trap 101)"), "{text}");
        assert!(text.contains("1 of 101 differ"), "{text}");
    }
}
