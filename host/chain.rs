//! The chain: plugins asked in configured order, each on its own thread, as a
//! pipeline.
//!
//! Every plugin owns one long-lived instance and a FIFO queue, so it sees its calls
//! one at a time in arrival order (its in-memory state stays consistent), while
//! different HTLCs can be at different plugins at once. An HTLC enters the first
//! queue; a plugin that says `next` (or faults with `on_fault = "skip"`) hands it to
//! the following queue; any verdict ends the chain. When all pass, the configured
//! default verdict applies. An empty chain gives every HTLC the default.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::{OnFault, PluginConfig};
use crate::verdict::{FailCode, Verdict};
use crate::wasm::engine::Sandbox;
use crate::wasm::fault::PluginFault;
use crate::wasm::input::HtlcInput;
use crate::wasm::plugin::{Cost, LoadError, Plugin, Step};

/// Who chose the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// A plugin's own verdict.
    Plugin(Arc<str>),
    /// A plugin's `on_fault` policy (`fail` or `resume`) after a fault or while
    /// quarantined.
    FaultPolicy(Arc<str>),
    /// Every plugin passed: the chain's `default_verdict`.
    Default,
    /// The chain ran out of its budget: `on_budget`.
    Budget,
    /// Replayed from the verdict cache: the key was decided before.
    Replay,
}

impl std::fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecidedBy::Plugin(p) => write!(f, "{p}"),
            DecidedBy::FaultPolicy(p) => write!(f, "{p} (on_fault)"),
            DecidedBy::Default => write!(f, "default"),
            DecidedBy::Budget => write!(f, "budget"),
            DecidedBy::Replay => write!(f, "replay"),
        }
    }
}

/// What happened at one plugin, for the demo, `check` and debugging.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The plugin.
    pub plugin: Arc<str>,
    /// What it said.
    pub step: Step,
    /// What it cost.
    pub cost: Cost,
}

/// The chain's answer for one HTLC.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The verdict to send.
    pub verdict: Verdict,
    /// Who chose it.
    pub by: DecidedBy,
    /// Each plugin's step, in order.
    pub trace: Vec<Trace>,
    /// Time from entering the chain to the verdict.
    pub elapsed: Duration,
}

struct Job {
    input: Arc<HtlcInput>,
    stage: usize,
    started: Instant,
    trace: Vec<Trace>,
    reply: oneshot::Sender<Decision>,
    shared: Arc<Shared>,
}

struct Shared {
    queues: Vec<mpsc::Sender<Job>>,
    default: Verdict,
}

/// A loaded chain. Dropping it stops its threads once the HTLCs in it are decided.
pub struct Chain {
    shared: Arc<Shared>,
    names: Vec<Arc<str>>,
}

impl Chain {
    /// Loads every plugin (compile, instantiate, `init`) and starts their threads.
    /// The first plugin that cannot load fails the whole chain: a half-loaded chain
    /// would decide differently from the configuration.
    pub fn load(
        sandbox: &Sandbox,
        plugins: &[PluginConfig],
        default: Verdict,
    ) -> Result<Chain, LoadError> {
        let loaded = plugins
            .iter()
            .map(|cfg| Plugin::load(sandbox, cfg.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chain::from_plugins(loaded, default))
    }

    /// Starts a chain over plugins already loaded.
    pub fn from_plugins(plugins: Vec<Plugin>, default: Verdict) -> Chain {
        let mut queues = Vec::with_capacity(plugins.len());
        let mut names = Vec::with_capacity(plugins.len());
        for (stage, plugin) in plugins.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel::<Job>();
            queues.push(tx);
            names.push(plugin.name.clone());
            std::thread::Builder::new()
                .name(format!("plugin-{}", plugin.name))
                .spawn(move || worker(stage, plugin, rx))
                .expect("spawning a plugin thread");
        }
        Chain {
            shared: Arc::new(Shared { queues, default }),
            names,
        }
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Starts deciding one HTLC; the receiver gets the decision.
    pub fn decide(&self, input: Arc<HtlcInput>) -> oneshot::Receiver<Decision> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            input,
            stage: 0,
            started: Instant::now(),
            trace: Vec::with_capacity(self.shared.queues.len()),
            reply,
            shared: self.shared.clone(),
        };
        advance(job);
        rx
    }
}

/// Hands a job to its stage's queue, or answers with the default after the last.
fn advance(job: Job) {
    let shared = job.shared.clone();
    match shared.queues.get(job.stage) {
        Some(q) => {
            // A send fails only if that worker thread is gone (it never exits while
            // the chain lives); the receiver then sees the reply dropped and the
            // caller applies its budget verdict.
            let _ = q.send(job);
        }
        None => {
            let verdict = job.shared.default.clone();
            finish(job, verdict, DecidedBy::Default);
        }
    }
}

fn finish(job: Job, verdict: Verdict, by: DecidedBy) {
    let decision = Decision {
        verdict,
        by,
        trace: job.trace,
        elapsed: job.started.elapsed(),
    };
    // The receiver is gone when the chain's budget already answered: the late
    // result is discarded, never sent.
    let _ = job.reply.send(decision);
}

fn worker(stage: usize, mut plugin: Plugin, rx: mpsc::Receiver<Job>) {
    while let Ok(mut job) = rx.recv() {
        let (step, cost) = plugin.decide(&job.input);
        let key = job.input.key;
        let name = plugin.name.clone();
        let policy = plugin.cfg.on_fault;
        let outcome = match &step {
            Step::Next => None,
            Step::Verdict(v) => Some((v.clone(), DecidedBy::Plugin(name.clone()))),
            Step::Fault(fault) => {
                log_fault(&name, key, fault, policy);
                on_fault(policy, &name)
            }
            Step::Quarantined => on_fault(policy, &name),
        };
        job.trace.push(Trace {
            plugin: name,
            step,
            cost,
        });
        match outcome {
            Some((verdict, by)) => finish(job, verdict, by),
            None => {
                job.stage = stage + 1;
                advance(job);
            }
        }
    }
}

/// The verdict a fault gives, by the plugin's `on_fault`. None of these can lose
/// money: skip leaves the decision to the rest of the chain, fail returns the HTLC
/// to its sender, resume forwards it as LND would without an interceptor.
fn on_fault(policy: OnFault, name: &Arc<str>) -> Option<(Verdict, DecidedBy)> {
    match policy {
        OnFault::Skip => None,
        OnFault::Fail => Some((
            Verdict::Fail(FailCode::TemporaryChannelFailure),
            DecidedBy::FaultPolicy(name.clone()),
        )),
        OnFault::Resume => Some((Verdict::Resume, DecidedBy::FaultPolicy(name.clone()))),
    }
}

fn log_fault(name: &str, key: crate::circuit::CircuitKey, fault: &PluginFault, policy: OnFault) {
    tracing::warn!(
        plugin = name,
        circuit = %key,
        scid_in = %crate::circuit::Scid(key.chan_id),
        reason = fault.reason(),
        on_fault = ?policy,
        "plugin fault: {fault}"
    );
}
