//! The bookkeeping between LND's stream and the chain: which HTLCs are being decided,
//! which the current stream still waits for, and the verdicts already sent.
//!
//! The one rule it exists for: every request LND sends on a stream gets exactly one
//! answer on that stream. Answering a key LND does not hold ("forward does not
//! exist") ends the whole stream, so:
//! - a request whose key is already pending on this stream is not answered again;
//! - a key decided before (an earlier stream, or earlier on this one) gets the
//!   remembered verdict at once, never a new decision (replay);
//! - a key whose decision is still running from an earlier stream waits for that
//!   decision instead of starting a second one;
//! - a decision that finishes after its stream closed is remembered, not sent: LND
//!   will replay the key on the next stream.
//!
//! All of this happens under one mutex, so "remove from pending" and "send" are one
//! step.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};

use crate::chain::{Chain, DecidedBy, Decision};
use crate::circuit::{CircuitKey, Scid};
use crate::config::ChainConfig;
use crate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ForwardHtlcInterceptResponse};
use crate::replay::ReplayCache;
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

/// Identifies one connection to LND.
pub type StreamGen = u64;

struct CurrentStream {
    gen: StreamGen,
    tx: mpsc::UnboundedSender<ForwardHtlcInterceptResponse>,
    /// Keys LND sent on this stream that are not answered yet.
    pending: HashSet<CircuitKey>,
    /// The last key answered, to name it when LND ends the stream.
    last_answered: Option<CircuitKey>,
}

struct State {
    cache: ReplayCache,
    /// Keys whose chain decision is running.
    inflight: HashSet<CircuitKey>,
    current: Option<CurrentStream>,
    next_gen: StreamGen,
}

/// Shared by the stream loop and the decision tasks.
pub struct Gate {
    chain: RwLock<Arc<Chain>>,
    cfg: ChainConfig,
    state: Mutex<State>,
    /// Woken whenever an answer is sent (for draining on shutdown).
    answered: Notify,
    observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
}

impl Gate {
    /// A gate over `chain` with the chain-wide settings in `cfg`; `observer`, if
    /// given, receives every decision.
    pub fn new(
        chain: Chain,
        cfg: ChainConfig,
        observer: Option<mpsc::UnboundedSender<DecisionEvent>>,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            chain: RwLock::new(Arc::new(chain)),
            state: Mutex::new(State {
                cache: ReplayCache::new(cfg.replay_cache),
                inflight: HashSet::new(),
                current: None,
                next_gen: 1,
            }),
            cfg,
            answered: Notify::new(),
            observer,
        })
    }

    /// The chain's wall-clock budget per HTLC.
    pub fn budget(&self) -> std::time::Duration {
        self.cfg.budget
    }

    /// The chain new HTLCs go to.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.read().expect("chain lock").clone()
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
        });
        gen
    }

    /// Forgets stream `gen`: nothing more is sent on it. Returns the last key
    /// answered on it, if any.
    pub fn close_stream(&self, gen: StreamGen) -> Option<CircuitKey> {
        let mut st = self.lock();
        if st.current.as_ref().is_some_and(|c| c.gen == gen) {
            return st.current.take().and_then(|c| c.last_answered);
        }
        None
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
    pub async fn drain(&self, gen: StreamGen, limit: std::time::Duration) -> usize {
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
            cache,
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
        if let Some(verdict) = cache.get(&key) {
            // Replay: the verdict it got before, never a new decision.
            let verdict = verdict.clone();
            let _ = cur.tx.send(verdict.to_response(key));
            cur.last_answered = Some(key);
            tracing::debug!(circuit = %key, verdict = %verdict, "replayed HTLC answered with its earlier verdict");
            drop(st);
            self.answered.notify_waiters();
            self.observe(DecisionEvent {
                key,
                input: None,
                decision: Decision {
                    verdict,
                    by: DecidedBy::Replay,
                    trace: Vec::new(),
                    elapsed: std::time::Duration::ZERO,
                },
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
            let decision = gate.decide(input.clone()).await;
            gate.complete(input, decision);
        });
    }

    /// Runs the chain under the budget.
    async fn decide(&self, input: Arc<HtlcInput>) -> Decision {
        let started = Instant::now();
        let rx = self.chain().decide(input.clone());
        match tokio::time::timeout(self.cfg.budget, rx).await {
            Ok(Ok(d)) => d,
            outcome => {
                // The chain did not answer in time (or lost the job): LND is holding
                // the HTLC, so send the configured safe verdict now; the late result
                // is discarded by the chain. Resume forwards as LND would without an
                // interceptor, fail returns the HTLC: neither loses money.
                let verdict = self.cfg.on_budget.verdict();
                tracing::warn!(
                    circuit = %input.key,
                    verdict = %verdict,
                    budget_ms = self.cfg.budget.as_millis() as u64,
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
        }
    }

    /// Records a decision and sends it if the current stream waits for the key.
    fn complete(&self, input: Arc<HtlcInput>, decision: Decision) {
        let key = input.key;
        let mut st = self.lock();
        st.cache.insert(key, decision.verdict.clone());
        st.inflight.remove(&key);
        if let Some(cur) = st.current.as_mut() {
            if cur.pending.remove(&key) {
                let _ = cur.tx.send(decision.verdict.to_response(key));
                cur.last_answered = Some(key);
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
        self.observe(DecisionEvent {
            key,
            input: Some(input),
            decision,
        });
    }

    fn observe(&self, ev: DecisionEvent) {
        if let Some(o) = &self.observer {
            let _ = o.send(ev);
        }
    }
}
