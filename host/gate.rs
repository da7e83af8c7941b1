//! The bookkeeping between LND's stream and the chain: which HTLCs are being decided,
//! which the current stream still waits for, and the verdicts already sent.
//!
//! The one rule it exists for: every request LND sends on a stream gets exactly one
//! answer on that stream. Answering a key LND does not hold ("forward does not
//! exist") ends the whole stream, so:
//! - a request whose key is already pending on this stream is not answered again;
//! - a key decided before (an earlier stream, earlier on this one, or before a
//!   restart) gets its journaled verdict at once, never a new decision (replay);
//! - a key LND refused to resume or fail because it is held in the on-chain flow is
//!   answered only with a settle, or not at all, so the stream is not ended again;
//! - a key whose decision is still running from an earlier stream waits for that
//!   decision instead of starting a second one;
//! - a decision that finishes after its stream closed is journaled, not sent: LND
//!   will replay the key on the next stream.
//!
//! Every verdict is committed to the journal before it is sent.
//!
//! All of this happens under one mutex, so "remove from pending" and "send" are one
//! step.
//!
//! Observers (metrics, the audit log, an event channel) are told about a decision
//! only after its answer is queued for LND, without waiting on anything: they never
//! hold an answer back.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::audit::AuditLog;
use crate::chain::{Chain, DecidedBy, Decision};
use crate::circuit::{CircuitKey, Scid};
use crate::config::ChainConfig;
use crate::health::Health;
use crate::journal::Journal;
use crate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ForwardHtlcInterceptResponse};
use crate::metrics::{ChainMetrics, Metrics};
use crate::verdict::Verdict;
use crate::wasm::input::HtlcInput;

/// One decided HTLC, for observers (the demo, tests).
#[derive(Clone, Debug)]
pub struct DecisionEvent {
    /// The HTLC's key.
    pub key: CircuitKey,
    /// The HTLC as decided; `None` for a replayed verdict.
    pub input: Option<Arc<HtlcInput>>,
    /// The decision.
    pub decision: Decision,
}

/// A chain with its chain-wide settings.
pub struct Live {
    /// The plugins.
    pub chain: Chain,
    /// Default verdict, budget and `on_budget`.
    pub cfg: ChainConfig,
    /// The chain's per-plugin metric handles (when metrics are on).
    metrics: Option<Arc<ChainMetrics>>,
}

/// Who else hears about a gate's decisions besides LND; everything is optional.
#[derive(Default)]
pub struct GateOptions {
    /// Receives every decision (the demo, tests, `replay`).
    pub observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
    /// Prometheus metrics.
    pub metrics: Option<Arc<Metrics>>,
    /// Health for `/healthz` (a fresh one when absent); the gate marks the chain
    /// loaded and the stream up or down.
    pub health: Option<Arc<Health>>,
    /// The decision audit log.
    pub audit: Option<AuditLog>,
}

/// Identifies one connection to LND.
pub type StreamGen = u64;

struct CurrentStream {
    gen: StreamGen,
    tx: mpsc::UnboundedSender<ForwardHtlcInterceptResponse>,
    /// Keys LND sent on this stream that are not answered yet.
    pending: HashSet<CircuitKey>,
    /// The last key answered, to name it when LND ends the stream.
    last_answered: Option<CircuitKey>,
    /// Resume and fail answers sent recently, newest last: the candidates when LND
    /// ends the stream because one of them is held on-chain.
    recent: VecDeque<(Instant, CircuitKey)>,
    /// Whether LND accepted the stream (see [`Gate::stream_accepted`]).
    accepted: bool,
}

/// How long after sending an answer LND may still end the stream over it: LND
/// handles responses in order within milliseconds, so the one it refused is among
/// those sent in this window before the stream ended.
const ON_CHAIN_WINDOW: Duration = Duration::from_secs(1);
/// Most recent answers remembered per stream.
const RECENT_MAX: usize = 4096;

/// What is known about a stream when it closes.
#[derive(Debug, Default)]
pub struct ClosedStream {
    /// The last key answered on it.
    pub last_answered: Option<CircuitKey>,
    /// Resume/fail answers sent within [`ON_CHAIN_WINDOW`] before it closed.
    pub recent: Vec<CircuitKey>,
}

struct State {
    /// Keys LND holds in the on-chain flow: answered only with a settle.
    on_chain: HashSet<CircuitKey>,
    /// Keys whose chain decision is running.
    inflight: HashSet<CircuitKey>,
    current: Option<CurrentStream>,
    next_gen: StreamGen,
}

/// Shared by the stream loop and the decision tasks.
pub struct Gate {
    /// The chain and its settings; swapped whole on reload. An HTLC takes one
    /// snapshot when its decision starts and finishes on it.
    live: RwLock<Arc<Live>>,
    /// Number of chains swapped in since start.
    swaps: std::sync::atomic::AtomicU64,
    journal: Journal,
    state: Mutex<State>,
    /// Woken whenever an answer is sent (for draining on shutdown).
    answered: Notify,
    observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
    metrics: Option<Arc<Metrics>>,
    health: Arc<Health>,
    audit: Option<AuditLog>,
}

impl Gate {
    /// A gate over `chain` with the chain-wide settings in `cfg`, recording verdicts
    /// in `journal`; `observer`, if given, receives every decision.
    pub fn new(
        chain: Chain,
        cfg: ChainConfig,
        journal: Journal,
        observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
    ) -> Arc<Gate> {
        Gate::with_options(
            chain,
            cfg,
            journal,
            GateOptions {
                observer,
                ..GateOptions::default()
            },
        )
    }

    /// A gate as [`Gate::new`], reporting to the observers in `opts`.
    pub fn with_options(
        chain: Chain,
        cfg: ChainConfig,
        journal: Journal,
        opts: GateOptions,
    ) -> Arc<Gate> {
        let GateOptions {
            observer,
            metrics,
            health,
            audit,
        } = opts;
        let chain_metrics = metrics
            .as_ref()
            .map(|m| Arc::new(m.chain(chain.names(), None)));
        let health = health.unwrap_or_default();
        health.set_chain_loaded(true);
        let on_chain = match journal.on_chain_keys() {
            Ok(keys) => keys.into_iter().collect(),
            Err(e) => {
                tracing::error!("cannot read on-chain keys from the journal: {e}");
                HashSet::new()
            }
        };
        Arc::new(Gate {
            live: RwLock::new(Arc::new(Live {
                chain,
                cfg,
                metrics: chain_metrics,
            })),
            swaps: std::sync::atomic::AtomicU64::new(0),
            journal,
            state: Mutex::new(State {
                on_chain,
                inflight: HashSet::new(),
                current: None,
                next_gen: 1,
            }),
            answered: Notify::new(),
            observer,
            metrics,
            health,
            audit,
        })
    }

    /// The chain's wall-clock budget per HTLC.
    pub fn budget(&self) -> Duration {
        self.live().cfg.budget
    }

    /// The chain and settings new HTLCs go to.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in a new chain and settings, atomically: HTLCs whose decision started
    /// on the old chain finish there (they hold it), new HTLCs use the new one. The
    /// old chain's threads stop once its last HTLC is decided.
    pub fn swap(&self, chain: Chain, cfg: ChainConfig) {
        // Metric handles are registered before the write lock is taken.
        let metrics = self.metrics.as_ref().map(|m| {
            let old = self.live();
            Arc::new(m.chain(chain.names(), old.metrics.as_deref()))
        });
        let live = Arc::new(Live {
            chain,
            cfg,
            metrics,
        });
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        self.swaps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times a new chain was swapped in (reloads).
    pub fn swaps(&self) -> u64 {
        self.swaps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The metrics, when they are collected.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The health `/healthz` reports.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The audit log, when it is on.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// LND accepted stream `gen` (its response headers came, or the call stayed
    /// open without an error: LND sends the headers only with the first HTLC).
    /// Marks the stream up for `/healthz` and the metrics; idempotent.
    pub fn stream_accepted(&self, gen: StreamGen) {
        let mut st = self.lock();
        let Some(cur) = st.current.as_mut().filter(|c| c.gen == gen && !c.accepted) else {
            return;
        };
        cur.accepted = true;
        drop(st);
        self.health.set_stream_up(true);
        if let Some(m) = &self.metrics {
            m.stream_connected();
        }
    }

    /// Why the last connection attempt or stream failed, for `/healthz`.
    pub fn stream_failed(&self, reason: String) {
        self.health.set_stream_error(reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the state is
        // still consistent (every update is a single insert/remove), so go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new stream whose answers go to `tx`; it replaces any earlier one.
    pub fn open_stream(
        &self,
        tx: mpsc::UnboundedSender<ForwardHtlcInterceptResponse>,
    ) -> StreamGen {
        let mut st = self.lock();
        let gen = st.next_gen;
        st.next_gen += 1;
        st.current = Some(CurrentStream {
            gen,
            tx,
            pending: HashSet::new(),
            last_answered: None,
            recent: VecDeque::new(),
            accepted: false,
        });
        gen
    }

    /// Forgets stream `gen`: nothing more is sent on it. Returns what is known of
    /// its last answers.
    pub fn close_stream(&self, gen: StreamGen) -> ClosedStream {
        let mut st = self.lock();
        if st.current.as_ref().is_none_or(|c| c.gen != gen) {
            return ClosedStream::default();
        }
        let cur = st.current.take().expect("checked above");
        drop(st);
        if cur.accepted {
            self.health.set_stream_up(false);
            if let Some(m) = &self.metrics {
                m.stream_disconnected();
            }
        }
        let now = Instant::now();
        ClosedStream {
            last_answered: cur.last_answered,
            recent: cur
                .recent
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= ON_CHAIN_WINDOW)
                .map(|(_, k)| *k)
                .collect(),
        }
    }

    /// LND ended the stream because it holds one of `keys` in the on-chain flow and
    /// refused a resume or fail for it. From now on (also after a restart) these keys
    /// are answered only with a settle, or not at all: answering the on-chain one
    /// with resume or fail again would end the stream on every reconnect. A key
    /// wrongly included stays held until LND resolves it or fails it back at its
    /// auto_fail_height; neither loses money.
    pub fn mark_on_chain(&self, keys: &[CircuitKey]) {
        if let Err(e) = self.journal.mark_on_chain(keys) {
            tracing::error!("cannot journal on-chain keys: {e}");
        }
        let mut st = self.lock();
        st.on_chain.extend(keys.iter().copied());
    }

    /// Number of HTLCs whose chain decision is running.
    pub fn in_flight(&self) -> usize {
        self.lock().inflight.len()
    }

    /// Number of requests on stream `gen` not answered yet.
    pub fn pending(&self, gen: StreamGen) -> usize {
        let st = self.lock();
        st.current
            .as_ref()
            .filter(|c| c.gen == gen)
            .map_or(0, |c| c.pending.len())
    }

    /// Waits until every request on stream `gen` is answered, or `limit` passes.
    pub async fn drain(&self, gen: StreamGen, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.answered.notified();
            let left = self.pending(gen);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending(gen);
            }
        }
    }

    /// Handles one request from LND on stream `gen`.
    pub fn on_request(self: &Arc<Self>, gen: StreamGen, req: ForwardHtlcInterceptRequest) {
        let received = Instant::now();
        if let Some(m) = &self.metrics {
            m.htlc_seen();
        }
        let input = match HtlcInput::from_request(req) {
            Ok(i) => i,
            Err(e) => {
                // Without a key no answer is possible; LND always sets it.
                tracing::error!("ignoring a request from LND: {e}");
                return;
            }
        };
        let key = input.key;
        let mut st = self.lock();
        let State {
            on_chain,
            inflight,
            current,
            ..
        } = &mut *st;
        let Some(cur) = current.as_mut().filter(|c| c.gen == gen) else {
            return;
        };
        if cur.pending.contains(&key) {
            // LND sent the key twice on one stream while we decide: one answer.
            tracing::debug!(circuit = %key, "duplicate request while deciding; answering once");
            return;
        }
        // Read under the lock: a decision completing concurrently journals its
        // verdict before it takes the lock, so either we see its verdict here or it
        // sees our pending entry.
        let journaled = match self.journal.get(key) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(circuit = %key, "{e}; deciding the HTLC again");
                None
            }
        };
        if on_chain.contains(&key) && !matches!(journaled, Some(Verdict::Settle(_))) {
            // LND holds this key on-chain and refused our resume/fail: answering it
            // again with anything but a settle would end the stream again.
            tracing::warn!(circuit = %key, "HTLC held in LND's on-chain flow: not answered (only a settle would be accepted); LND resolves it on-chain");
            return;
        }
        if let Some(verdict) = journaled {
            // Replay: the verdict it got before, never a new decision.
            let _ = cur.tx.send(verdict.to_response(key));
            note_answer(cur, key, &verdict);
            tracing::debug!(circuit = %key, verdict = %verdict, "replayed HTLC answered with its journaled verdict");
            drop(st);
            self.answered.notify_waiters();
            if let Some(m) = &self.metrics {
                m.replayed(&verdict);
            }
            let decision = Decision {
                verdict,
                by: DecidedBy::Replay,
                trace: Vec::new(),
                elapsed: Duration::ZERO,
            };
            if let Some(a) = &self.audit {
                a.record(Arc::new(input), decision.clone());
            }
            self.observe(DecisionEvent {
                key,
                input: None,
                decision,
            });
            return;
        }
        cur.pending.insert(key);
        if !inflight.insert(key) {
            // Still being decided since an earlier stream: its result is sent here.
            return;
        }
        drop(st);
        let gate = self.clone();
        let input = Arc::new(input);
        tokio::spawn(async move {
            let (decision, live) = gate.decide(input.clone()).await;
            gate.complete(input, decision, &live, received).await;
        });
    }

    /// Runs the chain under the budget; returns the decision and the chain that
    /// made it.
    async fn decide(&self, input: Arc<HtlcInput>) -> (Decision, Arc<Live>) {
        let started = Instant::now();
        let live = self.live();
        let mut rx = live.chain.decide(input.clone());
        let decision = match tokio::time::timeout(live.cfg.budget, &mut rx).await {
            Ok(Ok(d)) => d,
            outcome => {
                if outcome.is_err() {
                    if let Some(m) = self.metrics.clone() {
                        // The late result is never sent, but its faults and costs
                        // are counted when it comes.
                        let chain_metrics = live.metrics.clone();
                        tokio::spawn(async move {
                            if let Ok(late) = rx.await {
                                m.trace(chain_metrics.as_deref(), &late.trace);
                            }
                        });
                    }
                }
                // The chain did not answer in time (or lost the job): LND is holding
                // the HTLC, so send the configured safe verdict now; the late result
                // is discarded by the chain. Resume forwards as LND would without an
                // interceptor, fail returns the HTLC: neither loses money.
                let verdict = live.cfg.on_budget.verdict();
                tracing::warn!(
                    circuit = %input.key,
                    verdict = %verdict,
                    budget_ms = live.cfg.budget.as_millis() as u64,
                    lost = outcome.is_ok(),
                    "chain budget exhausted; sending on_budget verdict"
                );
                Decision {
                    verdict,
                    by: DecidedBy::Budget,
                    trace: Vec::new(),
                    elapsed: started.elapsed(),
                }
            }
        };
        (decision, live)
    }

    /// Journals a decision, then sends it if the current stream waits for the key;
    /// then tells the observers.
    async fn complete(
        &self,
        input: Arc<HtlcInput>,
        decision: Decision,
        live: &Live,
        received: Instant,
    ) {
        let key = input.key;
        if let Err(e) = self
            .journal
            .record(key, &decision.verdict, input.record.auto_fail_height)
            .await
        {
            // LND is holding the HTLC: answering without the journal entry is
            // better than not answering (a replay after a crash would be decided
            // again). Logged loudly.
            tracing::error!(circuit = %key, "{e}; sending the verdict without a journal entry");
        }
        let mut st = self.lock();
        st.inflight.remove(&key);
        if let Some(cur) = st.current.as_mut() {
            if cur.pending.remove(&key) {
                let _ = cur.tx.send(decision.verdict.to_response(key));
                note_answer(cur, key, &decision.verdict);
            }
        }
        drop(st);
        self.answered.notify_waiters();
        let r = &input.record;
        tracing::debug!(
            circuit = %key,
            scid_in = %Scid(key.chan_id),
            scid_out = %Scid(r.outgoing_requested_chan_id),
            in_msat = r.incoming_amount_msat,
            out_msat = r.outgoing_amount_msat,
            verdict = %decision.verdict,
            by = %decision.by,
            us = decision.elapsed.as_micros() as u64,
            "decided"
        );
        if let Some(m) = &self.metrics {
            m.decided(live.metrics.as_deref(), &decision, received.elapsed());
        }
        match (&self.audit, &self.observer) {
            (Some(a), None) => a.record(input, decision),
            (audit, _) => {
                if let Some(a) = audit {
                    a.record(input.clone(), decision.clone());
                }
                self.observe(DecisionEvent {
                    key,
                    input: Some(input),
                    decision,
                });
            }
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn observe(&self, ev: DecisionEvent) {
        if let Some(o) = &self.observer {
            let _ = o.send(ev);
        }
    }
}

/// Remembers an answer sent on `cur`: the last key, and resume/fail answers for the
/// on-chain window (a settle is never refused for being on-chain).
fn note_answer(cur: &mut CurrentStream, key: CircuitKey, verdict: &Verdict) {
    cur.last_answered = Some(key);
    if matches!(verdict, Verdict::Settle(_)) {
        return;
    }
    let now = Instant::now();
    while cur.recent.len() >= RECENT_MAX
        || cur
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > ON_CHAIN_WINDOW)
    {
        cur.recent.pop_front();
    }
    cur.recent.push_back((now, key));
}
