//! The chain: plugins asked in configured order, each on its own thread, as a
//! pipeline.
//!
//! Every plugin owns one long-lived instance and a FIFO queue, so it sees its calls
//! one at a time in arrival order (its in-memory state stays consistent), while
//! different HTLCs can be at different plugins at once. An HTLC enters the first
//! queue; a plugin that says `next` (or faults with `on_fault = "skip"`) hands it to
//! the following queue; any verdict ends the chain. When all pass, the configured
//! default verdict applies. An empty chain gives every HTLC the default.
//!
//! Handing a job to another thread costs a wake-up (several microseconds, more than
//! a plugin call), so a thread that finishes a plugin carries the job on into the
//! next plugin itself when that plugin is idle (nobody running it, nothing queued
//! for it) and its own queue is empty. At low load an HTLC thus crosses threads
//! twice (in and out of the chain) instead of once per plugin; under load the
//! queues fill and the plugins work as a pipeline. Order is kept: a job runs a
//! plugin directly only when nothing queued before it is waiting for that plugin.
//!
//! A plugin may answer `hold`: the chain then ends with a [`HoldRequest`] (the gate
//! keeps the HTLC held at LND and calls [`Chain::decide_at`] again later, from the
//! holding plugin). Outcomes of forwards ([`Chain::outcome`]) go into a second queue
//! of every plugin that exports `outcome` (until it calls `ignore-outcomes`, as
//! Rust SDK plugins without an `outcome` of their own do), served by the same
//! thread, so a plugin sees its `decide` and `outcome` calls one at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::{OnFault, PluginConfig};
use crate::verdict::{FailCode, Verdict};
use crate::wasm::bindings::HtlcOutcome;
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
    /// A plugin held the HTLC until the hold cap (or the margin before
    /// `auto_fail_height`): its `on_hold_expiry`.
    HoldExpiry(Arc<str>),
}

impl std::fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecidedBy::Plugin(p) => write!(f, "{p}"),
            DecidedBy::FaultPolicy(p) => write!(f, "{p} (on_fault)"),
            DecidedBy::Default => write!(f, "default"),
            DecidedBy::Budget => write!(f, "budget"),
            DecidedBy::Replay => write!(f, "replay"),
            DecidedBy::HoldExpiry(p) => write!(f, "{p} (on_hold_expiry)"),
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

/// A plugin asked to hold the HTLC and be asked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    /// The holding plugin's position in the chain: the next attempt starts there.
    pub stage: usize,
    /// The holding plugin.
    pub plugin: Arc<str>,
    /// Ask again after this long.
    pub after: Duration,
}

/// The chain's answer for one HTLC.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The verdict to send. With a [`Decision::hold`] it is the holding plugin's
    /// `on_hold_expiry` verdict: what is sent if the hold cannot go on.
    pub verdict: Verdict,
    /// Set when a plugin answered `hold`: keep the HTLC held and ask again.
    pub hold: Option<HoldRequest>,
    /// Who chose it.
    pub by: DecidedBy,
    /// Each plugin's step, in order.
    pub trace: Vec<Trace>,
    /// Time from entering the chain to the verdict.
    pub elapsed: Duration,
}

/// Finishes a decision where the chain reaches it, instead of sending it to the
/// waiting task: used by the gate so that a verdict goes on to the journal from
/// the plugin's thread (one thread wake-up fewer per HTLC, two with the answer).
///
/// Exactly one side answers an HTLC: whoever sets `claim` first. The chain claims
/// before calling `finish`; the gate's budget timer claims before sending its own
/// verdict, so a late chain result is never sent (it goes to the reply channel,
/// as without a `Direct`).
pub struct Direct {
    /// Set by the side that answers.
    pub claim: Arc<AtomicBool>,
    /// Called with a decision that has no hold, once `claim` was won, and the
    /// task waiting for the decision, to release once the answer is sent.
    pub finish: Box<dyn FnOnce(Decision, Waiter) + Send>,
}

/// The task that waits for a decision the chain answers itself ([`Direct`]).
/// Dropping this wakes it, and it ends (the claim is taken). Dropped right after
/// the answer is queued, that wake-up shares the one the answer causes on the
/// task's runtime: at low rates an HTLC then wakes a runtime thread once, not
/// twice (once as the chain ends, again once the journal's commit is done).
pub struct Waiter {
    /// Its reply channel: closed when dropped, which wakes it.
    _reply: oneshot::Sender<Decision>,
}

/// One HTLC on its way through the chain.
struct Job {
    /// The HTLC.
    input: Arc<HtlcInput>,
    /// The plugin it is at (or queued for).
    stage: usize,
    /// When it entered the chain.
    started: Instant,
    /// What each plugin so far said.
    trace: Vec<Trace>,
    /// Where the decision goes.
    reply: oneshot::Sender<Decision>,
    /// Where a decision without a hold goes instead, if the claim is won.
    direct: Option<Direct>,
    /// The chain (kept alive while a job is in it).
    shared: Arc<Shared>,
}

/// One plugin of the chain, its queue, and who is running it.
struct Stage {
    /// The queue and the busy flag.
    state: Mutex<StageState>,
    /// Wakes the stage's worker thread when a job is queued or the stage is freed.
    work: Condvar,
    /// The plugin; locked only by the thread that set `busy`.
    plugin: Mutex<Plugin>,
    /// The plugin wants outcomes ([`Plugin::wants_outcomes`]); turns false
    /// when it calls `ignore-outcomes`, never back.
    wants_outcomes: AtomicBool,
}

/// The part of a stage that changes, under its mutex.
struct StageState {
    /// Jobs waiting for this plugin, in arrival order.
    queue: VecDeque<Job>,
    /// Outcomes waiting for this plugin's `outcome`, oldest first (bounded by
    /// [`OUTCOME_QUEUE`]).
    outcomes: VecDeque<Arc<HtlcOutcome>>,
    /// A thread is running this plugin (its worker, or one carrying a job on).
    busy: bool,
    /// The chain is gone and no job is left: the worker exits.
    closed: bool,
    /// The worker is waiting on `work` (a wake-up is a system call: skip it when
    /// the worker is running anyway).
    sleeping: bool,
}

impl Stage {
    fn lock(&self) -> MutexGuard<'_, StageState> {
        // Plugin::decide never panics, so a poisoned lock holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether outcomes are queued for this plugin.
    fn wants_outcomes(&self) -> bool {
        self.wants_outcomes.load(Ordering::Relaxed)
    }

    /// Wakes the worker if it sleeps; takes the state's guard and releases it.
    fn wake(&self, st: MutexGuard<'_, StageState>) {
        let sleeping = st.sleeping;
        drop(st);
        if sleeping {
            self.work.notify_one();
        }
    }
}

/// Most outcomes queued per plugin; beyond it the oldest is dropped (and
/// counted): a slow `outcome` never grows memory without bound.
pub const OUTCOME_QUEUE: usize = 10_000;

/// The chain's stages and default verdict, shared by the chain and its jobs.
struct Shared {
    /// The plugins, in order.
    stages: Vec<Arc<Stage>>,
    /// The verdict when every plugin passes.
    default: Verdict,
}

impl Drop for Shared {
    /// The chain and every job are gone (each job holds this): stop the workers.
    fn drop(&mut self) {
        for stage in &self.stages {
            stage.lock().closed = true;
            stage.work.notify_all();
        }
    }
}

/// A loaded chain. Dropping it stops its threads once the HTLCs in it are decided.
pub struct Chain {
    /// The stages.
    shared: Arc<Shared>,
    /// The plugins' names, in order.
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
        let mut stages = Vec::with_capacity(plugins.len());
        let mut names = Vec::with_capacity(plugins.len());
        for (index, plugin) in plugins.into_iter().enumerate() {
            names.push(plugin.name.clone());
            let thread_name = format!("plugin-{}", plugin.name);
            let wants_outcomes = AtomicBool::new(plugin.wants_outcomes());
            let stage = Arc::new(Stage {
                state: Mutex::new(StageState {
                    queue: VecDeque::new(),
                    outcomes: VecDeque::new(),
                    busy: false,
                    closed: false,
                    sleeping: false,
                }),
                work: Condvar::new(),
                plugin: Mutex::new(plugin),
                wants_outcomes,
            });
            let own = stage.clone();
            std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || worker(index, own))
                .expect("spawning a plugin thread");
            stages.push(stage);
        }
        Chain {
            shared: Arc::new(Shared { stages, default }),
            names,
        }
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Starts deciding one HTLC; the receiver gets the decision. Never runs a
    /// plugin on the calling thread (an async task must not block).
    pub fn decide(&self, input: Arc<HtlcInput>) -> oneshot::Receiver<Decision> {
        self.decide_at(input, 0)
    }

    /// As [`Chain::decide`], starting at plugin `stage` (after a hold by that
    /// plugin: the plugins before it are not asked again). A stage past the end
    /// gives the default verdict.
    pub fn decide_at(&self, input: Arc<HtlcInput>, stage: usize) -> oneshot::Receiver<Decision> {
        self.decide_direct(input, stage, None)
    }

    /// As [`Chain::decide_at`]; a decision without a hold goes to `direct` (on the
    /// thread that reached it) if its claim is still free, and then the receiver
    /// is closed without a value.
    pub fn decide_direct(
        &self,
        input: Arc<HtlcInput>,
        stage: usize,
        direct: Option<Direct>,
    ) -> oneshot::Receiver<Decision> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            input,
            stage,
            started: Instant::now(),
            trace: Vec::with_capacity(self.shared.stages.len()),
            reply,
            direct,
            shared: self.shared.clone(),
        };
        match self.shared.stages.get(stage) {
            Some(first) => enqueue(first, job),
            None => {
                let verdict = job.shared.default.clone();
                finish(job, verdict, DecidedBy::Default, None);
            }
        }
        rx
    }

    /// Whether any plugin of the chain wants outcomes (exports `outcome` and has
    /// not called `ignore-outcomes`).
    pub fn wants_outcomes(&self) -> bool {
        self.shared.stages.iter().any(|s| s.wants_outcomes())
    }

    /// Hands an outcome to every plugin that wants outcomes, on its own thread
    /// after what is queued for it. Never blocks on a plugin. Returns how many
    /// older outcomes were dropped because a plugin's queue was full.
    pub fn outcome(&self, outcome: Arc<HtlcOutcome>) -> usize {
        let mut dropped = 0;
        for stage in self.shared.stages.iter().filter(|s| s.wants_outcomes()) {
            let mut st = stage.lock();
            if st.outcomes.len() >= OUTCOME_QUEUE {
                st.outcomes.pop_front();
                dropped += 1;
            }
            st.outcomes.push_back(outcome.clone());
            stage.wake(st);
        }
        dropped
    }
}

/// Queues `job` for `stage`'s worker.
fn enqueue(stage: &Stage, job: Job) {
    let mut st = stage.lock();
    st.queue.push_back(job);
    stage.wake(st);
}

fn finish(job: Job, verdict: Verdict, by: DecidedBy, hold: Option<HoldRequest>) {
    let decision = Decision {
        verdict,
        hold,
        by,
        trace: job.trace,
        elapsed: job.started.elapsed(),
    };
    if let Some(direct) = job.direct {
        if decision.hold.is_none() && !direct.claim.swap(true, Ordering::AcqRel) {
            (direct.finish)(decision, Waiter { _reply: job.reply });
            return;
        }
    }
    // The receiver is gone when the chain's budget already answered: the late
    // result is discarded, never sent.
    let _ = job.reply.send(decision);
}

/// What a stage's worker takes next.
enum Work {
    /// Decide an HTLC.
    Decide(Job),
    /// Tell the plugin an outcome.
    Outcome(Arc<HtlcOutcome>),
}

/// The thread of stage `home`: takes its queue's jobs in order and runs them;
/// outcomes first (they free what plugins hold for in-flight HTLCs).
fn worker(home: usize, stage: Arc<Stage>) {
    loop {
        let work = {
            let mut st = stage.lock();
            loop {
                if !st.busy {
                    if let Some(o) = st.outcomes.pop_front() {
                        st.busy = true;
                        break Work::Outcome(o);
                    }
                    if let Some(job) = st.queue.pop_front() {
                        st.busy = true;
                        break Work::Decide(job);
                    }
                }
                if st.closed && st.queue.is_empty() && st.outcomes.is_empty() {
                    return;
                }
                st.sleeping = true;
                st = stage.work.wait(st).unwrap_or_else(|p| p.into_inner());
                st.sleeping = false;
            }
        };
        match work {
            Work::Decide(job) => run(home, job),
            Work::Outcome(o) => {
                let wants = {
                    let mut plugin = stage.plugin.lock().unwrap_or_else(|p| p.into_inner());
                    tell_outcome(&mut plugin, &o);
                    plugin.wants_outcomes()
                };
                if !wants && stage.wants_outcomes.swap(false, Ordering::Relaxed) {
                    // It called `ignore-outcomes`: what is queued for it would be
                    // no-op calls.
                    stage.lock().outcomes.clear();
                }
                free(&stage, home, home);
            }
        }
    }
}

/// Calls the plugin's `outcome`; a fault is logged, never affects a verdict.
fn tell_outcome(plugin: &mut Plugin, o: &HtlcOutcome) {
    let (result, _cost) = plugin.outcome(o);
    if let Err(fault) = result {
        let key = crate::circuit::CircuitKey {
            chan_id: o.incoming_circuit_key.chan_id,
            htlc_id: o.incoming_circuit_key.htlc_id,
        };
        tracing::warn!(
            plugin = &*plugin.name,
            circuit = %key,
            reason = fault.reason(),
            "plugin fault in outcome (no verdict is affected): {fault}"
        );
    }
}

/// Runs `job` at its stage (which the caller marked busy for it), then goes on
/// through the following stages on this thread while each is idle and nothing
/// waits in the queue of `home` (this thread's own stage); otherwise hands the job
/// to the next stage's queue.
///
/// A stage is freed only after its job is placed at the next stage (queued there,
/// or that stage marked busy for it): a later job finishing this stage can then
/// never reach the next one first.
fn run(home: usize, mut job: Job) {
    let shared = job.shared.clone();
    loop {
        let here = job.stage;
        let stage = &shared.stages[here];
        let outcome = {
            let mut plugin = stage.plugin.lock().unwrap_or_else(|p| p.into_inner());
            step(&mut plugin, &mut job)
        };
        let next = match (outcome, shared.stages.get(here + 1)) {
            (Some((verdict, by, hold)), _) => {
                free(stage, here, home);
                finish(job, verdict, by, hold);
                return;
            }
            (None, None) => {
                free(stage, here, home);
                let verdict = shared.default.clone();
                finish(job, verdict, DecidedBy::Default, None);
                return;
            }
            (None, Some(next)) => next,
        };
        job.stage = here + 1;
        let home_waiting = {
            let h = shared.stages[home].lock();
            !h.queue.is_empty() || !h.outcomes.is_empty()
        };
        let mut st = next.lock();
        if home_waiting || st.busy || !st.queue.is_empty() {
            st.queue.push_back(job);
            next.wake(st);
            free(stage, here, home);
            return;
        }
        // Carry on: this thread now holds the next stage.
        st.busy = true;
        drop(st);
        free(stage, here, home);
    }
}

/// Frees stage `here` after this thread ran it. Jobs queued for it meanwhile
/// are taken by its worker: woken here, unless that worker is this thread
/// (`home`), which comes back to its queue by itself.
fn free(stage: &Stage, here: usize, home: usize) {
    let mut st = stage.lock();
    st.busy = false;
    if (!st.queue.is_empty() || !st.outcomes.is_empty()) && here != home {
        stage.wake(st);
    }
}

/// What ends the chain at one step: the verdict, who chose it, and a hold.
type Ending = (Verdict, DecidedBy, Option<HoldRequest>);

/// Asks the stage's plugin about the job and records the step; returns the
/// verdict if this step ends the chain.
fn step(plugin: &mut Plugin, job: &mut Job) -> Option<Ending> {
    let (step, cost) = plugin.decide(&job.input);
    let key = job.input.key;
    let name = plugin.name.clone();
    let policy = plugin.cfg.on_fault;
    let outcome = match &step {
        Step::Next => None,
        Step::Verdict(v) => Some((v.clone(), DecidedBy::Plugin(name.clone()), None)),
        // The verdict carried with a hold is the plugin's on_hold_expiry (fail or
        // resume): whoever sends it instead of holding cannot lose money.
        Step::Hold(after) => Some((
            plugin.cfg.on_hold_expiry.verdict(),
            DecidedBy::Plugin(name.clone()),
            Some(HoldRequest {
                stage: job.stage,
                plugin: name.clone(),
                after: *after,
            }),
        )),
        Step::Fault(fault) => {
            log_fault(&name, key, fault, policy);
            on_fault(policy, &name).map(|(v, by)| (v, by, None))
        }
        Step::Quarantined => on_fault(policy, &name).map(|(v, by)| (v, by, None)),
    };
    job.trace.push(Trace {
        plugin: name,
        step,
        cost,
    });
    outcome
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
