//! Prometheus metrics (served on `/metrics` by [`crate::http`] when
//! `--metrics.listen` or `[metrics] listen` is set; off by default).
//!
//! Nothing here is on the decision path: the gate records a decision after its
//! answer is queued for LND. Every value is a plain atomic (counters, gauges, and
//! [`AtomicHistogram`], whose buckets are atomics too), and the per-plugin handles
//! are registered once when a chain is loaded or swapped in ([`Metrics::chain`]), so
//! recording takes no lock and allocates no label string.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `htlcgate_htlcs_seen_total` | counter | |
//! | `htlcgate_verdicts_total` | counter | `plugin`, `kind`, `source` |
//! | `htlcgate_plugin_faults_total` | counter | `plugin`, `reason` |
//! | `htlcgate_plugin_fuel` | histogram (fuel units per call) | `plugin` |
//! | `htlcgate_plugin_call_seconds` | histogram | `plugin` |
//! | `htlcgate_plugin_quarantined` | gauge (0/1) | `plugin` |
//! | `htlcgate_plugin_quarantines_total` | counter | `plugin` |
//! | `htlcgate_plugins_quarantined` | gauge | |
//! | `htlcgate_decision_seconds` | histogram (request in to answer queued) | |
//! | `htlcgate_decision_fuel` | histogram (fuel of the whole chain) | |
//! | `htlcgate_chain_plugins` | gauge | |
//! | `htlcgate_chain_reloads_total` | counter | `result` (`ok`, `refused`) |
//! | `htlcgate_stream_up` | gauge (0/1) | |
//! | `htlcgate_stream_connects_total` | counter | |
//! | `htlcgate_stream_disconnects_total` | counter | |
//! | `htlcgate_audit_lines_total` | counter | |
//! | `htlcgate_audit_dropped_total` | counter | |
//! | `htlcgate_audit_rotations_total` | counter | |
//! | `htlcgate_holds_total` | counter (a plugin answered `hold`) | `plugin` |
//! | `htlcgate_htlcs_held` | gauge (HTLCs held by plugins now) | |
//! | `htlcgate_outcomes_total` | counter (outcomes of decided HTLCs handed to plugins) | `kind` |
//! | `htlcgate_outcomes_dropped_total` | counter (a plugin's outcome queue was full) | |
//!
//! `source` says who chose a verdict: `plugin` (its own verdict), `on_fault` (the
//! plugin's `on_fault` policy after a fault or while quarantined), `default` (every
//! plugin passed), `budget` (the chain ran out of its budget), `on_hold_expiry` (a
//! plugin's hold reached its cap; `plugin` is the holder) or `replay` (a key LND
//! sent again, answered from the journal); `plugin` is empty for the last three.
//! `kind` is `resume`, `fail`, `settle` or `resume-modified`. `reason` is a fault's
//! short reason (`fuel`, `deadline`, `memory`, `stack`, `trap`, `invalid-verdict`,
//! `no-instance`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::chain::{DecidedBy, Decision, Trace};
use crate::verdict::Verdict;
use crate::wasm::plugin::Step;

/// The OpenMetrics text format's content type, as `/metrics` serves it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram whose buckets, count and sum are atomics: observing takes no lock.
///
/// Values are integers in a base unit (nanoseconds, fuel units); the exposition
/// divides them by `scale` (1e9 for seconds).
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds, ascending, in the base unit.
    bounds: Vec<u64>,
    /// Per bucket (not cumulative); the last is +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations in the base unit.
    sum: AtomicU64,
    /// Base units per exposed unit.
    scale: f64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (base units) and scale.
    pub fn new(bounds: Vec<u64>, scale: f64) -> AtomicHistogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts,
                sum: AtomicU64::new(0),
                scale,
            }),
        }
    }

    /// Time buckets: 10 µs doubling up to 2.6 s (the default chain budget is 2 s).
    pub fn seconds() -> AtomicHistogram {
        AtomicHistogram::new((0..19).map(|i| 10_000u64 << i).collect(), 1e9)
    }

    /// Fuel buckets: 1,000 units, times 4 up to 16.8 G (the default per-call fuel
    /// is 10 M).
    pub fn fuel() -> AtomicHistogram {
        AtomicHistogram::new((0..13).map(|i| 1_000u64 << (2 * i)).collect(), 1.0)
    }

    /// Records one value in the base unit.
    pub fn observe(&self, v: u64) {
        let i = self.inner.bounds.partition_point(|b| *b < v);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// Records a duration (base unit: nanoseconds).
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of observations in the base unit.
    pub fn sum(&self) -> u64 {
        self.inner.sum.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(inner.counts.len());
        for (i, c) in inner.counts.iter().enumerate() {
            let bound = inner
                .bounds
                .get(i)
                .map_or(f64::INFINITY, |b| *b as f64 / inner.scale);
            buckets.push((bound, c.load(Ordering::Relaxed)));
        }
        // Count from the buckets, so that the exposition is consistent with them.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.sum.load(Ordering::Relaxed) as f64 / inner.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type HistogramFamily = Family<PluginLabel, AtomicHistogram, fn() -> AtomicHistogram>;

/// `plugin="..."`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

/// Labels of `htlcgate_verdicts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    plugin: String,
    kind: &'static str,
    source: &'static str,
}

/// Labels of `htlcgate_plugin_faults_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    plugin: String,
    reason: String,
}

/// Labels of `htlcgate_chain_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Verdict kinds, in [`kind_index`] order.
const KINDS: [&str; 4] = ["resume", "fail", "settle", "resume-modified"];
/// Fault reasons with pre-registered counters ([`crate::wasm::fault::PluginFault::reason`]).
const REASONS: [&str; 7] = [
    "fuel",
    "deadline",
    "memory",
    "stack",
    "trap",
    "invalid-verdict",
    "no-instance",
];
/// Sources of a verdict that are not a plugin, in [`Builtin`] order.
const BUILTIN_SOURCES: [&str; 3] = ["default", "budget", "replay"];

fn kind_index(v: &Verdict) -> usize {
    match v {
        Verdict::Resume => 0,
        Verdict::Fail(_) => 1,
        Verdict::Settle(_) => 2,
        Verdict::ResumeModified(_) => 3,
    }
}

/// A verdict source that is not a plugin.
#[derive(Clone, Copy, Debug)]
enum Builtin {
    Default = 0,
    Budget = 1,
    Replay = 2,
}

/// Handles for one plugin of a loaded chain, registered when the chain is loaded.
#[derive(Debug)]
pub struct PluginMetrics {
    name: Arc<str>,
    verdicts: [Counter; 4],
    fault_verdicts: [Counter; 4],
    faults: [Counter; 7],
    fuel: AtomicHistogram,
    seconds: AtomicHistogram,
    quarantined: Gauge,
    quarantines: Counter,
    /// Whether this chain's instance of the plugin was seen quarantined (read
    /// without the lock to skip it on every HTLC a quarantined plugin misses).
    is_quarantined: AtomicBool,
    /// Whether a newer chain was swapped in (a late HTLC on the old chain must
    /// not mark the new chain's plugin quarantined); held while the gauges
    /// change, so marking and retiring cannot interleave.
    retired: Mutex<bool>,
}

/// The per-plugin handles of one loaded chain, in chain order.
#[derive(Debug)]
pub struct ChainMetrics {
    plugins: Vec<PluginMetrics>,
}

impl ChainMetrics {
    /// The handles of the plugin that produced trace entry `i` (the trace is in
    /// chain order; the name is checked, and searched for if it does not match).
    fn plugin(&self, i: usize, name: &str) -> Option<&PluginMetrics> {
        match self.plugins.get(i) {
            Some(p) if &*p.name == name => Some(p),
            _ => self.plugins.iter().find(|p| &*p.name == name),
        }
    }
}

/// Every metric htlcgate exposes, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    htlcs_seen: Counter,
    verdicts: Family<VerdictLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    plugin_fuel: HistogramFamily,
    plugin_seconds: HistogramFamily,
    quarantined: Family<PluginLabel, Gauge>,
    quarantines: Family<PluginLabel, Counter>,
    quarantined_now: Gauge,
    builtin: [[Counter; 4]; 3],
    decision_seconds: AtomicHistogram,
    decision_fuel: AtomicHistogram,
    chain_plugins: Gauge,
    reloads_ok: Counter,
    reloads_refused: Counter,
    stream_up: Gauge,
    stream_connects: Counter,
    stream_disconnects: Counter,
    audit_lines: Counter,
    audit_dropped: Counter,
    audit_rotations: Counter,
    holds: Family<PluginLabel, Counter>,
    holds_now: Gauge,
    outcomes: Family<OutcomeLabel, Counter>,
    outcomes_dropped: Counter,
}

/// Labels of `htlcgate_outcomes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// The outcome kind (forwarded, settled, forward_failed, link_failed,
    /// final_settled, final_failed).
    kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric (all at zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("htlcgate");
        let htlcs_seen = Counter::default();
        registry.register(
            "htlcs_seen",
            "HTLCs received from LND's interceptor stream (replays included)",
            htlcs_seen.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "verdicts",
            "Verdicts decided or replayed from the journal, by deciding plugin, verdict kind and source (plugin, on_fault, default, budget, replay)",
            verdicts.clone(),
        );
        let faults = Family::<FaultLabels, Counter>::default();
        registry.register(
            "plugin_faults",
            "Plugin faults (trap, fuel, deadline, memory, stack, invalid verdict), by plugin and reason",
            faults.clone(),
        );
        let plugin_fuel: HistogramFamily = Family::new_with_constructor(AtomicHistogram::fuel);
        registry.register(
            "plugin_fuel",
            "Fuel units one decide call used, by plugin",
            plugin_fuel.clone(),
        );
        let plugin_seconds: HistogramFamily =
            Family::new_with_constructor(AtomicHistogram::seconds);
        registry.register(
            "plugin_call_seconds",
            "Wall-clock time of one decide call, by plugin",
            plugin_seconds.clone(),
        );
        let quarantined = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "plugin_quarantined",
            "1 while the plugin is quarantined in the live chain (its on_fault policy applies)",
            quarantined.clone(),
        );
        let quarantines = Family::<PluginLabel, Counter>::default();
        registry.register(
            "plugin_quarantines",
            "Times a plugin was found quarantined after consecutive faults",
            quarantines.clone(),
        );
        let quarantined_now = Gauge::default();
        registry.register(
            "plugins_quarantined",
            "Plugins of the live chain that are quarantined",
            quarantined_now.clone(),
        );
        let decision_seconds = AtomicHistogram::seconds();
        registry.register(
            "decision_seconds",
            "Time from an HTLC's request to its answer being queued for LND (chain and journal), new decisions only",
            decision_seconds.clone(),
        );
        let decision_fuel = AtomicHistogram::fuel();
        registry.register(
            "decision_fuel",
            "Fuel units the whole chain used for one HTLC",
            decision_fuel.clone(),
        );
        let chain_plugins = Gauge::default();
        registry.register(
            "chain_plugins",
            "Plugins in the live chain",
            chain_plugins.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "chain_reloads",
            "Hot reloads: ok (new chain swapped in) or refused (the running chain kept deciding)",
            reloads.clone(),
        );
        let reloads_ok = reloads
            .get_or_create(&ReloadLabels { result: "ok" })
            .clone();
        let reloads_refused = reloads
            .get_or_create(&ReloadLabels { result: "refused" })
            .clone();
        let stream_up = Gauge::default();
        registry.register(
            "stream_up",
            "1 while LND's interceptor stream is connected",
            stream_up.clone(),
        );
        let stream_connects = Counter::default();
        registry.register(
            "stream_connects",
            "Interceptor streams LND accepted",
            stream_connects.clone(),
        );
        let stream_disconnects = Counter::default();
        registry.register(
            "stream_disconnects",
            "Interceptor streams that ended (LND went away, an error, or shutdown)",
            stream_disconnects.clone(),
        );
        let audit_lines = Counter::default();
        registry.register(
            "audit_lines",
            "Lines written to the audit log",
            audit_lines.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit lines dropped because the writer fell behind (its queue was full) or could not write",
            audit_dropped.clone(),
        );
        let audit_rotations = Counter::default();
        registry.register(
            "audit_rotations",
            "Audit log rotations (size reached max_bytes)",
            audit_rotations.clone(),
        );
        let holds = Family::<PluginLabel, Counter>::default();
        registry.register(
            "holds",
            "Times a plugin answered hold (the HTLC stays held at LND and the chain asks again)",
            holds.clone(),
        );
        let holds_now = Gauge::default();
        registry.register(
            "htlcs_held",
            "HTLCs held by a plugin's hold right now",
            holds_now.clone(),
        );
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "outcomes",
            "Outcomes (LND HTLC events) of HTLCs htlcgate decided or held, handed to the plugins that export outcome, by kind",
            outcomes.clone(),
        );
        let outcomes_dropped = Counter::default();
        registry.register(
            "outcomes_dropped",
            "Outcomes dropped because a plugin's outcome queue was full",
            outcomes_dropped.clone(),
        );
        let builtin = BUILTIN_SOURCES.map(|source| {
            KINDS.map(|kind| {
                verdicts
                    .get_or_create(&VerdictLabels {
                        plugin: String::new(),
                        kind,
                        source,
                    })
                    .clone()
            })
        });
        Metrics {
            registry,
            htlcs_seen,
            verdicts,
            faults,
            plugin_fuel,
            plugin_seconds,
            quarantined,
            quarantines,
            quarantined_now,
            builtin,
            decision_seconds,
            decision_fuel,
            chain_plugins,
            reloads_ok,
            reloads_refused,
            stream_up,
            stream_connects,
            stream_disconnects,
            audit_lines,
            audit_dropped,
            audit_rotations,
            holds,
            holds_now,
            outcomes,
            outcomes_dropped,
        }
    }

    /// The exposition, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Registers the handles of a chain just loaded or swapped in (plugin names in
    /// chain order), and retires `previous` (the chain it replaces, if any): its
    /// quarantined plugins come back with fresh instances.
    pub fn chain(&self, names: &[Arc<str>], previous: Option<&ChainMetrics>) -> ChainMetrics {
        if let Some(prev) = previous {
            for p in &prev.plugins {
                let mut retired = p.retired.lock().unwrap_or_else(|e| e.into_inner());
                *retired = true;
                if p.is_quarantined.swap(false, Ordering::Relaxed) {
                    p.quarantined.set(0);
                    self.quarantined_now.dec();
                }
            }
        }
        self.chain_plugins.set(names.len() as i64);
        let plugins = names
            .iter()
            .map(|name| {
                let label = PluginLabel {
                    plugin: name.to_string(),
                };
                let verdict = |source: &'static str, kind: &'static str| {
                    self.verdicts
                        .get_or_create(&VerdictLabels {
                            plugin: name.to_string(),
                            kind,
                            source,
                        })
                        .clone()
                };
                PluginMetrics {
                    name: name.clone(),
                    verdicts: KINDS.map(|k| verdict("plugin", k)),
                    fault_verdicts: KINDS.map(|k| verdict("on_fault", k)),
                    faults: REASONS.map(|reason| {
                        self.faults
                            .get_or_create(&FaultLabels {
                                plugin: name.to_string(),
                                reason: reason.to_owned(),
                            })
                            .clone()
                    }),
                    fuel: self.plugin_fuel.get_or_create(&label).clone(),
                    seconds: self.plugin_seconds.get_or_create(&label).clone(),
                    quarantined: self.quarantined.get_or_create(&label).clone(),
                    quarantines: self.quarantines.get_or_create(&label).clone(),
                    is_quarantined: AtomicBool::new(false),
                    retired: Mutex::new(false),
                }
            })
            .collect();
        ChainMetrics { plugins }
    }

    /// An HTLC arrived from LND.
    pub fn htlc_seen(&self) {
        self.htlcs_seen.inc();
    }

    /// A key LND sent again was answered with its journaled verdict.
    pub fn replayed(&self, verdict: &Verdict) {
        self.builtin[Builtin::Replay as usize][kind_index(verdict)].inc();
    }

    /// A decision whose answer was queued `since_request` after its request came in.
    pub fn decided(&self, chain: Option<&ChainMetrics>, d: &Decision, since_request: Duration) {
        let kind = kind_index(&d.verdict);
        match &d.by {
            DecidedBy::Plugin(name) => match chain.and_then(|c| c.plugin(usize::MAX, name)) {
                Some(p) => {
                    p.verdicts[kind].inc();
                }
                None => self.verdict_slow(name, kind, "plugin"),
            },
            DecidedBy::FaultPolicy(name) => match chain.and_then(|c| c.plugin(usize::MAX, name)) {
                Some(p) => {
                    p.fault_verdicts[kind].inc();
                }
                None => self.verdict_slow(name, kind, "on_fault"),
            },
            DecidedBy::Default => {
                self.builtin[Builtin::Default as usize][kind].inc();
            }
            DecidedBy::Budget => {
                self.builtin[Builtin::Budget as usize][kind].inc();
            }
            DecidedBy::Replay => {
                self.builtin[Builtin::Replay as usize][kind].inc();
            }
            DecidedBy::HoldExpiry(name) => self.verdict_slow(name, kind, "on_hold_expiry"),
        }
        let fuel = self.trace(chain, &d.trace);
        self.decision_seconds.observe_duration(since_request);
        if !d.trace.is_empty() {
            self.decision_fuel.observe(fuel);
        }
    }

    /// Records what each plugin did for one HTLC (also for a result that came too
    /// late, after the budget): fuel, time, faults, quarantine. Returns the fuel
    /// the whole chain used.
    pub fn trace(&self, chain: Option<&ChainMetrics>, trace: &[Trace]) -> u64 {
        let mut total = 0u64;
        for (i, t) in trace.iter().enumerate() {
            total = total.saturating_add(t.cost.fuel);
            let Some(p) = chain.and_then(|c| c.plugin(i, &t.plugin)) else {
                continue;
            };
            match &t.step {
                // Not called: nothing was spent.
                Step::Quarantined => {
                    if !p.is_quarantined.load(Ordering::Relaxed) {
                        let retired = p.retired.lock().unwrap_or_else(|e| e.into_inner());
                        if !*retired && !p.is_quarantined.swap(true, Ordering::Relaxed) {
                            p.quarantined.set(1);
                            p.quarantines.inc();
                            self.quarantined_now.inc();
                        }
                    }
                    continue;
                }
                Step::Fault(f) => {
                    let reason = f.reason();
                    match REASONS.iter().position(|r| *r == reason) {
                        Some(i) => {
                            p.faults[i].inc();
                        }
                        None => {
                            self.faults
                                .get_or_create(&FaultLabels {
                                    plugin: p.name.to_string(),
                                    reason: reason.to_owned(),
                                })
                                .inc();
                        }
                    }
                }
                Step::Next | Step::Verdict(_) | Step::Hold(_) => {}
            }
            p.fuel.observe(t.cost.fuel);
            p.seconds.observe_duration(t.cost.elapsed);
        }
        total
    }

    /// A verdict by a plugin without pre-registered handles (not expected: every
    /// chain's plugins are registered when it is loaded).
    fn verdict_slow(&self, name: &str, kind: usize, source: &'static str) {
        self.verdicts
            .get_or_create(&VerdictLabels {
                plugin: name.to_owned(),
                kind: KINDS[kind],
                source,
            })
            .inc();
    }

    /// A plugin answered `hold` (the HTLC stays held, the chain asks again).
    pub fn held(&self, plugin: &str) {
        self.holds
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// An HTLC started (`+1`) or stopped (`-1`) being held by a plugin.
    pub fn holding(&self, delta: i64) {
        self.holds_now.inc_by(delta);
    }

    /// An outcome of an HTLC htlcgate decided was handed to the chain.
    pub fn outcome(&self, kind: &'static str) {
        self.outcomes.get_or_create(&OutcomeLabel { kind }).inc();
    }

    /// Outcomes dropped because a plugin's outcome queue was full.
    pub fn outcomes_dropped(&self, n: u64) {
        self.outcomes_dropped.inc_by(n);
    }

    /// A hot reload finished: `ok` when the new chain was swapped in.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_refused.inc();
        }
    }

    /// LND accepted an interceptor stream.
    pub fn stream_connected(&self) {
        self.stream_connects.inc();
        self.stream_up.set(1);
    }

    /// An accepted interceptor stream ended.
    pub fn stream_disconnected(&self) {
        self.stream_disconnects.inc();
        self.stream_up.set(0);
    }

    /// An audit line was written.
    pub fn audit_written(&self) {
        self.audit_lines.inc();
    }

    /// `n` audit lines were dropped.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }

    /// The audit log was rotated.
    pub fn audit_rotated(&self) {
        self.audit_rotations.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::FailCode;
    use crate::wasm::fault::PluginFault;
    use crate::wasm::plugin::Cost;

    fn names(n: &[&str]) -> Vec<Arc<str>> {
        n.iter().map(|s| Arc::from(*s)).collect()
    }

    fn trace(plugin: &str, step: Step, fuel: u64) -> Trace {
        Trace {
            plugin: Arc::from(plugin),
            step,
            cost: Cost {
                fuel,
                elapsed: Duration::from_micros(7),
            },
        }
    }

    /// The value of one sample line, found by its name and labels.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_decision_moves_the_verdict_fault_fuel_and_latency_metrics() {
        let m = Metrics::new();
        let chain = m.chain(&names(&["trap", "fee-floor"]), None);
        let d = Decision {
            hold: None,
            verdict: Verdict::Fail(FailCode::TemporaryChannelFailure),
            by: DecidedBy::Plugin(Arc::from("fee-floor")),
            trace: vec![
                trace(
                    "trap",
                    Step::Fault(PluginFault::Trap {
                        message: "x".into(),
                    }),
                    500,
                ),
                trace(
                    "fee-floor",
                    Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure)),
                    3_000,
                ),
            ],
            elapsed: Duration::from_micros(20),
        };
        m.htlc_seen();
        m.decided(Some(&chain), &d, Duration::from_micros(50));
        let text = m.encode();
        assert_eq!(sample(&text, "htlcgate_htlcs_seen_total"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                r#"htlcgate_verdicts_total{plugin="fee-floor",kind="fail",source="plugin"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"htlcgate_plugin_faults_total{plugin="trap",reason="trap"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_fuel_count{plugin="fee-floor"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_fuel_sum{plugin="fee-floor"}"#),
            Some(3000.0)
        );
        // 3,000 fuel is above the 1,000 bucket and within the 4,000 one.
        assert_eq!(
            sample(
                &text,
                r#"htlcgate_plugin_fuel_bucket{le="1000.0",plugin="fee-floor"}"#
            )
            .or_else(|| sample(
                &text,
                r#"htlcgate_plugin_fuel_bucket{plugin="fee-floor",le="1000.0"}"#
            )),
            Some(0.0),
            "{text}"
        );
        assert_eq!(sample(&text, "htlcgate_decision_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "htlcgate_decision_fuel_sum"), Some(3500.0));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn quarantine_is_counted_once_and_cleared_by_a_swap() {
        let m = Metrics::new();
        let chain = m.chain(&names(&["spin"]), None);
        for _ in 0..3 {
            m.trace(Some(&chain), &[trace("spin", Step::Quarantined, 0)]);
        }
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_quarantined{plugin="spin"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_quarantines_total{plugin="spin"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&text, "htlcgate_plugins_quarantined"), Some(1.0));
        // A quarantined plugin is not called: no fuel, no time.
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_fuel_count{plugin="spin"}"#),
            Some(0.0)
        );
        let fresh = m.chain(&names(&["spin"]), Some(&chain));
        // A late HTLC on the old chain does not mark the new one.
        m.trace(Some(&chain), &[trace("spin", Step::Quarantined, 0)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_quarantined{plugin="spin"}"#),
            Some(0.0)
        );
        assert_eq!(sample(&text, "htlcgate_plugins_quarantined"), Some(0.0));
        m.trace(Some(&fresh), &[trace("spin", Step::Quarantined, 0)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"htlcgate_plugin_quarantines_total{plugin="spin"}"#),
            Some(2.0)
        );
    }

    /// Found in review: a late HTLC on the old chain could pass the `retired`
    /// check, then a swap retired the chain and cleared nothing, then the HTLC
    /// marked the plugin quarantined: the gauges stayed at 1 until restart while
    /// the new instance was healthy. Raced many times over.
    #[test]
    fn a_quarantine_racing_a_swap_never_leaves_the_gauges_set() {
        for round in 0..2000 {
            let m = Arc::new(Metrics::new());
            let old = Arc::new(m.chain(&names(&["spin"]), None));
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let late = {
                let (m, old, barrier) = (m.clone(), old.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    m.trace(Some(&old), &[trace("spin", Step::Quarantined, 0)]);
                })
            };
            barrier.wait();
            let _fresh = m.chain(&names(&["spin"]), Some(&old));
            late.join().unwrap();
            let text = m.encode();
            assert_eq!(
                sample(&text, "htlcgate_plugins_quarantined"),
                Some(0.0),
                "round {round}"
            );
            assert_eq!(
                sample(&text, r#"htlcgate_plugin_quarantined{plugin="spin"}"#),
                Some(0.0),
                "round {round}"
            );
        }
    }

    #[test]
    fn builtin_sources_have_an_empty_plugin_label() {
        let m = Metrics::new();
        let d = Decision {
            hold: None,
            verdict: Verdict::Resume,
            by: DecidedBy::Budget,
            trace: vec![],
            elapsed: Duration::ZERO,
        };
        m.decided(None, &d, Duration::from_millis(2));
        m.replayed(&Verdict::Resume);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"htlcgate_verdicts_total{plugin="",kind="resume",source="budget"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"htlcgate_verdicts_total{plugin="",kind="resume",source="replay"}"#
            ),
            Some(1.0)
        );
        // No plugin ran: no chain fuel is recorded for it.
        assert_eq!(sample(&text, "htlcgate_decision_fuel_count"), Some(0.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = AtomicHistogram::new(vec![10, 100], 1.0);
        for v in [1, 10, 11, 100, 101, u64::MAX / 2] {
            h.observe(v);
        }
        assert_eq!(h.count(), 6);
        let mut reg = Registry::default();
        reg.register("h", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("h_bucket{le=\"10.0\"} 2\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"100.0\"} 4\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 6\n"), "{text}");
    }
}
