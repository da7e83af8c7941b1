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
//! A plugin may hold an HTLC (`hold`): the key stays pending and in flight (no
//! answer), and the chain is asked again later from the holding plugin, until a
//! verdict, the hold cap (`max_hold_ms` from arrival), the margin before the HTLC's
//! `auto_fail_height`, or shutdown; at those bounds the holder's `on_hold_expiry`
//! verdict is sent. A held key LND resolves by itself (an HTLC event for it) is
//! never answered: LND no longer holds it, and an answer would end the stream. A
//! reconnect keeps the hold (LND replays the key; it joins the pending set and the
//! hold's result is sent on the new stream); a restart re-decides it on replay.
//!
//! Outcomes of HTLCs htlcgate decided or holds (LND's HTLC events) are handed to
//! the live chain's plugins that export `outcome`.
//!
//! All of this happens under one mutex, so "remove from pending" and "send" are one
//! step.
//!
//! Observers (metrics, the audit log, an event channel) are told about a decision
//! only after its answer is queued for LND, without waiting on anything: they never
//! hold an answer back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use crate::audit::AuditLog;
use crate::chain::{Chain, DecidedBy, Decision, Direct, HoldRequest, Trace, Waiter};
use crate::circuit::{CircuitKey, Scid};
use crate::config::ChainConfig;
use crate::health::Health;
use crate::journal::Journal;
use crate::lnd::node::NodeContext;
use crate::lnd::outcome::HtlcOutcome;
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
    /// The node context: its block height bounds holds before `auto_fail_height`.
    pub node: Option<NodeContext>,
}

/// How the time a plugin holds an HTLC for passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HoldTime {
    /// Real time: the HTLC's task sleeps until the hold is over, and LND's
    /// events, the block height and shutdown can end it early (the daemon).
    #[default]
    Real,
    /// Simulated time, for `htlcgate replay`: nothing sleeps; each hold adds the
    /// time asked for to the HTLC's clock ([`HtlcInput::clock_ms`]) and to its
    /// time held, which `max_hold_ms` bounds as in the daemon (decisions take no
    /// time here). Without LND nothing else ends a hold.
    Simulated,
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

/// What can end one hold early.
#[derive(Debug, Default)]
struct HoldSignal {
    /// LND resolved the HTLC itself (an HTLC event came for it): never answer it.
    resolved_by_lnd: AtomicBool,
    /// Wakes the hold's task (resolved, or shutting down).
    wake: Notify,
}

/// How a hold's wait ended.
#[derive(Debug)]
enum HoldEnd {
    /// Time to ask the chain again.
    Again,
    /// The hold cannot go on (the reason): send the holder's `on_hold_expiry`.
    Expired(&'static str),
    /// LND no longer holds the HTLC: send nothing.
    ResolvedByLnd,
    /// The block height reached the HTLC's `auto_fail_height`: LND fails it itself
    /// (perhaps already has); `run_htlc` sends nothing.
    PastAutoFail,
}

/// Most keys remembered as resolved by LND itself (awaiting their final event).
const LND_RESOLVED_MAX: usize = 10_000;

struct State {
    /// Keys LND resolved itself while htlcgate held or decided them, until their
    /// final HTLC event (they are not in the journal, yet their outcomes are ours).
    lnd_resolved: HashSet<CircuitKey>,
    /// Keys left unmarked after an on-chain refusal because their incoming
    /// channel was active (see [`Gate::mark_on_chain_suspects`]).
    cleared_on_chain: HashSet<CircuitKey>,
    /// Keys LND resolved itself while their chain decision ran, before any hold:
    /// a hold that starts for one ends at once (nothing is left to hold).
    resolved_in_flight: HashSet<CircuitKey>,
    /// Keys held by a plugin's `hold`, and what ends each hold early.
    holds: HashMap<CircuitKey, Arc<HoldSignal>>,
    /// Keys LND holds in the on-chain flow: answered only with a settle.
    on_chain: HashSet<CircuitKey>,
    /// Of those, the marks read from the journal at start and not marked again
    /// since: only such a mark can be another HTLC's (a journal kept across a
    /// reset), dropped when the key's journaled verdict is for another HTLC. A
    /// mark made by this process is the current HTLC's own.
    on_chain_from_file: HashSet<CircuitKey>,
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
    /// The longest chain budget swapped in since start, in ms: an HTLC still
    /// deciding on an older chain ends within it.
    longest_budget_ms: std::sync::atomic::AtomicU64,
    journal: Journal,
    state: Mutex<State>,
    /// Woken whenever an answer is sent (for draining on shutdown).
    answered: Notify,
    observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
    metrics: Option<Arc<Metrics>>,
    health: Arc<Health>,
    audit: Option<AuditLog>,
    node: Option<NodeContext>,
    /// How holds wait.
    hold_time: HoldTime,
    /// Shutting down: holds end with their `on_hold_expiry` verdict.
    stopping: AtomicBool,
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
        Gate::with_hold_time(chain, cfg, journal, opts, HoldTime::Real)
    }

    /// A gate as [`Gate::with_options`] whose holds pass in `hold_time`
    /// ([`HoldTime::Simulated`] for `htlcgate replay`).
    pub fn with_hold_time(
        chain: Chain,
        cfg: ChainConfig,
        journal: Journal,
        opts: GateOptions,
        hold_time: HoldTime,
    ) -> Arc<Gate> {
        let GateOptions {
            observer,
            metrics,
            health,
            audit,
            node,
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
        let longest_budget_ms = std::sync::atomic::AtomicU64::new(cfg.budget.as_millis() as u64);
        Arc::new(Gate {
            longest_budget_ms,
            live: RwLock::new(Arc::new(Live {
                chain,
                cfg,
                metrics: chain_metrics,
            })),
            swaps: std::sync::atomic::AtomicU64::new(0),
            journal,
            state: Mutex::new(State {
                lnd_resolved: HashSet::new(),
                cleared_on_chain: HashSet::new(),
                resolved_in_flight: HashSet::new(),
                holds: HashMap::new(),
                on_chain_from_file: on_chain.clone(),
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
            node,
            hold_time,
            stopping: AtomicBool::new(false),
        })
    }

    /// The chain's wall-clock budget per HTLC.
    pub fn budget(&self) -> Duration {
        self.live().cfg.budget
    }

    /// The longest budget of any chain swapped in since start: every decision
    /// running now (some may still be on an older chain) ends within it.
    pub fn longest_budget(&self) -> Duration {
        Duration::from_millis(self.longest_budget_ms.load(Ordering::Relaxed))
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
        self.longest_budget_ms
            .fetch_max(cfg.budget.as_millis() as u64, Ordering::Relaxed);
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

    /// LND ended the stream because it refused a resume or fail for one of
    /// `suspects` (the answers sent just before) as held in the on-chain flow:
    /// marks those that can be it ([`Gate::mark_on_chain`]) and returns them.
    ///
    /// The refused key's incoming channel is force-closed, so it is not active: a
    /// suspect whose incoming channel the node context knows as active is left
    /// unmarked. LND handles answers in order, so the answers queued after the
    /// refused one were never processed; marked, they would stay held until their
    /// auto_fail_height (a fail where a resume was decided, hours of a held slot).
    /// Should LND refuse again while such a key is among the suspects (a channel
    /// view behind LND's), every suspect is marked: the stream ends at most twice.
    /// Without the node context's channels every suspect is marked.
    pub fn mark_on_chain_suspects(&self, suspects: &[CircuitKey]) -> Vec<CircuitKey> {
        let active: Vec<bool> = suspects
            .iter()
            .map(|k| {
                self.node
                    .as_ref()
                    .and_then(|n| n.channel(Scid(k.chan_id)))
                    .is_some_and(|c| c.active)
            })
            .collect();
        let mut st = self.lock();
        let again = suspects.iter().any(|k| st.cleared_on_chain.contains(k));
        let (mut marked, mut cleared) = (Vec::new(), Vec::new());
        for (k, active) in suspects.iter().zip(active) {
            if active && !again {
                cleared.push(*k);
            } else {
                marked.push(*k);
            }
        }
        if st.cleared_on_chain.len() + cleared.len() > LND_RESOLVED_MAX {
            st.cleared_on_chain.clear();
        }
        st.cleared_on_chain.extend(cleared.iter().copied());
        drop(st);
        if !cleared.is_empty() {
            let list: Vec<String> = cleared.iter().map(|k| k.to_string()).collect();
            tracing::info!(keys = %list.join(","), "not held on-chain (their incoming channels are active): answered again when LND replays them");
        }
        self.mark_on_chain(&marked);
        marked
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
        for k in keys {
            st.on_chain_from_file.remove(k);
        }
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
        self.on_request_at(gen, req, None);
    }

    /// As [`Gate::on_request`], with the plugins' clock reading `clock_ms` (ms
    /// since the Unix epoch) while they decide it: `htlcgate replay` passes the
    /// time a line recorded; `None` is the real clock (the daemon).
    pub fn on_request_at(
        self: &Arc<Self>,
        gen: StreamGen,
        req: ForwardHtlcInterceptRequest,
        clock_ms: Option<u64>,
    ) {
        let received = Instant::now();
        if let Some(m) = &self.metrics {
            m.htlc_seen();
        }
        let input = match HtlcInput::from_request(req).map(|i| i.at(clock_ms)) {
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
            on_chain_from_file,
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
        let journaled = match self.journal.get_entry(key) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(circuit = %key, "{e}; deciding the HTLC again");
                None
            }
        };
        // The journal knows keys, not HTLCs: a journal kept where its keys name
        // other HTLCs (a regtest reset, a config directory moved to another node
        // or chain) may hold another HTLC's verdict for this key. An entry
        // recorded for another payment hash is not this HTLC's verdict: it is
        // decided (and its verdict replaces the entry and its on-chain mark). An
        // entry from before payment hashes were recorded is trusted, except a
        // settle whose preimage does not hash to this payment hash: sending it
        // would settle with a wrong preimage (never allowed: it loses the forward
        // or ends the stream).
        let journaled = journaled.and_then(|(v, hash)| {
            let other_htlc = match (&v, hash) {
                (_, Some(h)) => h.as_slice() != input.record.payment_hash.as_slice(),
                (Verdict::Settle(p), None) => {
                    crate::verdict::check_preimage(p, &input.record.payment_hash).is_err()
                }
                (_, None) => false,
            };
            if other_htlc {
                tracing::error!(circuit = %key, verdict = %v, "the journal's verdict for this key was recorded for another HTLC (another payment hash): the journal was kept from another node or chain, or across a reset; deciding this HTLC instead");
                // Its on-chain mark, if read from the journal at start, was that
                // other HTLC's; one made since is this HTLC's own (LND refused
                // an answer for it) and stays.
                if on_chain_from_file.remove(&key) {
                    on_chain.remove(&key);
                }
                return None;
            }
            Some(v)
        });
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
                hold: None,
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
            gate.run_htlc(input, received).await;
        });
    }

    /// Decides one HTLC to its verdict, holding it as long as plugins ask (and
    /// the bounds allow), then journals and sends the verdict.
    async fn run_htlc(self: Arc<Self>, mut input: Arc<HtlcInput>, received: Instant) {
        let key = input.key;
        let mut live = self.live();
        let mut stage = 0;
        let mut signal: Option<Arc<HoldSignal>> = None;
        // The hold saw the height reach `auto_fail_height` (kept: the height can
        // go down again in a reorg, and the answer must stay withheld).
        let mut past_auto_fail = false;
        // Time held so far, with simulated hold time.
        let mut held_for = Duration::ZERO;
        // Set by whoever answers this HTLC: the chain's thread (see `direct`) or
        // this task (budget, hold expiry).
        let claim = Arc::new(AtomicBool::new(false));
        let decision = loop {
            // An HTLC never held is journaled and answered from the thread where
            // the chain reaches its verdict (no wake-up of this task in between);
            // a held one comes back here, which ends its hold first.
            let direct = signal.is_none().then(|| {
                let (gate, input, live) = (self.clone(), input.clone(), live.clone());
                Direct {
                    claim: claim.clone(),
                    finish: Box::new(move |decision, waiter| {
                        gate.journal_then_answer(input, decision, live, received, waiter)
                    }),
                }
            });
            let Some(mut decision) = self
                .decide_at(input.clone(), stage, &live, direct, &claim)
                .await
            else {
                // The chain's thread won the claim: it journals and answers.
                return;
            };
            let Some(hold) = decision.hold.take() else {
                break decision;
            };
            let sig = signal.get_or_insert_with(|| self.start_hold(key)).clone();
            if let Some(m) = &self.metrics {
                m.held(&hold.plugin);
            }
            tracing::debug!(circuit = %key, plugin = &*hold.plugin, after_ms = hold.after.as_millis() as u64, attempt = input.record.attempt, "HTLC held by plugin");
            let end = match self.hold_time {
                HoldTime::Real => self.wait_hold(&input, &hold, received, &live, &sig).await,
                HoldTime::Simulated => simulated_hold(&hold, &mut held_for, live.cfg.max_hold),
            };
            match end {
                // This round's faults and costs never reach `answer`: counted now.
                HoldEnd::Again => self.count_round(&live, &decision.trace),
                HoldEnd::Expired(why) => {
                    tracing::info!(circuit = %key, plugin = &*hold.plugin, verdict = %decision.verdict, attempt = input.record.attempt, "hold ended ({why}): sending the plugin's on_hold_expiry verdict");
                    decision.by = DecidedBy::HoldExpiry(hold.plugin);
                    break decision;
                }
                HoldEnd::ResolvedByLnd => {
                    tracing::info!(circuit = %key, plugin = &*hold.plugin, "held HTLC resolved by LND itself; it gets no answer");
                    self.count_round(&live, &decision.trace);
                    self.end_hold(key);
                    self.abandon(key);
                    return;
                }
                // Left to LND below, with a hold that ended while re-deciding.
                HoldEnd::PastAutoFail => {
                    past_auto_fail = true;
                    break decision;
                }
            }
            // A reload meanwhile: the new chain is asked from its start (the
            // holder's position means nothing there).
            let now = self.live();
            stage = if Arc::ptr_eq(&now, &live) {
                hold.stage
            } else {
                0
            };
            live = now;
            let mut again = input.with_attempt(input.record.attempt.saturating_add(1));
            if self.hold_time == HoldTime::Simulated {
                // The plugins' clock moved on by the hold.
                again.clock_ms = again
                    .clock_ms
                    .map(|ms| ms.saturating_add(hold.after.as_millis() as u64));
            }
            input = Arc::new(again);
        };
        if signal.is_some() {
            self.end_hold(key);
            if past_auto_fail || self.near_auto_fail(&input, 0) {
                // LND announces a block before it fails what is due at it, so an
                // answer now could arrive after that failure and end the stream
                // ("forward does not exist"); unanswered, LND fails the HTLC back
                // itself, as it would without an interceptor: no money moves
                // either way. (Reached while held, or while the chain decided again.)
                tracing::warn!(circuit = %key, auto_fail_height = input.record.auto_fail_height, "held HTLC reached its auto_fail_height (hold_margin_blocks was skipped, e.g. several blocks at once): left to LND, which fails it back; no answer");
                self.count_round(&live, &decision.trace);
                self.abandon(key);
                return;
            }
        }
        self.complete(input, decision, &live, received).await;
    }

    /// Counts the plugin steps of one chain round whose decision is not answered
    /// (a hold, or an HTLC left to LND): [`Metrics::decided`] counts only the
    /// answered round's, so each round reaches the metrics exactly once.
    fn count_round(&self, live: &Live, trace: &[Trace]) {
        if let Some(m) = &self.metrics {
            m.trace(live.metrics.as_deref(), trace);
        }
    }

    /// Registers a hold of `key`.
    fn start_hold(&self, key: CircuitKey) -> Arc<HoldSignal> {
        let sig = Arc::new(HoldSignal::default());
        let mut st = self.lock();
        if st.resolved_in_flight.remove(&key) {
            // LND resolved it while the chain decided: the hold ends at once.
            sig.resolved_by_lnd.store(true, Ordering::Release);
        }
        st.holds.insert(key, sig.clone());
        drop(st);
        if let Some(m) = &self.metrics {
            m.holding(1);
        }
        sig
    }

    /// Forgets the hold of `key`.
    fn end_hold(&self, key: CircuitKey) {
        if self.lock().holds.remove(&key).is_some() {
            if let Some(m) = &self.metrics {
                m.holding(-1);
            }
        }
    }

    /// Forgets `key` without answering it (LND resolved it itself).
    fn abandon(&self, key: CircuitKey) {
        let mut st = self.lock();
        st.inflight.remove(&key);
        st.resolved_in_flight.remove(&key);
        if let Some(cur) = st.current.as_mut() {
            cur.pending.remove(&key);
        }
        drop(st);
        self.answered.notify_waiters();
    }

    /// Waits out one hold: until its time to ask again, or until it must end.
    async fn wait_hold(
        &self,
        input: &HtlcInput,
        hold: &HoldRequest,
        received: Instant,
        live: &Live,
        sig: &HoldSignal,
    ) -> HoldEnd {
        let cap = received + live.cfg.max_hold;
        let again = Instant::now() + hold.after;
        loop {
            if sig.resolved_by_lnd.load(Ordering::Acquire) {
                return HoldEnd::ResolvedByLnd;
            }
            if self.near_auto_fail(input, 0) {
                return HoldEnd::PastAutoFail;
            }
            if self.stopping.load(Ordering::Acquire) {
                return HoldEnd::Expired("htlcgate is shutting down");
            }
            if self.near_auto_fail(input, live.cfg.hold_margin_blocks) {
                return HoldEnd::Expired("hold_margin_blocks before auto_fail_height reached");
            }
            let now = Instant::now();
            if now >= cap {
                return HoldEnd::Expired("max_hold_ms reached");
            }
            if now >= again {
                return HoldEnd::Again;
            }
            // Wake at least every second to look at the block height.
            let until = again.min(cap).min(now + Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = sig.wake.notified() => {}
            }
        }
    }

    /// Whether the HTLC is within `margin` blocks of its `auto_fail_height` (when
    /// the height is known; without it only the hold cap bounds a hold).
    fn near_auto_fail(&self, input: &HtlcInput, margin: u32) -> bool {
        let Ok(auto_fail) = u32::try_from(input.record.auto_fail_height) else {
            return false;
        };
        if auto_fail == 0 {
            return false;
        }
        let height = self.node.as_ref().and_then(|n| n.height());
        height.is_some_and(|h| h.saturating_add(margin) >= auto_fail)
    }

    /// Shutting down: every hold ends now with its holder's `on_hold_expiry`
    /// verdict, so that the drain answers it (LND would otherwise resume held
    /// HTLCs on disconnect, past the plugin's policy).
    pub fn end_holds(&self) {
        self.stopping.store(true, Ordering::Release);
        let holds: Vec<_> = self.lock().holds.values().cloned().collect();
        for h in holds {
            h.wake.notify_one();
        }
    }

    /// Number of HTLCs held by plugins now.
    pub fn held(&self) -> usize {
        self.lock().holds.len()
    }

    /// An HTLC event from LND. If htlcgate decided the HTLC (now, earlier on
    /// this run, or before a restart: its verdict is in the journal) or a plugin
    /// holds it, the outcome goes to the live chain's plugins that export
    /// `outcome`; returns whether it did. A held HTLC LND resolved by itself ends
    /// its hold without an answer.
    pub fn on_outcome(&self, outcome: &HtlcOutcome) -> bool {
        let key = outcome.key;
        let (held, deciding, unanswered) = {
            let mut st = self.lock();
            // An event for a key still waiting for our answer means LND resolved
            // the HTLC itself (auto_fail_height, or it resumed held HTLCs when a
            // stream dropped): it no longer holds the key, and an answer now would
            // get "forward does not exist" and end the stream. Forget it; the
            // decision still finishes (and is journaled) but is not sent.
            let unanswered = st
                .current
                .as_mut()
                .is_some_and(|cur| cur.pending.remove(&key));
            let held = st.holds.get(&key).cloned();
            // Keys LND resolved itself are never journaled: remember them until
            // their final event so that every event of theirs reaches plugins.
            let mut known = if outcome.kind.is_final() {
                st.lnd_resolved.remove(&key)
            } else {
                st.lnd_resolved.contains(&key)
            };
            if unanswered && held.is_none() && st.inflight.contains(&key) {
                // A plugin may still answer `hold` for it: the hold must know.
                if st.resolved_in_flight.len() >= LND_RESOLVED_MAX {
                    st.resolved_in_flight.clear();
                }
                st.resolved_in_flight.insert(key);
            }
            if (unanswered || held.is_some()) && !outcome.kind.is_final() {
                if st.lnd_resolved.len() >= LND_RESOLVED_MAX {
                    st.lnd_resolved.clear();
                }
                st.lnd_resolved.insert(key);
                known = true;
            }
            (held, st.inflight.contains(&key) || known, unanswered)
        };
        if unanswered {
            tracing::warn!(circuit = %key, kind = outcome.kind.name(), "LND resolved the HTLC itself before htlcgate's answer; it gets no answer");
            self.answered.notify_waiters();
        }
        if let Some(sig) = &held {
            sig.resolved_by_lnd.store(true, Ordering::Release);
            sig.wake.notify_one();
        }
        let ours = held.is_some() || deciding || matches!(self.journal.get(key), Ok(Some(_)));
        if !ours {
            return false;
        }
        if let Some(m) = &self.metrics {
            m.outcome(outcome.kind.name());
        }
        tracing::debug!(circuit = %key, kind = outcome.kind.name(), held = held.is_some(), "outcome");
        let live = self.live();
        if live.chain.wants_outcomes() {
            let dropped = live
                .chain
                .outcome(Arc::new(crate::wasm::outcome::to_wit(outcome)));
            if dropped > 0 {
                tracing::warn!(circuit = %key, dropped, "a plugin's outcome queue is full: oldest outcomes dropped");
                if let Some(m) = &self.metrics {
                    m.outcomes_dropped(dropped as u64);
                }
            }
        }
        true
    }

    /// Asks the chain from `stage` on, within the budget. `None`: the chain's
    /// thread claimed the HTLC and answers it through `direct`.
    async fn decide_at(
        &self,
        input: Arc<HtlcInput>,
        stage: usize,
        live: &Arc<Live>,
        direct: Option<Direct>,
        claim: &AtomicBool,
    ) -> Option<Decision> {
        let started = Instant::now();
        let mut rx = live.chain.decide_direct(input.clone(), stage, direct);
        let decision = match tokio::time::timeout(live.cfg.budget, &mut rx).await {
            Ok(Ok(d)) => d,
            outcome => {
                if claim.swap(true, Ordering::AcqRel) {
                    // The chain reached its verdict first and answers it: sending
                    // the budget verdict as well would be a second answer.
                    return None;
                }
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
                    hold: None,
                    by: DecidedBy::Budget,
                    trace: Vec::new(),
                    elapsed: started.elapsed(),
                }
            }
        };
        Some(decision)
    }

    /// [`Gate::complete`] without a task: journals the decision, then (on the
    /// journal's writer thread, right after the commit) sends it.
    fn journal_then_answer(
        self: Arc<Self>,
        input: Arc<HtlcInput>,
        decision: Decision,
        live: Arc<Live>,
        received: Instant,
        waiter: Waiter,
    ) {
        let key = input.key;
        let verdict = decision.verdict.clone();
        let height = input.record.auto_fail_height;
        let gate = self.clone();
        self.journal
            .record_then_for(key, payment_hash(&input), &verdict, height, move |result| {
                if let Err(e) = result {
                    // As in `complete`: answering without the entry beats leaving
                    // LND holding the HTLC.
                    tracing::error!(circuit = %key, "{e}; sending the verdict without a journal entry");
                }
                gate.answer(input, decision, &live, received);
                // After the answer: the task's wake-up shares the answer's.
                drop(waiter);
            });
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
            .record_for(
                key,
                payment_hash(&input),
                &decision.verdict,
                input.record.auto_fail_height,
            )
            .await
        {
            // LND is holding the HTLC: answering without the journal entry is
            // better than not answering. The journal keeps the verdict for replays
            // and writes it with its next commit; only a crash before that would
            // let a replay be decided again. Logged loudly.
            tracing::error!(circuit = %key, "{e}; sending the verdict without a journal entry");
        }
        self.answer(input, decision, live, received);
    }

    /// Sends a journaled decision if the current stream waits for the key; then
    /// tells the metrics, the audit log and the observers.
    fn answer(&self, input: Arc<HtlcInput>, decision: Decision, live: &Live, received: Instant) {
        let key = input.key;
        let mut st = self.lock();
        st.inflight.remove(&key);
        st.resolved_in_flight.remove(&key);
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

/// One hold in simulated time ([`HoldTime::Simulated`]): as [`Gate::wait_hold`]
/// with no time spent deciding. The hold ends at `max_hold` (`cap`) when the next
/// ask would come at or after it (the daemon's hold would reach the cap first);
/// otherwise its time is added to `held_for` and the chain is asked again.
fn simulated_hold(hold: &HoldRequest, held_for: &mut Duration, cap: Duration) -> HoldEnd {
    let again = held_for.saturating_add(hold.after);
    if again >= cap {
        return HoldEnd::Expired("max_hold_ms reached");
    }
    *held_for = again;
    HoldEnd::Again
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

/// The HTLC's payment hash as the journal records it (LND's are 32 bytes).
fn payment_hash(input: &HtlcInput) -> Option<[u8; 32]> {
    input.record.payment_hash.as_slice().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_hold_ends_when_its_next_ask_would_reach_the_cap() {
        let hold = |ms| HoldRequest {
            stage: 0,
            plugin: Arc::from("p"),
            after: Duration::from_millis(ms),
        };
        let cap = Duration::from_millis(100);
        let mut held = Duration::ZERO;
        assert!(matches!(
            simulated_hold(&hold(40), &mut held, cap),
            HoldEnd::Again
        ));
        assert!(matches!(
            simulated_hold(&hold(40), &mut held, cap),
            HoldEnd::Again
        ));
        assert_eq!(held, Duration::from_millis(80));
        // 80 + 20 = 100: the daemon's hold reaches the cap as the ask falls due.
        assert!(matches!(
            simulated_hold(&hold(20), &mut held, cap),
            HoldEnd::Expired(_)
        ));
        assert_eq!(held, Duration::from_millis(80));
    }
}
