//! `circuitbreaker`: per-peer limits on in-flight HTLCs and on their rate, like
//! LND's circuitbreaker (github.com/lightningequipment/circuitbreaker).
//!
//! Each HTLC is counted against the peer at the other end of its incoming
//! channel (from the host's node context, grant `node`):
//!
//! - at most `max_pending` of the peer's HTLCs in flight at once (0: no limit);
//! - a token bucket of `burst` tokens refilled at `max_hourly_rate` per hour
//!   (0: no rate limit); each HTLC let through takes a token.
//!
//! An HTLC within the limits is answered `next` (the rest of the chain decides)
//! and counted in flight until an outcome resolves it; so is a queued HTLC the
//! host lets through itself (its `forwarded` outcome). Beyond the limits the
//! peer's mode applies: `fail` fails it (TEMPORARY_CHANNEL_FAILURE), `queue`
//! holds it in the peer's FIFO queue until a slot and a token free up,
//! `queue-peer-initiated` queues only on channels the peer opened (else fails),
//! `block` fails every HTLC of the peer.
//!
//! All state lives in the host's `kv` store (grant `kv`, layout in [`state`]),
//! so limits hold across reloads and restarts. A clock that goes back refills
//! and forgets nothing for the time it went back: buckets and entries stamped
//! in the future are re-stamped at the corrected time. See README.md for the
//! config.

#![warn(missing_docs)]

pub mod config;
pub mod state;

use std::collections::BTreeSet;

use htlcgate_sdk::{
    export_plugin, kv, node, now_unix_ms, CircuitKey, Config, Htlc, Outcome, OutcomeKind, Plugin,
    Scid, Verdict,
};

use config::{Limits, Settings};
use state::{Bucket, ChanPeer, InFlight, PeerLists, Queued, MAX_ENTRIES};

/// How many channels the "unknown channel" warning remembers before it starts
/// over (bounds the memory an attacker opening channels could make it use).
const WARNED_MAX: usize = 1024;

/// The plugin: its settings and the channels it has warned about.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// What the config says.
    settings: Settings,
    /// Channels already warned about as unknown (at most [`WARNED_MAX`]).
    warned: BTreeSet<u64>,
}

/// One decision's view of a peer: its limits, lists and (once needed) bucket.
struct PeerView<'a> {
    /// The settings.
    settings: &'a Settings,
    /// The peer and whether this node opened the incoming channel.
    chan_peer: ChanPeer,
    /// The incoming channel.
    chan: Scid,
    /// The peer's limits.
    limits: Limits,
    /// The peer's in-flight list and queue.
    lists: PeerLists,
    /// The peer's token bucket, loaded on first use.
    bucket: Option<Bucket>,
    /// The bucket changed.
    bucket_dirty: bool,
    /// Now, ms since the epoch.
    now_ms: u64,
}

impl PeerView<'_> {
    /// True when another HTLC may be in flight.
    fn slot_free(&self) -> bool {
        self.limits.max_pending == 0 || self.lists.inflight.len() < self.limits.max_pending as usize
    }

    /// The peer's bucket, read from the store the first time.
    fn bucket(&mut self) -> Result<&mut Bucket, kv::KvError> {
        let bucket = match self.bucket.take() {
            Some(b) => b,
            None => {
                let (b, went_back) = Bucket::load(
                    &self.chan_peer.peer,
                    self.now_ms,
                    self.limits.max_hourly_rate,
                    self.limits.burst,
                )?;
                // Re-anchored at a clock that went back: stored either way.
                self.bucket_dirty |= went_back;
                b
            }
        };
        Ok(self.bucket.insert(bucket))
    }

    /// True when the rate limit lets one more HTLC through now.
    fn token(&mut self) -> Result<bool, kv::KvError> {
        if self.limits.max_hourly_rate == 0 {
            return Ok(true);
        }
        Ok(self.bucket()?.has_token())
    }

    /// Lets `htlc` through: takes a token, counts it in flight, answers `next`.
    fn admit(&mut self, htlc: &Htlc) -> Result<Verdict, kv::KvError> {
        if self.limits.max_hourly_rate > 0 {
            self.bucket()?.take();
            self.bucket_dirty = true;
        }
        if self.limits.max_pending > 0 {
            self.chan_peer.store(self.chan)?;
            self.lists.add_inflight(InFlight {
                key: htlc.circuit_key(),
                expiry: htlc.incoming_expiry(),
                admitted_s: u32::try_from(self.now_ms / 1000).unwrap_or(u32::MAX),
            });
        }
        Ok(Verdict::next())
    }

    /// Mode `fail`: lets `htlc` through within the limits, else fails it.
    fn fail_mode(&mut self, htlc: &Htlc) -> Result<Verdict, kv::KvError> {
        if !self.slot_free() {
            htlcgate_sdk::debug!(
                "{}: failed, peer {} has {} HTLCs in flight (max_pending)",
                htlc.circuit_key(),
                self.chan_peer.peer,
                self.lists.inflight.len()
            );
            return Ok(Verdict::fail_temporary());
        }
        if !self.token()? {
            htlcgate_sdk::debug!(
                "{}: failed, peer {} is over {} HTLCs/hour (max_hourly_rate)",
                htlc.circuit_key(),
                self.chan_peer.peer,
                self.limits.max_hourly_rate
            );
            return Ok(Verdict::fail_temporary());
        }
        self.admit(htlc)
    }

    /// True when queue entry `e` has waited no longer than `queue_max_ms`.
    fn live(&self, e: &Queued) -> bool {
        self.now_ms.saturating_sub(e.since_ms) <= self.settings.queue_max_ms
    }

    /// Answers a queued HTLC asked about again (`pos` in the queue).
    fn queued(&mut self, htlc: &Htlc, pos: usize) -> Result<Verdict, kv::KvError> {
        let key = htlc.circuit_key();
        let entry = self.lists.queue[pos];
        if !self.limits.mode.queues(!self.chan_peer.initiator) || !self.live(&entry) {
            // Waited too long, or the mode no longer queues (a new config).
            self.lists.remove_queued(key);
            htlcgate_sdk::debug!(
                "{key}: leaves the queue after {} ms; deciding as in mode fail",
                self.now_ms.saturating_sub(entry.since_ms)
            );
            return self.fail_mode(htlc);
        }
        let head = self.lists.queue.iter().position(|e| self.live(e));
        if head == Some(pos) && self.slot_free() && self.token()? {
            self.lists.remove_queued(key);
            return self.admit(htlc);
        }
        Ok(Verdict::hold_ms(self.settings.queue_retry_ms))
    }

    /// Answers an HTLC seen for the first time by a peer whose mode queues.
    fn enqueue(&mut self, htlc: &Htlc) -> Result<Verdict, kv::KvError> {
        let live = self.lists.queue.iter().filter(|e| self.live(e)).count();
        if live == 0 && self.slot_free() && self.token()? {
            return self.admit(htlc);
        }
        if live >= self.settings.queue_max_len as usize {
            htlcgate_sdk::debug!(
                "{}: failed, queue of peer {} is full ({live} HTLCs, queue_max_len)",
                htlc.circuit_key(),
                self.chan_peer.peer
            );
            return Ok(Verdict::fail_temporary());
        }
        // Entries past queue_max_ms wait only for their HTLC's last ask: make
        // room by forgetting the oldest of them.
        while self.lists.queue.len() >= MAX_ENTRIES {
            let Some(old) = self.lists.queue.iter().find(|e| !self.live(e)).copied() else {
                return Ok(Verdict::fail_temporary());
            };
            self.lists.remove_queued(old.key);
        }
        self.chan_peer.store(self.chan)?;
        self.lists.enqueue(Queued {
            key: htlc.circuit_key(),
            since_ms: self.now_ms,
        });
        Ok(Verdict::hold_ms(self.settings.queue_retry_ms))
    }

    /// The verdict for `htlc` (state changes not yet stored).
    fn decide(&mut self, htlc: &Htlc) -> Result<Verdict, kv::KvError> {
        let key = htlc.circuit_key();
        if self.lists.is_inflight(key) {
            // Let through before (a replay): counted once.
            return Ok(Verdict::next());
        }
        let queued = self.lists.queue_position(key);
        if self.limits.mode == config::Mode::Block {
            self.lists.remove_queued(key);
            htlcgate_sdk::debug!("{key}: failed, peer {} is blocked", self.chan_peer.peer);
            return Ok(Verdict::fail_temporary());
        }
        match queued {
            Some(pos) => self.queued(htlc, pos),
            None if self.limits.mode.queues(!self.chan_peer.initiator) => self.enqueue(htlc),
            None => self.fail_mode(htlc),
        }
    }

    /// Writes what changed.
    fn store(&mut self) -> Result<(), kv::KvError> {
        if self.bucket_dirty {
            if let Some(b) = self.bucket {
                b.store(&self.chan_peer.peer)?;
            }
        }
        self.lists.store(&self.chan_peer.peer)
    }
}

impl CircuitBreaker {
    /// The settings read from the config.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The peer at the other end of `chan`: from the host's node context, else
    /// from the store while an entry names the channel.
    fn peer_of(chan: Scid) -> Result<Option<ChanPeer>, kv::KvError> {
        if let Some(info) = node::channel(chan) {
            return Ok(Some(ChanPeer {
                peer: info.peer,
                initiator: info.initiator,
            }));
        }
        ChanPeer::load(chan)
    }

    /// Warns, once per channel, that `htlc`'s channel is unknown.
    fn warn_unknown(&mut self, key: CircuitKey) {
        if self.warned.len() >= WARNED_MAX {
            self.warned.clear();
        }
        if self.warned.insert(key.chan_id) {
            htlcgate_sdk::warn!(
                "{key}: incoming channel {} unknown to the node context (not loaded yet, or no `node` grant?); its HTLCs pass with `next`, uncounted",
                key.chan()
            );
        }
    }

    /// Decides `htlc` at `now_ms`, reading and updating the store.
    pub fn decide_at(&mut self, htlc: &Htlc, now_ms: u64) -> Result<Verdict, kv::KvError> {
        let key = htlc.circuit_key();
        let Some(chan_peer) = CircuitBreaker::peer_of(key.chan())? else {
            self.warn_unknown(key);
            return Ok(Verdict::next());
        };
        let mut lists = PeerLists::load(&chan_peer.peer)?;
        let now_s = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        // Entries stamped in the future (the clock went back): stamped now.
        lists.restamp_future(now_ms, now_s);
        lists.expire_inflight(
            node::block_height(),
            now_s,
            self.settings.max_inflight_age_s,
        );
        // A queue entry not asked about for a while is gone (see
        // Settings::queue_forget_ms).
        lists.forget_queued(now_ms, self.settings.queue_forget_ms());
        let mut view = PeerView {
            settings: &self.settings,
            limits: self.settings.limits(&chan_peer.peer),
            chan_peer,
            chan: key.chan(),
            lists,
            bucket: None,
            bucket_dirty: false,
            now_ms,
        };
        let verdict = view.decide(htlc)?;
        view.store()?;
        Ok(verdict)
    }

    /// Takes `outcome` into account: a resolution ends an in-flight entry, any
    /// outcome ends a queue entry, and `Forwarded` for a queued HTLC (the host
    /// let it through while it waited: its hold cap or chain budget with a
    /// `resume` verdict) counts it in flight from now until its resolution.
    /// Outcomes for unknown keys change nothing.
    pub fn outcome_at(&mut self, outcome: &Outcome) -> Result<(), kv::KvError> {
        let key = outcome.incoming;
        // Only channels with entries have a stored peer.
        let Some(chan_peer) = ChanPeer::load(key.chan())? else {
            return Ok(());
        };
        let mut lists = PeerLists::load(&chan_peer.peer)?;
        let queued = lists.remove_queued(key);
        let mut changed = queued;
        if outcome.is_resolution() {
            changed |= lists.remove_inflight(key);
        } else if let OutcomeKind::Forwarded(amounts) = &outcome.kind {
            let counted = self.settings.limits(&chan_peer.peer).max_pending > 0;
            if queued && counted && !lists.is_inflight(key) {
                if lists.inflight.len() < MAX_ENTRIES {
                    let now_s = u32::try_from(now_unix_ms() / 1000).unwrap_or(u32::MAX);
                    lists.add_inflight(InFlight {
                        key,
                        // 0: LND did not say; the entry then expires by age.
                        expiry: match amounts.incoming_expiry {
                            0 => u32::MAX,
                            e => e,
                        },
                        admitted_s: now_s,
                    });
                    htlcgate_sdk::debug!(
                        "{key}: forwarded while queued (the host let it through); counted in flight"
                    );
                } else {
                    htlcgate_sdk::warn!(
                        "{key}: forwarded while queued, but peer {} already has {MAX_ENTRIES} HTLCs in flight (the most this plugin tracks); not counted",
                        chan_peer.peer
                    );
                }
            }
        }
        if changed {
            htlcgate_sdk::debug!("{key}: {} ends its entry", outcome.kind.name());
            lists.store(&chan_peer.peer)?;
        }
        Ok(())
    }
}

impl Plugin for CircuitBreaker {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(CircuitBreaker {
            settings: Settings::from_config(config)?,
            warned: BTreeSet::new(),
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        self.decide_at(htlc, now_unix_ms()).unwrap_or_else(|e| {
            // A broken store must not stop forwarding: no opinion.
            htlcgate_sdk::error!("{}: state not updated: {e}", htlc.circuit_key());
            Verdict::next()
        })
    }

    fn outcome(&mut self, outcome: &Outcome) {
        if let Err(e) = self.outcome_at(outcome) {
            htlcgate_sdk::error!("{}: outcome not recorded: {e}", outcome.incoming);
        }
    }
}

export_plugin!(CircuitBreaker);

#[cfg(test)]
mod tests;
