//! The node side of the mock LND ([`crate::mock_lnd::MockLnd`]): the calls behind
//! htlcgate's node context, served on the mock's TLS port with the same macaroon.
//!
//! - `lnrpc.Lightning`: `GetInfo`, `ListChannels`, `SubscribeChannelEvents`;
//! - `chainrpc.ChainNotifier`: `RegisterBlockEpochNtfn` (or `Unimplemented`, as an
//!   lnd built without the `chainrpc` tag answers);
//! - the state behind `routerrpc.Router/SubscribeHtlcEvents` (the Router service
//!   itself lives in `mock_lnd.rs` and delegates here).
//!
//! LND's behaviour reproduced (v0.21.2: `rpcserver.go`, `routerrpc/router_server.go`,
//! `chainrpc/chain_server.go`, the macaroon checks of `rpcperms`):
//! - each call needs the node's macaroon and a permission (GetInfo info:read;
//!   ListChannels, SubscribeChannelEvents, SubscribeHtlcEvents offchain:read;
//!   RegisterBlockEpochNtfn onchain:read); a denied permission is answered with
//!   status Unknown `permission denied`, as macaroon-bakery does;
//! - SubscribeHtlcEvents sends a `SubscribedEvent` first;
//! - SubscribeChannelEvents sends its response headers only with the first event
//!   (grpc-go), so the client's call completes only then;
//! - RegisterBlockEpochNtfn with an empty request sends the current tip at once;
//! - events are not queued for absent subscribers (LND does not replay them);
//! - when the mock stops, every stream ends with `Unavailable`.
//!
//! Tests drive it with the methods of [`MockNode`] (reached through
//! [`crate::mock_lnd::MockLnd::node`]): channels, balances, open/close/active
//! events, blocks, HTLC events by hand, denied permissions, and an automatic mode
//! that sends the events real LND sends after each answer the interceptor gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::lnd::proto::chainrpc::chain_notifier_server::{ChainNotifier, ChainNotifierServer};
use crate::lnd::proto::chainrpc::BlockEpoch;
use crate::lnd::proto::lnrpc::channel_event_update::{Channel as ChannelEvent, UpdateType};
use crate::lnd::proto::lnrpc::channel_point::FundingTxid;
use crate::lnd::proto::lnrpc::failure::FailureCode;
use crate::lnd::proto::lnrpc::lightning_server::{Lightning, LightningServer};
use crate::lnd::proto::lnrpc::{
    Chain, Channel, ChannelCloseSummary, ChannelCommitUpdate, ChannelEventSubscription,
    ChannelEventUpdate, ChannelPoint, GetInfoRequest, GetInfoResponse, Initiator,
    ListChannelsRequest, ListChannelsResponse,
};
use crate::lnd::proto::routerrpc::htlc_event::{Event, EventType};
use crate::lnd::proto::routerrpc::{
    FailureDetail, FinalHtlcEvent, ForwardEvent, ForwardFailEvent, ForwardHtlcInterceptRequest,
    HtlcEvent, HtlcInfo, LinkFailEvent, ResolveHoldForwardAction, SettleEvent, SubscribedEvent,
};
use crate::mock_lnd::{check_macaroon, sample_preimage, Key, Resolution};

/// Permission of GetInfo.
pub const INFO_READ: &str = "info:read";
/// Permission of ListChannels, SubscribeChannelEvents and SubscribeHtlcEvents.
pub const OFFCHAIN_READ: &str = "offchain:read";
/// Permission of RegisterBlockEpochNtfn.
pub const ONCHAIN_READ: &str = "onchain:read";
/// Permission of HtlcInterceptor.
pub const OFFCHAIN_WRITE: &str = "offchain:write";
/// What LND (macaroon-bakery) answers when the macaroon lacks a permission.
pub const MSG_PERMISSION_DENIED: &str = "permission denied";

/// The mock's block height at start.
pub const START_HEIGHT: u32 = 800_000;

/// The stream the mock sends on `SubscribeHtlcEvents`.
pub type HtlcEventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HtlcEvent, Status>> + Send + 'static>>;
/// The stream the mock sends on `SubscribeChannelEvents`.
pub type ChannelEventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<ChannelEventUpdate, Status>> + Send + 'static>>;
/// The stream the mock sends on `RegisterBlockEpochNtfn`.
pub type BlockEpochStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<BlockEpoch, Status>> + Send + 'static>>;

/// One subscriber's sender.
type Sub<T> = mpsc::UnboundedSender<Result<T, Status>>;

/// What happens downstream to an HTLC the interceptor resumed, in automatic mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Downstream {
    /// Forwarded, then settled downstream with [`sample_preimage`] of the key
    /// (the preimage of [`crate::mock_lnd::sample_request`]'s hash).
    Settle,
    /// Forwarded, then failed downstream: `ForwardFailEvent`.
    Fail,
    /// Refused at this node before it was added: `LinkFailEvent` with these reasons.
    LinkFail {
        /// The wire failure code.
        wire_failure: FailureCode,
        /// LND's failure detail.
        detail: FailureDetail,
        /// LND's failure text.
        failure_string: String,
    },
}

/// The automatic mode's settings.
#[derive(Clone, Debug)]
struct Auto {
    /// Default downstream result of a resumed HTLC.
    downstream: Downstream,
    /// Per-key override.
    per_key: HashMap<Key, Downstream>,
    /// Delay between the forward event and the downstream result.
    delay: Duration,
    /// The requests offered to the interceptor, for amounts and channels.
    offered: HashMap<Key, ForwardHtlcInterceptRequest>,
    /// Next outgoing HTLC index per outgoing channel.
    next_out: HashMap<u64, u64>,
}

/// The mutable state.
struct NodeState {
    /// `identity_pubkey` (hex).
    identity: String,
    /// The tip.
    height: u32,
    /// Open channels by chan_id.
    channels: BTreeMap<u64, Channel>,
    /// Permissions the macaroon lacks.
    denied: BTreeSet<String>,
    /// Whether the ChainNotifier sub-server is served.
    chain_notifier: bool,
    /// `SubscribeHtlcEvents` subscribers.
    htlc_subs: Vec<Sub<HtlcEvent>>,
    /// `SubscribeChannelEvents` subscribers.
    channel_subs: Vec<Sub<ChannelEventUpdate>>,
    /// `RegisterBlockEpochNtfn` subscribers.
    block_subs: Vec<Sub<BlockEpoch>>,
    /// Calls received (also refused ones), by method name.
    calls: BTreeMap<&'static str, u64>,
    /// Every HTLC event emitted (delivered or not).
    htlc_events: Vec<HtlcEvent>,
    /// Automatic mode, if on.
    auto: Option<Auto>,
}

/// State shared by the handle and the services.
struct NodeShared {
    /// Everything mutable; never held across an await.
    state: Mutex<NodeState>,
    /// The node's macaroon (the same as the interceptor's).
    macaroon: Vec<u8>,
    /// Whether automatic mode is on (checked without the lock on every offer).
    auto_on: AtomicBool,
}

/// The node side of the mock LND. Cheap to clone.
#[derive(Clone)]
pub struct MockNode {
    /// State shared with the services.
    shared: Arc<NodeShared>,
}

impl std::fmt::Debug for MockNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MockNode")
            .field("height", &s.height)
            .field("channels", &s.channels.len())
            .field("denied", &s.denied)
            .finish()
    }
}

impl MockNode {
    /// A node at height [`START_HEIGHT`], without channels, checking `macaroon`.
    pub fn new(macaroon: Vec<u8>) -> MockNode {
        let identity = format!("02{}", hex::encode(Sha256::digest(b"htlcgate mock node")));
        MockNode {
            shared: Arc::new(NodeShared {
                state: Mutex::new(NodeState {
                    identity,
                    height: START_HEIGHT,
                    channels: BTreeMap::new(),
                    denied: BTreeSet::new(),
                    chain_notifier: true,
                    htlc_subs: Vec::new(),
                    channel_subs: Vec::new(),
                    block_subs: Vec::new(),
                    calls: BTreeMap::new(),
                    htlc_events: Vec::new(),
                    auto: None,
                }),
                macaroon,
                auto_on: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `lnrpc.Lightning` service to add to the mock's server.
    pub fn lightning_server(&self) -> LightningServer<MockLightning> {
        LightningServer::new(MockLightning { node: self.clone() })
    }

    /// The `chainrpc.ChainNotifier` service to add to the mock's server.
    pub fn chain_notifier_server(&self) -> ChainNotifierServer<MockChainNotifier> {
        ChainNotifierServer::new(MockChainNotifier { node: self.clone() })
    }

    // ----- permissions -------------------------------------------------------

    /// The macaroon loses `permission` (e.g. [`OFFCHAIN_READ`]): calls needing it
    /// are answered `permission denied`.
    pub fn deny(&self, permission: &str) {
        self.lock().denied.insert(permission.to_owned());
    }

    /// The macaroon has `permission` again.
    pub fn allow(&self, permission: &str) {
        self.lock().denied.remove(permission);
    }

    /// Serve the ChainNotifier (`true`, default) or answer `Unimplemented` like an
    /// lnd built without the `chainrpc` tag.
    pub fn set_chain_notifier(&self, served: bool) {
        self.lock().chain_notifier = served;
    }

    /// How many times `method` (e.g. `"ListChannels"`) was called, refused calls included.
    pub fn calls(&self, method: &str) -> u64 {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// Checks the macaroon and `permission` for `method`, counting the call.
    pub(crate) fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
        permission: &str,
    ) -> Result<(), Status> {
        let denied = {
            let mut s = self.lock();
            *s.calls.entry(method).or_default() += 1;
            s.denied.contains(permission)
        };
        check_macaroon(request, &self.shared.macaroon)?;
        if denied {
            return Err(Status::unknown(MSG_PERMISSION_DENIED));
        }
        Ok(())
    }

    // ----- height ------------------------------------------------------------

    /// The tip.
    pub fn height(&self) -> u32 {
        self.lock().height
    }

    /// The node's public key (hex), as GetInfo reports it.
    pub fn identity_pubkey(&self) -> String {
        self.lock().identity.clone()
    }

    /// Sets the tip and notifies block subscribers of it.
    pub fn set_height(&self, height: u32) {
        let mut s = self.lock();
        s.height = height;
        let epoch = block_epoch(height);
        send_all(&mut s.block_subs, &epoch);
    }

    /// Mines `n` blocks: the tip advances one block at a time, each notified.
    pub fn mine(&self, n: u32) {
        let mut s = self.lock();
        for _ in 0..n {
            s.height += 1;
            let epoch = block_epoch(s.height);
            send_all(&mut s.block_subs, &epoch);
        }
    }

    // ----- channels ----------------------------------------------------------

    /// Replaces the channels without any event (as if they had always been there).
    pub fn set_channels(&self, channels: Vec<Channel>) {
        self.lock().channels = channels.into_iter().map(|c| (c.chan_id, c)).collect();
    }

    /// The open channels.
    pub fn channels(&self) -> Vec<Channel> {
        self.lock().channels.values().cloned().collect()
    }

    /// Opens a channel: OPEN_CHANNEL with the full channel.
    pub fn open_channel(&self, channel: Channel) {
        let mut s = self.lock();
        s.channels.insert(channel.chan_id, channel.clone());
        let update = ChannelEventUpdate {
            channel: Some(ChannelEvent::OpenChannel(channel)),
            r#type: UpdateType::OpenChannel as i32,
        };
        send_all(&mut s.channel_subs, &update);
    }

    /// Closes channel `scid`: CLOSED_CHANNEL with its summary. Returns whether it
    /// was open.
    pub fn close_channel(&self, scid: u64) -> bool {
        let mut s = self.lock();
        let Some(ch) = s.channels.remove(&scid) else {
            return false;
        };
        let summary = ChannelCloseSummary {
            channel_point: ch.channel_point.clone(),
            chan_id: ch.chan_id,
            remote_pubkey: ch.remote_pubkey.clone(),
            capacity: ch.capacity,
            close_height: s.height,
            close_type: 0,
            open_initiator: if ch.initiator {
                Initiator::Local as i32
            } else {
                Initiator::Remote as i32
            },
            close_initiator: Initiator::Local as i32,
            alias_scids: ch.alias_scids.clone(),
            zero_conf_confirmed_scid: ch.zero_conf_confirmed_scid,
        };
        let update = ChannelEventUpdate {
            channel: Some(ChannelEvent::ClosedChannel(summary)),
            r#type: UpdateType::ClosedChannel as i32,
        };
        send_all(&mut s.channel_subs, &update);
        true
    }

    /// Sets channel `scid` active or inactive: ACTIVE_CHANNEL / INACTIVE_CHANNEL with
    /// its funding outpoint (txid bytes). Returns whether the channel exists.
    pub fn set_active(&self, scid: u64, active: bool) -> bool {
        let mut s = self.lock();
        let Some(ch) = s.channels.get_mut(&scid) else {
            return false;
        };
        ch.active = active;
        let point = channel_point_bytes(&ch.channel_point);
        let (event, kind) = if active {
            (
                ChannelEvent::ActiveChannel(point),
                UpdateType::ActiveChannel,
            )
        } else {
            (
                ChannelEvent::InactiveChannel(point),
                UpdateType::InactiveChannel,
            )
        };
        let update = ChannelEventUpdate {
            channel: Some(event),
            r#type: kind as i32,
        };
        send_all(&mut s.channel_subs, &update);
        true
    }

    /// Changes the balances of channel `scid` silently (only ListChannels shows
    /// them, as after commitments the peer did not sign). Returns whether it exists.
    pub fn set_balances(&self, scid: u64, local_sat: i64, remote_sat: i64) -> bool {
        let mut s = self.lock();
        let Some(ch) = s.channels.get_mut(&scid) else {
            return false;
        };
        ch.local_balance = local_sat;
        ch.remote_balance = remote_sat;
        true
    }

    /// Sends CHANNEL_UPDATE for channel `scid` (as LND does after a commitment the
    /// peer signed), with `active` true as LND always reports there. Returns
    /// whether it exists.
    pub fn commit_update(&self, scid: u64) -> bool {
        let mut s = self.lock();
        let Some(ch) = s.channels.get(&scid) else {
            return false;
        };
        let mut ch = ch.clone();
        ch.active = true;
        let update = ChannelEventUpdate {
            channel: Some(ChannelEvent::UpdatedChannel(ChannelCommitUpdate {
                channel: Some(ch),
            })),
            r#type: UpdateType::ChannelUpdate as i32,
        };
        send_all(&mut s.channel_subs, &update);
        true
    }

    /// Sends FULLY_RESOLVED_CHANNEL for the funding outpoint `chan_point` (`txid:index`).
    pub fn fully_resolve(&self, chan_point: &str) {
        let mut s = self.lock();
        let update = ChannelEventUpdate {
            channel: Some(ChannelEvent::FullyResolvedChannel(channel_point_bytes(
                chan_point,
            ))),
            r#type: UpdateType::FullyResolvedChannel as i32,
        };
        send_all(&mut s.channel_subs, &update);
    }

    // ----- HTLC events -------------------------------------------------------

    /// Sends `event` to every HTLC event subscriber (recorded either way). Returns
    /// how many received it.
    pub fn emit(&self, event: HtlcEvent) -> usize {
        let mut s = self.lock();
        s.htlc_events.push(event.clone());
        send_all(&mut s.htlc_subs, &event)
    }

    /// Every HTLC event emitted so far.
    pub fn htlc_events(&self) -> Vec<HtlcEvent> {
        self.lock().htlc_events.clone()
    }

    /// `ForwardEvent`: `key` was added to the outgoing channel as `out`.
    pub fn forward_event(&self, key: Key, out: Key, info: HtlcInfo) -> usize {
        self.emit(forward_htlc_event(
            key,
            Some(out),
            Event::ForwardEvent(ForwardEvent { info: Some(info) }),
        ))
    }

    /// `SettleEvent` with `preimage`.
    pub fn settle_event(&self, key: Key, out: Option<Key>, preimage: [u8; 32]) -> usize {
        self.emit(forward_htlc_event(
            key,
            out,
            Event::SettleEvent(SettleEvent {
                preimage: preimage.to_vec(),
            }),
        ))
    }

    /// `ForwardFailEvent` (failed downstream, or by the interceptor).
    pub fn forward_fail_event(&self, key: Key, out: Option<Key>) -> usize {
        self.emit(forward_htlc_event(
            key,
            out,
            Event::ForwardFailEvent(ForwardFailEvent {}),
        ))
    }

    /// `LinkFailEvent` with LND's reasons.
    pub fn link_fail_event(
        &self,
        key: Key,
        out: Option<Key>,
        info: HtlcInfo,
        wire_failure: FailureCode,
        detail: FailureDetail,
        failure_string: &str,
    ) -> usize {
        self.emit(forward_htlc_event(
            key,
            out,
            Event::LinkFailEvent(LinkFailEvent {
                info: Some(info),
                wire_failure: wire_failure as i32,
                failure_detail: detail as i32,
                failure_string: failure_string.to_owned(),
            }),
        ))
    }

    /// `FinalHtlcEvent` (no event type, no outgoing key, as LND sends it).
    pub fn final_event(&self, key: Key, settled: bool, offchain: bool) -> usize {
        self.emit(HtlcEvent {
            incoming_channel_id: key.0,
            incoming_htlc_id: key.1,
            outgoing_channel_id: 0,
            outgoing_htlc_id: 0,
            timestamp_ns: now_ns(),
            event_type: EventType::Unknown as i32,
            event: Some(Event::FinalHtlcEvent(FinalHtlcEvent { settled, offchain })),
        })
    }

    // ----- automatic mode ----------------------------------------------------

    /// Turns on the automatic mode: from now on, for each answer the mock LND
    /// accepts (`resolutions`, from [`crate::mock_lnd::MockLnd::watch_resolutions`]),
    /// the events real LND sends follow:
    /// - RESUME / RESUME_MODIFIED: with [`Downstream::Settle`] `ForwardEvent`, after
    ///   `delay` `SettleEvent`, then `FinalHtlcEvent{settled, offchain}`; with
    ///   [`Downstream::Fail`] the same with `ForwardFailEvent` and a failed final
    ///   event; with [`Downstream::LinkFail`] `LinkFailEvent` and a failed final event;
    /// - FAIL: `ForwardFailEvent` (no ForwardEvent, no detail), failed final event;
    /// - SETTLE: `SettleEvent` with the interceptor's preimage, settled final event.
    ///
    /// The outgoing channel is the request's `outgoing_requested_chan_id`; its HTLC
    /// index counts from 0 per channel for forwards, and is 0 for HTLCs resolved at
    /// this node, as in LND. HTLCs that LND resolves by itself (no interceptor) get
    /// no events. The task ends when the mock is dropped.
    pub fn auto_outcomes(
        &self,
        mut resolutions: mpsc::UnboundedReceiver<Resolution>,
        downstream: Downstream,
        delay: Duration,
    ) -> JoinHandle<()> {
        {
            let mut s = self.lock();
            s.auto = Some(Auto {
                downstream,
                per_key: HashMap::new(),
                delay,
                offered: HashMap::new(),
                next_out: HashMap::new(),
            });
        }
        self.shared.auto_on.store(true, Ordering::Release);
        let node = self.clone();
        tokio::spawn(async move {
            while let Some(resolution) = resolutions.recv().await {
                node.after_resolution(resolution);
            }
        })
    }

    /// In automatic mode: what happens downstream to `key` if it is resumed.
    pub fn set_downstream(&self, key: Key, downstream: Downstream) {
        if let Some(auto) = self.lock().auto.as_mut() {
            auto.per_key.insert(key, downstream);
        }
    }

    /// Called by the mock LND for every HTLC it offers: remembered in automatic mode.
    pub fn offered(&self, request: &ForwardHtlcInterceptRequest) {
        if !self.shared.auto_on.load(Ordering::Acquire) {
            return;
        }
        let Some(ck) = &request.incoming_circuit_key else {
            return;
        };
        if let Some(auto) = self.lock().auto.as_mut() {
            auto.offered
                .insert((ck.chan_id, ck.htlc_id), request.clone());
        }
    }

    /// The events after one accepted answer (automatic mode).
    fn after_resolution(&self, resolution: Resolution) {
        let key = resolution.key;
        let response = &resolution.response;
        let (request, downstream, delay, out_htlc) = {
            let mut s = self.lock();
            let Some(auto) = s.auto.as_mut() else {
                return;
            };
            let request = auto.offered.remove(&key);
            let downstream = auto
                .per_key
                .remove(&key)
                .unwrap_or_else(|| auto.downstream.clone());
            let out_chan = request
                .as_ref()
                .map(|r| r.outgoing_requested_chan_id)
                .unwrap_or(0);
            let resumed = matches!(
                response.action(),
                ResolveHoldForwardAction::Resume | ResolveHoldForwardAction::ResumeModified
            );
            // Only an HTLC added to the outgoing channel gets an index there.
            let out_htlc = if resumed && !matches!(downstream, Downstream::LinkFail { .. }) {
                let next = auto.next_out.entry(out_chan).or_default();
                *next += 1;
                *next - 1
            } else {
                0
            };
            (request, downstream, auto.delay, out_htlc)
        };
        let out_chan = request
            .as_ref()
            .map(|r| r.outgoing_requested_chan_id)
            .unwrap_or(0);
        let mut info = request
            .as_ref()
            .map(|r| HtlcInfo {
                incoming_timelock: r.incoming_expiry,
                outgoing_timelock: r.outgoing_expiry,
                incoming_amt_msat: r.incoming_amount_msat,
                outgoing_amt_msat: r.outgoing_amount_msat,
            })
            .unwrap_or_default();
        let at_node = Some((out_chan, 0));
        match response.action() {
            ResolveHoldForwardAction::Settle => {
                let preimage: [u8; 32] = response.preimage.as_slice().try_into().unwrap_or([0; 32]);
                self.settle_event(key, at_node, preimage);
                self.final_event(key, true, true);
            }
            ResolveHoldForwardAction::Fail => {
                self.forward_fail_event(key, at_node);
                self.final_event(key, false, true);
            }
            ResolveHoldForwardAction::Resume | ResolveHoldForwardAction::ResumeModified => {
                if response.action() == ResolveHoldForwardAction::ResumeModified {
                    if response.in_amount_msat != 0 {
                        info.incoming_amt_msat = response.in_amount_msat;
                    }
                    if response.out_amount_msat != 0 {
                        info.outgoing_amt_msat = response.out_amount_msat;
                    }
                }
                let out = (out_chan, out_htlc);
                match downstream {
                    Downstream::LinkFail {
                        wire_failure,
                        detail,
                        failure_string,
                    } => {
                        self.link_fail_event(
                            key,
                            at_node,
                            info,
                            wire_failure,
                            detail,
                            &failure_string,
                        );
                        self.final_event(key, false, true);
                    }
                    Downstream::Settle | Downstream::Fail => {
                        self.forward_event(key, out, info);
                        let node = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            if downstream == Downstream::Settle {
                                node.settle_event(key, Some(out), sample_preimage(key.0, key.1));
                                node.final_event(key, true, true);
                            } else {
                                node.forward_fail_event(key, Some(out));
                                node.final_event(key, false, true);
                            }
                        });
                    }
                }
            }
        }
    }

    // ----- subscriptions -----------------------------------------------------

    /// Serves `routerrpc.Router/SubscribeHtlcEvents`: checks the macaroon and
    /// offchain:read, registers the subscriber and sends `SubscribedEvent` first.
    pub fn subscribe_htlc_events<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Response<HtlcEventStream>, Status> {
        self.authorize(request, "SubscribeHtlcEvents", OFFCHAIN_READ)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Ok(HtlcEvent {
            event: Some(Event::SubscribedEvent(SubscribedEvent {})),
            ..Default::default()
        }));
        self.lock().htlc_subs.push(tx);
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    /// Live `SubscribeHtlcEvents` subscribers.
    pub fn htlc_subscribers(&self) -> usize {
        live(&self.lock().htlc_subs)
    }

    /// Live `SubscribeChannelEvents` subscribers.
    pub fn channel_subscribers(&self) -> usize {
        live(&self.lock().channel_subs)
    }

    /// Live `RegisterBlockEpochNtfn` subscribers.
    pub fn block_subscribers(&self) -> usize {
        live(&self.lock().block_subs)
    }

    /// Waits until `done` holds (checked every 10 ms) or `timeout` passes.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&MockNode) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "mock LND node: timed out after {timeout:?} waiting for {what} (htlc subscribers {}, \
                     channel subscribers {}, block subscribers {}, calls {:?})",
                    self.htlc_subscribers(),
                    self.channel_subscribers(),
                    self.block_subscribers(),
                    self.lock().calls,
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends every subscription stream with `Unavailable` (the mock is stopping).
    pub fn end_streams(&self, why: &str) {
        let mut s = self.lock();
        for tx in s.htlc_subs.drain(..) {
            let _ = tx.send(Err(Status::unavailable(why)));
        }
        for tx in s.channel_subs.drain(..) {
            let _ = tx.send(Err(Status::unavailable(why)));
        }
        for tx in s.block_subs.drain(..) {
            let _ = tx.send(Err(Status::unavailable(why)));
        }
    }
}

/// Sends `item` to every live subscriber, dropping the gone ones; returns how many got it.
fn send_all<T: Clone>(subs: &mut Vec<Sub<T>>, item: &T) -> usize {
    subs.retain(|s| s.send(Ok(item.clone())).is_ok());
    subs.len()
}

fn live<T>(subs: &[Sub<T>]) -> usize {
    subs.iter().filter(|s| !s.is_closed()).count()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// An event of type FORWARD for `key`, with `out` as outgoing key.
fn forward_htlc_event(key: Key, out: Option<Key>, event: Event) -> HtlcEvent {
    let (oc, oh) = out.unwrap_or((0, 0));
    HtlcEvent {
        incoming_channel_id: key.0,
        incoming_htlc_id: key.1,
        outgoing_channel_id: oc,
        outgoing_htlc_id: oh,
        timestamp_ns: now_ns(),
        event_type: EventType::Forward as i32,
        event: Some(event),
    }
}

/// The mock's block at `height` (a made-up hash).
fn block_epoch(height: u32) -> BlockEpoch {
    BlockEpoch {
        hash: block_hash(height).to_vec(),
        height,
    }
}

fn block_hash(height: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"htlcgate mock block");
    h.update(height.to_be_bytes());
    h.finalize().into()
}

/// LND's `ChannelPoint` (txid bytes, internal order) for `txid:index`.
fn channel_point_bytes(chan_point: &str) -> ChannelPoint {
    let (txid, index) = chan_point.split_once(':').unwrap_or((chan_point, "0"));
    let mut bytes = hex::decode(txid).unwrap_or_default();
    bytes.reverse();
    ChannelPoint {
        funding_txid: Some(FundingTxid::FundingTxidBytes(bytes)),
        output_index: index.parse().unwrap_or(0),
    }
}

/// A channel for tests: peer `02 || sha256(scid)`, 1,000,000 sat capacity,
/// 600,000 sat local and 390,000 sat remote balance, active, public, opened by us,
/// funding outpoint `sha256("funding" || scid):output`.
pub fn sample_channel(scid: u64) -> Channel {
    let peer = Sha256::digest(scid.to_be_bytes());
    let mut h = Sha256::new();
    h.update(b"funding");
    h.update(scid.to_be_bytes());
    let txid: [u8; 32] = h.finalize().into();
    Channel {
        active: true,
        remote_pubkey: format!("02{}", hex::encode(peer)),
        channel_point: format!("{}:{}", hex::encode(txid), scid & 0xffff),
        chan_id: scid,
        capacity: 1_000_000,
        local_balance: 600_000,
        remote_balance: 390_000,
        unsettled_balance: 0,
        private: false,
        initiator: true,
        chan_status_flags: "ChanStatusDefault".to_owned(),
        alias_scids: Vec::new(),
        zero_conf: false,
        zero_conf_confirmed_scid: 0,
        peer_alias: String::new(),
        peer_scid_alias: 0,
    }
}

/// The mock's `lnrpc.Lightning` service.
pub struct MockLightning {
    /// The node's state.
    node: MockNode,
}

#[tonic::async_trait]
impl Lightning for MockLightning {
    async fn get_info(
        &self,
        request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        self.node.authorize(&request, "GetInfo", INFO_READ)?;
        let s = self.node.lock();
        let active = s.channels.values().filter(|c| c.active).count() as u32;
        Ok(Response::new(GetInfoResponse {
            version: "0.21.2-beta commit=mock".to_owned(),
            commit_hash: String::new(),
            identity_pubkey: s.identity.clone(),
            alias: "mock".to_owned(),
            num_pending_channels: 0,
            num_active_channels: active,
            num_inactive_channels: s.channels.len() as u32 - active,
            block_height: s.height,
            block_hash: {
                let mut h = block_hash(s.height);
                h.reverse();
                hex::encode(h)
            },
            synced_to_chain: true,
            chains: vec![Chain {
                network: "regtest".to_owned(),
                ..Default::default()
            }],
            require_htlc_interceptor: false,
            store_final_htlc_resolutions: false,
        }))
    }

    async fn list_channels(
        &self,
        request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        self.node
            .authorize(&request, "ListChannels", OFFCHAIN_READ)?;
        let filter = request.into_inner();
        let channels = self
            .node
            .lock()
            .channels
            .values()
            .filter(|c| !filter.active_only || c.active)
            .filter(|c| !(filter.inactive_only && c.active))
            .filter(|c| !(filter.public_only && c.private))
            .filter(|c| !filter.private_only || c.private)
            .cloned()
            .collect();
        Ok(Response::new(ListChannelsResponse { channels }))
    }

    type SubscribeChannelEventsStream = ChannelEventStream;

    async fn subscribe_channel_events(
        &self,
        request: Request<ChannelEventSubscription>,
    ) -> Result<Response<Self::SubscribeChannelEventsStream>, Status> {
        self.node
            .authorize(&request, "SubscribeChannelEvents", OFFCHAIN_READ)?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.node.lock().channel_subs.push(tx);
        // grpc-go sends the response headers with the first event: the client's
        // call completes only then (or fails with the status if the stream ends).
        match rx.recv().await {
            Some(Ok(first)) => Ok(Response::new(Box::pin(
                tokio_stream::once(Ok(first)).chain(UnboundedReceiverStream::new(rx)),
            ))),
            Some(Err(status)) => Err(status),
            None => Err(Status::unavailable("mock LND stopped")),
        }
    }
}

/// The mock's `chainrpc.ChainNotifier` service.
pub struct MockChainNotifier {
    /// The node's state.
    node: MockNode,
}

#[tonic::async_trait]
impl ChainNotifier for MockChainNotifier {
    type RegisterBlockEpochNtfnStream = BlockEpochStream;

    async fn register_block_epoch_ntfn(
        &self,
        request: Request<BlockEpoch>,
    ) -> Result<Response<Self::RegisterBlockEpochNtfnStream>, Status> {
        if !self.node.lock().chain_notifier {
            *self
                .node
                .lock()
                .calls
                .entry("RegisterBlockEpochNtfn")
                .or_default() += 1;
            return Err(Status::unimplemented(
                "unknown service chainrpc.ChainNotifier",
            ));
        }
        self.node
            .authorize(&request, "RegisterBlockEpochNtfn", ONCHAIN_READ)?;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut s = self.node.lock();
            // No backlog asked for: the current tip first, as LND's notifier does.
            let _ = tx.send(Ok(block_epoch(s.height)));
            s.block_subs.push(tx);
        }
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_channels_have_lnd_shaped_fields() {
        let ch = sample_channel((800_000 << 40) | (1 << 16) | 1);
        assert_eq!(ch.remote_pubkey.len(), 66);
        let (txid, index) = ch.channel_point.split_once(':').unwrap();
        assert_eq!(txid.len(), 64);
        assert_eq!(index, "1");
        let p = channel_point_bytes(&ch.channel_point);
        let Some(FundingTxid::FundingTxidBytes(bytes)) = p.funding_txid else {
            panic!("bytes")
        };
        let mut rev = bytes.clone();
        rev.reverse();
        assert_eq!(hex::encode(rev), txid, "bytes are the reversed hex");
    }

    #[test]
    fn events_reach_only_live_subscribers_and_are_recorded() {
        let node = MockNode::new(vec![1]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        node.lock().htlc_subs.push(tx);
        let (gone, gone_rx) = mpsc::unbounded_channel();
        drop(gone_rx);
        node.lock().htlc_subs.push(gone);
        assert_eq!(node.htlc_subscribers(), 1);
        assert_eq!(node.final_event((1, 2), true, true), 1);
        let ev = rx.try_recv().unwrap().unwrap();
        assert_eq!((ev.incoming_channel_id, ev.incoming_htlc_id), (1, 2));
        assert_eq!(node.htlc_events().len(), 1);
        node.end_streams("stopped");
        assert!(rx.try_recv().unwrap().is_err());
        assert_eq!(node.htlc_subscribers(), 0);
    }
}
