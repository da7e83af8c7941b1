//! A mock LND: a real gRPC server over TLS on loopback that serves
//! `routerrpc.Router/HtlcInterceptor` and enforces LND's rules exactly, so the
//! interceptor loop can be tested (and demonstrated by `htlcgate demo`) without a
//! Lightning node.
//!
//! What it reproduces from LND (v0.21: `routerrpc/forward_interceptor.go`,
//! `router_server.go`, `htlcswitch/interceptable_switch.go`, `held_htlc_set.go`):
//! - a self-signed ECDSA P-256 `tls.cert` with `CA:TRUE`, and a macaroon checked
//!   on every call (metadata `macaroon`, hex), with LND's error messages;
//! - one interceptor at a time ("interceptor already exists");
//! - the held set: an HTLC offered to the interceptor stays held until answered;
//!   on (re)connect every held HTLC is replayed; without an interceptor LND
//!   resumes new HTLCs, or fails them back with `requireinterceptor`; when the
//!   interceptor goes away held off-chain HTLCs are resumed, unless
//!   `requireinterceptor` keeps them for the next interceptor;
//! - every response rule, checked in LND's order with LND's status code and
//!   message, ending the stream on the first violation: the message checks of
//!   `resolveFromClient` first (missing key, custom records, failure message and
//!   code, preimage, action), then the held-set lookup ("forward does not exist"),
//!   then a settle's preimage against the payment hash ("preimage does not match
//!   hash", in both flows as in LND's source), then the on-chain restrictions. A
//!   key that broke a rule stays held;
//! - on-chain HTLCs (incoming channel force-closed): only SETTLE resolves them;
//!   RESUME / FAIL end the stream, and they survive interceptor disconnects.
//!
//! Everything is recorded with the stream generation (1 for the first
//! interceptor stream, 2 for the next, ...) so tests can assert on it. State
//! lives behind one mutex that is never held across an await, and every
//! operation on an HTLC is O(1), so the mock can push tens of thousands of
//! HTLCs per second.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::StreamExt as _;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::lnd::connect::LndEndpoint;
use crate::lnd::proto::lnrpc::failure::FailureCode;
use crate::lnd::proto::routerrpc::router_server::{Router, RouterServer};
use crate::lnd::proto::routerrpc::{
    CircuitKey, ForwardHtlcInterceptRequest, ForwardHtlcInterceptResponse, ResolveHoldForwardAction,
};

/// A circuit key as `(chan_id, htlc_id)`: the incoming channel's short channel id
/// and the HTLC's index in it.
pub type Key = (u64, u64);

/// Size of a BOLT #4 failure message LND accepts in `failure_message`:
/// 256 bytes of message + 32 bytes HMAC + two u16 lengths.
pub const FAILURE_MESSAGE_LEN: usize = 256 + 32 + 2 + 2;

/// Smallest custom TLV record type (`lnwire.MinCustomRecordsTlvType`).
pub const MIN_CUSTOM_RECORD_TYPE: u64 = 65536;

/// LND's answer to a macaroon that is not the node's.
pub const MSG_MACAROON_MISMATCH: &str =
    "verification failed: signature mismatch after caveat verification";
/// LND's answer to a second interceptor.
pub const MSG_INTERCEPTOR_EXISTS: &str = "interceptor already exists";

/// How to start a [`MockLnd`].
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Directory where `tls.cert` and `admin.macaroon` are written (created if missing).
    pub dir: PathBuf,
    /// LND's `requireinterceptor`: without an interceptor, new HTLCs are failed
    /// back and held ones stay held for the next interceptor (instead of being
    /// resumed).
    pub require_interceptor: bool,
    /// Address to listen on; `None` binds `127.0.0.1:0` (a free port).
    pub listen: Option<SocketAddr>,
}

impl MockOptions {
    /// Options for a mock that writes its files to `dir`, listens on a free
    /// loopback port and does not require an interceptor (LND's default).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MockOptions {
            dir: dir.into(),
            require_interceptor: false,
            listen: None,
        }
    }
}

/// An answer the mock LND accepted: the HTLC left the held set.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The interceptor stream (1, 2, ...) that sent the answer.
    pub stream_gen: u64,
    /// The HTLC that was answered.
    pub key: Key,
    /// The answer as received.
    pub response: ForwardHtlcInterceptResponse,
    /// When it was accepted.
    pub at: Instant,
}

/// The end of an interceptor stream.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    /// The stream (1, 2, ...) that ended.
    pub stream_gen: u64,
    /// LND's status message (for rule violations exactly LND's text), or what
    /// happened ("EOF", "interceptor went away: ...", "closed by mock LND ...").
    pub message: String,
    /// The gRPC status code the client was sent (or saw).
    pub code: Code,
    /// The circuit key of the response that broke a rule, if there was one.
    pub key: Option<Key>,
    /// Whether the stream ended because a response broke one of LND's rules.
    pub violation: bool,
    /// When it ended.
    pub at: Instant,
}

/// What LND did by itself with an HTLC, without an interceptor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LndAction {
    /// A new HTLC arrived with no interceptor connected and `requireinterceptor`
    /// off: LND forwarded it at once.
    ResumedNoInterceptor,
    /// A new HTLC arrived with no interceptor connected and `requireinterceptor`
    /// on: LND failed it back at once.
    FailedNoInterceptor,
    /// The HTLC was held when the interceptor went away and `requireinterceptor`
    /// is off: LND resumed (forwarded) it.
    ResumedInterceptorGone,
    /// The block height reached the HTLC's `auto_fail_height` while it was held:
    /// LND failed it back (see [`MockLnd::mine`]).
    AutoFailed,
}

/// One HTLC that LND resolved by itself.
#[derive(Debug, Clone)]
pub struct LndOutcome {
    /// The HTLC.
    pub key: Key,
    /// What LND did.
    pub action: LndAction,
    /// When.
    pub at: Instant,
}

/// What [`MockLnd::send_htlc`] did with an HTLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Sent to the connected interceptor; held until answered.
    Intercepted,
    /// No interceptor: held until one connects (on-chain HTLCs only).
    HeldForInterceptor,
    /// No interceptor: resolved by LND itself (recorded in [`MockLnd::lnd_outcomes`]).
    ResolvedByLnd(LndAction),
    /// An HTLC with this key is already held: ignored, as LND does.
    AlreadyHeld,
}

/// A mock LND serving the HTLC interceptor stream over TLS on loopback.
pub struct MockLnd {
    /// State shared with the gRPC service and the stream tasks.
    shared: Arc<Shared>,
    /// The address the server listens on (kept across [`MockLnd::restart`]).
    addr: SocketAddr,
    /// `tls.cert` (PEM) written at start.
    cert_path: PathBuf,
    /// `admin.macaroon` written at start.
    macaroon_path: PathBuf,
    /// The TLS identity (certificate and key, PEM) reused by restarts.
    identity: (String, String),
    /// The running server, if any.
    server: Option<RunningServer>,
}

/// A running tonic server and the way to stop it.
struct RunningServer {
    /// Fires the graceful shutdown.
    shutdown: oneshot::Sender<()>,
    /// The serve task.
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockLnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockLnd")
            .field("addr", &self.addr)
            .field("cert_path", &self.cert_path)
            .field("running", &self.server.is_some())
            .finish()
    }
}

impl MockLnd {
    /// Generates an LND-like certificate and a macaroon in `opts.dir`, binds the
    /// listener and starts serving.
    pub async fn start(opts: MockOptions) -> anyhow::Result<MockLnd> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("mock LND: cannot create {}", opts.dir.display()))?;
        let (cert_pem, key_pem) = lnd_like_certificate()?;
        let cert_path = opts.dir.join("tls.cert");
        std::fs::write(&cert_path, &cert_pem)
            .with_context(|| format!("mock LND: cannot write {}", cert_path.display()))?;

        let mut rng = fastrand::Rng::new();
        let macaroon: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(64).collect();
        let macaroon_path = opts.dir.join("admin.macaroon");
        std::fs::write(&macaroon_path, &macaroon)
            .with_context(|| format!("mock LND: cannot write {}", macaroon_path.display()))?;

        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(opts.require_interceptor)),
            changed: Notify::new(),
            node: crate::mock_node::MockNode::new(macaroon),
        });
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let (server, addr) = serve(shared.clone(), listen, &cert_pem, &key_pem).await?;
        tracing::info!(%addr, cert = %cert_path.display(), "mock LND listening");
        Ok(MockLnd {
            shared,
            addr,
            cert_path,
            macaroon_path,
            identity: (cert_pem, key_pem),
            server: Some(server),
        })
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM certificate clients must pin.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The macaroon file clients must send.
    pub fn macaroon_path(&self) -> &Path {
        &self.macaroon_path
    }

    /// The node side of the mock (channels, height, HTLC events, permissions):
    /// see `mock_node.rs`.
    pub fn node(&self) -> &crate::mock_node::MockNode {
        &self.shared.node
    }

    /// Where and how to connect to this mock.
    pub fn endpoint(&self) -> LndEndpoint {
        LndEndpoint {
            rpcserver: self.addr.to_string(),
            tls_cert_path: self.cert_path.clone(),
            macaroon_path: self.macaroon_path.clone(),
        }
    }

    /// LND intercepts a forwarded (off-chain) HTLC. With an interceptor connected
    /// the request is sent on the stream and held until answered; without one LND
    /// resumes it (or fails it back with `require_interceptor`) at once.
    ///
    /// # Panics
    /// If `req.incoming_circuit_key` is missing (LND always sets it).
    pub fn send_htlc(&self, req: ForwardHtlcInterceptRequest) -> Offer {
        self.offer(req, false)
    }

    /// LND hands the interceptor an HTLC whose incoming channel was force-closed
    /// (the on-chain flow): it stays held until an interceptor settles it, even
    /// with no interceptor connected and across disconnects; RESUME and FAIL for
    /// it end the stream. If the key is held off-chain it is promoted to on-chain
    /// (and offered again if an interceptor is connected).
    ///
    /// # Panics
    /// If `req.incoming_circuit_key` is missing.
    pub fn send_htlc_on_chain(&self, req: ForwardHtlcInterceptRequest) -> Offer {
        self.offer(req, true)
    }

    fn offer(&self, req: ForwardHtlcInterceptRequest, on_chain: bool) -> Offer {
        self.shared.node.offered(&req);
        let offer = self.shared.lock().offer(req, on_chain);
        self.shared.changed.notify_waiters();
        offer
    }

    /// Several HTLCs offered in one step (`true`: on-chain, as
    /// [`MockLnd::send_htlc_on_chain`]), as LND offers the HTLCs of one batch:
    /// all are held (and queued on the stream) before any answer can be
    /// processed, so a test can rely on the order LND saw them in.
    ///
    /// # Panics
    /// If a request has no `incoming_circuit_key`.
    pub fn send_htlcs_at_once(&self, reqs: Vec<(ForwardHtlcInterceptRequest, bool)>) -> Vec<Offer> {
        for (req, _) in &reqs {
            self.shared.node.offered(req);
        }
        let offers = {
            let mut state = self.shared.lock();
            reqs.into_iter()
                .map(|(req, on_chain)| state.offer(req, on_chain))
                .collect()
        };
        self.shared.changed.notify_waiters();
        offers
    }

    /// Mines `n` blocks on the node side and, as LND's interceptable switch does
    /// on every block, fails back each held off-chain HTLC whose
    /// `auto_fail_height` is reached: it leaves the held set (an answer for it
    /// now gets "forward does not exist" and ends the stream), is recorded as
    /// [`LndAction::AutoFailed`], and LND's HTLC events follow
    /// (`ForwardFailEvent`, then a failed `FinalHtlcEvent`). Returns the keys.
    pub fn mine(&self, n: u32) -> Vec<Key> {
        self.shared.node.mine(n);
        let height = self.shared.node.height();
        let failed: Vec<Key> = {
            let mut state = self.shared.lock();
            let mut due: Vec<Key> = state
                .held
                .iter()
                .filter(|(_, h)| {
                    !h.on_chain
                        && h.request.auto_fail_height > 0
                        && height >= h.request.auto_fail_height as u32
                })
                .map(|(k, _)| *k)
                .collect();
            due.sort_unstable();
            for key in &due {
                state.held.remove(key);
                state.lnd_outcomes.push(LndOutcome {
                    key: *key,
                    action: LndAction::AutoFailed,
                    at: Instant::now(),
                });
                tracing::debug!(circuit = %circuit(*key), height, "mock LND: auto-failed at auto_fail_height");
            }
            due
        };
        for key in &failed {
            self.shared.node.forward_fail_event(*key, None);
            self.shared.node.final_event(*key, false, true);
        }
        self.shared.changed.notify_waiters();
        failed
    }

    /// Ends the current interceptor stream from the server side, as an LND
    /// shutting down would: the client sees status `Unavailable`; every held HTLC
    /// stays held (whatever `require_interceptor` says) and is replayed to the
    /// next interceptor. Returns whether a stream was connected.
    pub fn disconnect(&self) -> bool {
        let ended = {
            let mut state = self.shared.lock();
            state.end_stream_by_server("closed by mock LND (simulated restart)")
        };
        self.shared.changed.notify_waiters();
        ended
    }

    /// Stops the server: the current stream ends (held HTLCs stay held, as in
    /// [`MockLnd::disconnect`]), connections are closed and the port stops
    /// listening until [`MockLnd::restart`]. While stopped, [`MockLnd::send_htlc`]
    /// behaves as if no interceptor were connected.
    pub async fn stop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.end_stream_by_server("mock LND stopped");
        }
        self.shared.node.end_streams("mock LND stopped");
        self.shared.changed.notify_waiters();
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            let mut task = server.task;
            if tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                tracing::warn!(addr = %self.addr, "mock LND: graceful stop timed out, aborting");
                task.abort();
                let _ = task.await;
            }
            tracing::info!(addr = %self.addr, "mock LND stopped");
        }
    }

    /// Starts serving again on the same address with the same certificate and
    /// macaroon, like an LND that restarted. Held HTLCs survive; with
    /// `require_interceptor` off, LND re-forwards them at startup before any
    /// interceptor can connect, so they are resumed (recorded as
    /// [`LndAction::ResumedNoInterceptor`]).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            self.stop().await;
        }
        {
            let mut state = self.shared.lock();
            state.resume_held_without_interceptor(LndAction::ResumedNoInterceptor);
        }
        self.shared.changed.notify_waiters();
        let (cert_pem, key_pem) = &self.identity;
        // The old listener's port may linger briefly in the kernel; retry a little.
        let mut last_err = None;
        for _ in 0..50 {
            match serve(self.shared.clone(), self.addr, cert_pem, key_pem).await {
                Ok((server, _)) => {
                    self.server = Some(server);
                    tracing::info!(addr = %self.addr, "mock LND restarted");
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Every answer LND accepted, in order.
    pub fn resolutions(&self) -> Vec<Resolution> {
        self.shared.lock().resolutions.clone()
    }

    /// Every answer LND accepts from now on, as it is accepted (for load tools:
    /// no copy of the whole history, no polling). Dropping the receiver unsubscribes.
    pub fn watch_resolutions(&self) -> mpsc::UnboundedReceiver<Resolution> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.lock().watchers.push(tx);
        rx
    }

    /// How many answers LND accepted.
    pub fn resolution_count(&self) -> usize {
        self.shared.lock().resolutions.len()
    }

    /// Streams that LND ended because a response broke one of its rules.
    pub fn violations(&self) -> Vec<StreamEnd> {
        self.shared
            .lock()
            .stream_ends
            .iter()
            .filter(|e| e.violation)
            .cloned()
            .collect()
    }

    /// Every stream end: violations, clients going away, server-side disconnects.
    pub fn stream_ends(&self) -> Vec<StreamEnd> {
        self.shared.lock().stream_ends.clone()
    }

    /// HTLCs that LND resolved by itself (no interceptor, or the interceptor went away).
    pub fn lnd_outcomes(&self) -> Vec<LndOutcome> {
        self.shared.lock().lnd_outcomes.clone()
    }

    /// How many HTLCs are held (waiting for an answer).
    pub fn held_count(&self) -> usize {
        self.shared.lock().held.len()
    }

    /// Whether the HTLC `key` is held.
    pub fn is_held(&self, key: Key) -> bool {
        self.shared.lock().held.contains_key(&key)
    }

    /// How many interceptor streams were accepted so far.
    pub fn connects(&self) -> u64 {
        self.shared.lock().connects
    }

    /// The generation of the connected interceptor stream, if one is connected.
    pub fn current_stream(&self) -> Option<u64> {
        self.shared.lock().stream.as_ref().map(|s| s.gen)
    }

    /// Waits until at least `n` answers were accepted.
    pub async fn wait_resolved(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, &format!("{n} resolutions"), |s| {
            s.resolutions.len() >= n
        })
        .await
    }

    /// Waits until an interceptor stream is connected.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, "an interceptor to connect", |s| s.stream.is_some())
            .await
    }

    /// Waits until at least `n` interceptor streams were accepted in total.
    pub async fn wait_connects(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, &format!("{n} interceptor connects"), |s| {
            s.connects >= n
        })
        .await
    }

    /// Waits until at least `n` streams ended.
    pub async fn wait_stream_ends(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, &format!("{n} stream ends"), |s| {
            s.stream_ends.len() >= n
        })
        .await
    }

    /// Waits until exactly `n` HTLCs are held.
    pub async fn wait_held(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, &format!("{n} held HTLCs"), |s| s.held.len() == n)
            .await
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&State) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the
            // await is not missed.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if done(&state) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let state = self.shared.lock();
                anyhow::bail!(
                    "mock LND: timed out after {timeout:?} waiting for {what} (resolutions {}, held {}, \
                     connects {}, stream ends {}, last end {:?})",
                    state.resolutions.len(),
                    state.held.len(),
                    state.connects,
                    state.stream_ends.len(),
                    state.stream_ends.last().map(|e| &e.message),
                );
            }
        }
    }
}

impl Drop for MockLnd {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            server.task.abort();
        }
        if let Ok(mut state) = self.shared.state.lock() {
            state.end_stream_by_server("mock LND dropped");
        }
    }
}

/// A realistic forwarded HTLC for tests and the demo: 1000 sat in, 999 sat out,
/// expiries 800144/800104, auto-fail at 800134, a 1366-byte onion, and a payment
/// hash whose preimage is [`sample_preimage`]`(chan_id, htlc_id)`.
pub fn sample_request(chan_id: u64, htlc_id: u64) -> ForwardHtlcInterceptRequest {
    ForwardHtlcInterceptRequest {
        incoming_circuit_key: Some(CircuitKey { chan_id, htlc_id }),
        incoming_amount_msat: 1_000_000,
        incoming_expiry: 800_144,
        payment_hash: Sha256::digest(sample_preimage(chan_id, htlc_id)).to_vec(),
        outgoing_requested_chan_id: 0x000c_3500_0001_0000 | (chan_id & 0xffff),
        outgoing_amount_msat: 999_000,
        outgoing_expiry: 800_104,
        custom_records: HashMap::new(),
        onion_blob: vec![0u8; 1366],
        auto_fail_height: 800_134,
        in_wire_custom_records: HashMap::new(),
        outgoing_requested_node_id: Vec::new(),
    }
}

/// The preimage of [`sample_request`]`(chan_id, htlc_id)`'s payment hash.
pub fn sample_preimage(chan_id: u64, htlc_id: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"htlcgate mock preimage");
    h.update(chan_id.to_be_bytes());
    h.update(htlc_id.to_be_bytes());
    h.finalize().into()
}

/// State shared by the handle, the gRPC service and the stream tasks.
struct Shared {
    /// Everything mutable, behind one lock that is never held across an await.
    state: Mutex<State>,
    /// Wakes `wait_*` helpers after every change.
    changed: Notify,
    /// The node side: Lightning, ChainNotifier, HTLC events (`mock_node.rs`).
    node: crate::mock_node::MockNode,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not hide the recorded state from assertions.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An HTLC LND holds for the interceptor.
struct Held {
    /// The request, resent on every (re)connect.
    request: ForwardHtlcInterceptRequest,
    /// Whether it is being resolved on chain (incoming channel force-closed).
    on_chain: bool,
}

/// The connected interceptor stream.
struct ActiveStream {
    /// Its generation (1, 2, ...).
    gen: u64,
    /// Requests (and the final status) to the client.
    to_client: mpsc::UnboundedSender<Result<ForwardHtlcInterceptRequest, Status>>,
    /// Tells the reader task to stop reading the client's answers.
    stop_reader: Option<oneshot::Sender<()>>,
}

/// The mutable state of the mock.
struct State {
    /// LND's `requireinterceptor`.
    require_interceptor: bool,
    /// HTLCs waiting for an answer.
    held: HashMap<Key, Held>,
    /// The connected interceptor, if any.
    stream: Option<ActiveStream>,
    /// Streams accepted so far (the last generation).
    connects: u64,
    /// Accepted answers.
    resolutions: Vec<Resolution>,
    /// Every stream end.
    stream_ends: Vec<StreamEnd>,
    /// HTLCs LND resolved by itself.
    lnd_outcomes: Vec<LndOutcome>,
    /// Receivers of every accepted answer (see [`MockLnd::watch_resolutions`]).
    watchers: Vec<mpsc::UnboundedSender<Resolution>>,
}

/// A response that broke one of LND's rules: the status that ends the stream.
struct Violation {
    /// LND's status code and message.
    status: Status,
    /// The key of the offending response, if it had one.
    key: Option<Key>,
}

impl State {
    fn new(require_interceptor: bool) -> Self {
        State {
            require_interceptor,
            held: HashMap::new(),
            stream: None,
            connects: 0,
            resolutions: Vec::new(),
            stream_ends: Vec::new(),
            lnd_outcomes: Vec::new(),
            watchers: Vec::new(),
        }
    }

    fn offer(&mut self, request: ForwardHtlcInterceptRequest, on_chain: bool) -> Offer {
        let key = request
            .incoming_circuit_key
            .as_ref()
            .map(|k| (k.chan_id, k.htlc_id))
            .expect("mock LND: an intercepted HTLC needs incoming_circuit_key");
        if let Some(held) = self.held.get_mut(&key) {
            if on_chain && !held.on_chain {
                // Promotion to the on-chain flow: LND replaces the entry and the
                // interceptor sees the HTLC again.
                held.on_chain = true;
                held.request = request.clone();
            } else {
                tracing::debug!(circuit = %circuit(key), "mock LND: HTLC already held, ignored");
                return Offer::AlreadyHeld;
            }
        } else if self.stream.is_some() || on_chain {
            self.held.insert(
                key,
                Held {
                    request: request.clone(),
                    on_chain,
                },
            );
        } else {
            let action = if self.require_interceptor {
                LndAction::FailedNoInterceptor
            } else {
                LndAction::ResumedNoInterceptor
            };
            self.lnd_outcomes.push(LndOutcome {
                key,
                action,
                at: Instant::now(),
            });
            tracing::debug!(circuit = %circuit(key), ?action, "mock LND: no interceptor");
            return Offer::ResolvedByLnd(action);
        }
        match &self.stream {
            Some(stream) => {
                // If the client is already gone the send fails; the HTLC stays
                // held and the reader task's disconnect handling decides its fate.
                let _ = stream.to_client.send(Ok(request));
                Offer::Intercepted
            }
            None => Offer::HeldForInterceptor,
        }
    }

    /// Registers a new interceptor stream and replays every held HTLC to it.
    fn attach(
        &mut self,
        to_client: mpsc::UnboundedSender<Result<ForwardHtlcInterceptRequest, Status>>,
        stop_reader: oneshot::Sender<()>,
    ) -> Result<u64, Status> {
        if self.stream.is_some() {
            return Err(Status::unknown(MSG_INTERCEPTOR_EXISTS));
        }
        self.connects += 1;
        let gen = self.connects;
        let mut keys: Vec<Key> = self.held.keys().copied().collect();
        keys.sort_unstable();
        for key in &keys {
            let _ = to_client.send(Ok(self.held[key].request.clone()));
        }
        tracing::info!(
            stream_gen = gen,
            replayed = keys.len(),
            "mock LND: interceptor connected"
        );
        self.stream = Some(ActiveStream {
            gen,
            to_client,
            stop_reader: Some(stop_reader),
        });
        Ok(gen)
    }

    /// Applies one answer from stream `gen`. `Err` means the stream must end.
    fn apply(&mut self, gen: u64, resp: ForwardHtlcInterceptResponse) -> Result<(), ()> {
        if self.stream.as_ref().map(|s| s.gen) != Some(gen) {
            // The stream was already ended (server-side disconnect): LND no
            // longer reads from it.
            return Err(());
        }
        match self.check(&resp) {
            Ok(key) => {
                self.held.remove(&key);
                tracing::trace!(stream_gen = gen, circuit = %circuit(key), action = resp.action, "mock LND: resolved");
                let resolution = Resolution {
                    stream_gen: gen,
                    key,
                    response: resp,
                    at: Instant::now(),
                };
                if !self.watchers.is_empty() {
                    self.watchers.retain(|w| w.send(resolution.clone()).is_ok());
                }
                self.resolutions.push(resolution);
                Ok(())
            }
            Err(violation) => {
                tracing::info!(
                    stream_gen = gen,
                    circuit = %violation.key.map(circuit).unwrap_or_default(),
                    code = ?violation.status.code(),
                    message = violation.status.message(),
                    "mock LND: response broke a rule, ending the stream"
                );
                self.detach(violation.status, violation.key, true, false);
                Err(())
            }
        }
    }

    /// LND's checks, in LND's order (`forwardInterceptor.resolveFromClient`, then
    /// `InterceptableSwitch.resolve` and the held entry's `resolve`). On success
    /// returns the key to resolve.
    fn check(&self, resp: &ForwardHtlcInterceptResponse) -> Result<Key, Violation> {
        let Some(ck) = &resp.incoming_circuit_key else {
            return Err(Violation {
                status: Status::invalid_argument(
                    "CircuitKey missing from ForwardHtlcInterceptResponse",
                ),
                key: None,
            });
        };
        let key = (ck.chan_id, ck.htlc_id);
        let fail = |status: Status| {
            Err(Violation {
                status,
                key: Some(key),
            })
        };

        let action = ResolveHoldForwardAction::try_from(resp.action);
        match action {
            Ok(ResolveHoldForwardAction::Resume) => {}
            Ok(ResolveHoldForwardAction::ResumeModified) => {
                if resp
                    .out_wire_custom_records
                    .keys()
                    .any(|&t| t < MIN_CUSTOM_RECORD_TYPE)
                {
                    return fail(Status::invalid_argument(format!(
                        "failed to validate custom records: custom records entry with TLV type below min: {MIN_CUSTOM_RECORD_TYPE}"
                    )));
                }
            }
            Ok(ResolveHoldForwardAction::Fail) => {
                if !resp.failure_message.is_empty() {
                    if resp.failure_code != 0 {
                        return fail(Status::invalid_argument(
                            "failure message and failure code are mutually exclusive",
                        ));
                    }
                    if resp.failure_message.len() != FAILURE_MESSAGE_LEN {
                        return fail(Status::invalid_argument("failure message length invalid"));
                    }
                } else {
                    let allowed = [
                        FailureCode::Reserved,
                        FailureCode::TemporaryChannelFailure,
                        FailureCode::InvalidOnionHmac,
                        FailureCode::InvalidOnionKey,
                        FailureCode::InvalidOnionVersion,
                    ];
                    if !allowed.iter().any(|&c| c as i32 == resp.failure_code) {
                        // Go prints an enum by name, or by number if unknown.
                        let name = FailureCode::try_from(resp.failure_code)
                            .map(|c| c.as_str_name().to_owned())
                            .unwrap_or_else(|_| resp.failure_code.to_string());
                        return fail(Status::invalid_argument(format!(
                            "unsupported failure code: {name}"
                        )));
                    }
                }
            }
            Ok(ResolveHoldForwardAction::Settle) => {
                // Plain Go errors: gRPC status code Unknown.
                if resp.preimage.is_empty() {
                    return fail(Status::unknown("missing preimage"));
                }
                if resp.preimage.len() != 32 {
                    return fail(Status::unknown(format!(
                        "invalid preimage length of {}, want 32",
                        resp.preimage.len()
                    )));
                }
            }
            Err(_) => {
                return fail(Status::invalid_argument(format!(
                    "unrecognized resolve action {}",
                    resp.action
                )));
            }
        }

        let Some(held) = self.held.get(&key) else {
            return fail(Status::unknown(format!(
                "forward does not exist: (Chan ID={}, HTLC ID={})",
                short_channel_id(key.0),
                key.1
            )));
        };

        // LND's source checks the hash in both flows (`interceptedForward.Settle`
        // in htlcswitch/interceptable_switch.go off-chain, the witness beacon
        // on-chain); the shared doc says the off-chain flow does not and the
        // forwarded amount is lost. Either way such a settle must never be sent:
        // the mock ends the stream, so every test that checks its violations
        // catches one.
        if matches!(action, Ok(ResolveHoldForwardAction::Settle))
            && Sha256::digest(&resp.preimage).as_slice() != held.request.payment_hash.as_slice()
        {
            return fail(Status::unknown("preimage does not match hash"));
        }

        if held.on_chain {
            match action {
                Ok(ResolveHoldForwardAction::Settle) => {}
                Ok(ResolveHoldForwardAction::Fail) => {
                    return fail(Status::unknown(
                        "cannot fail held htlc in the on-chain flow",
                    ));
                }
                _ => {
                    return fail(Status::unknown(
                        "cannot resume held htlc in the on-chain flow",
                    ));
                }
            }
        }
        Ok(key)
    }

    /// Ends the current stream: sends `status` to the client, stops the reader,
    /// records the end, and lets LND deal with the held HTLCs as when an
    /// interceptor goes away (unless `keep_held`, a server-side shutdown).
    fn detach(
        &mut self,
        status: Status,
        key: Option<Key>,
        violation: bool,
        keep_held: bool,
    ) -> bool {
        let Some(mut stream) = self.stream.take() else {
            return false;
        };
        self.stream_ends.push(StreamEnd {
            stream_gen: stream.gen,
            message: status.message().to_owned(),
            code: status.code(),
            key,
            violation,
            at: Instant::now(),
        });
        let _ = stream.to_client.send(Err(status));
        if let Some(stop) = stream.stop_reader.take() {
            let _ = stop.send(());
        }
        if !keep_held {
            self.resume_held_without_interceptor(LndAction::ResumedInterceptorGone);
        }
        true
    }

    /// The interceptor is gone: without `requireinterceptor`, LND resumes every
    /// held off-chain HTLC; on-chain ones stay (there is no link to resume them
    /// into). With `requireinterceptor` everything stays held for the next one.
    fn resume_held_without_interceptor(&mut self, action: LndAction) {
        if self.require_interceptor {
            return;
        }
        let now = Instant::now();
        let outcomes = &mut self.lnd_outcomes;
        self.held.retain(|&key, held| {
            if held.on_chain {
                return true;
            }
            outcomes.push(LndOutcome {
                key,
                action,
                at: now,
            });
            false
        });
    }

    fn end_stream_by_server(&mut self, why: &str) -> bool {
        self.detach(Status::unavailable(why), None, false, true)
    }

    /// The client went away (stream `gen` ended from its side).
    fn client_gone(&mut self, gen: u64, message: String) {
        if self.stream.as_ref().map(|s| s.gen) != Some(gen) {
            return;
        }
        tracing::info!(stream_gen = gen, %message, "mock LND: interceptor went away");
        self.detach(Status::unknown(message), None, false, false);
    }
}

/// The `routerrpc.Router` gRPC service of the mock.
struct RouterService {
    /// The mock's state.
    shared: Arc<Shared>,
}

/// What LND sends on the interceptor stream: requests, then possibly a final status.
type RequestStream = Pin<
    Box<
        dyn tokio_stream::Stream<Item = Result<ForwardHtlcInterceptRequest, Status>>
            + Send
            + 'static,
    >,
>;

#[tonic::async_trait]
impl Router for RouterService {
    type HtlcInterceptorStream = RequestStream;

    type SubscribeHtlcEventsStream = crate::mock_node::HtlcEventStream;

    async fn subscribe_htlc_events(
        &self,
        request: Request<crate::lnd::proto::routerrpc::SubscribeHtlcEventsRequest>,
    ) -> Result<Response<Self::SubscribeHtlcEventsStream>, Status> {
        self.shared.node.subscribe_htlc_events(&request)
    }

    async fn htlc_interceptor(
        &self,
        request: Request<Streaming<ForwardHtlcInterceptResponse>>,
    ) -> Result<Response<Self::HtlcInterceptorStream>, Status> {
        self.shared.node.authorize(
            &request,
            "HtlcInterceptor",
            crate::mock_node::OFFCHAIN_WRITE,
        )?;
        let mut inbound = request.into_inner();

        let (to_client, from_lnd) = mpsc::unbounded_channel();
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let gen = {
            let mut state = self.shared.lock();
            state.attach(to_client, stop_tx)?
        };
        self.shared.changed.notify_waiters();

        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    biased;
                    _ = &mut stop_rx => break,
                    m = inbound.message() => m,
                };
                let gone = match message {
                    Ok(Some(resp)) => {
                        let result = shared.lock().apply(gen, resp);
                        shared.changed.notify_waiters();
                        if result.is_err() {
                            break;
                        }
                        continue;
                    }
                    // grpc-go's Recv returns io.EOF when the client closes its side;
                    // LND returns that error, ending the stream.
                    Ok(None) => "EOF".to_owned(),
                    Err(status) => format!("interceptor went away: {}", status.message()),
                };
                shared.lock().client_gone(gen, gone);
                shared.changed.notify_waiters();
                break;
            }
        });

        // grpc-go sends the response headers with the first message (LND never
        // calls SendHeader), so the client's call completes only when the first
        // HTLC arrives, or fails with the status if the stream ends before that.
        let mut from_lnd = from_lnd;
        match from_lnd.recv().await {
            Some(Ok(first)) => {
                let rest = UnboundedReceiverStream::new(from_lnd);
                Ok(Response::new(Box::pin(
                    tokio_stream::once(Ok(first)).chain(rest),
                )))
            }
            Some(Err(status)) => Err(status),
            None => Err(Status::unknown("EOF")),
        }
    }
}

/// LND's macaroon check: exactly one `macaroon` metadata value, hex, equal to
/// the node's macaroon. Errors are plain Go errors (status Unknown) with LND's text.
/// Every mock service checks it (`mock_node.rs` too).
pub(crate) fn check_macaroon<T>(request: &Request<T>, macaroon: &[u8]) -> Result<(), Status> {
    let values: Vec<_> = request.metadata().get_all("macaroon").iter().collect();
    if values.len() != 1 {
        return Err(Status::unknown(format!(
            "expected 1 macaroon, got {}",
            values.len()
        )));
    }
    let text = values[0]
        .to_str()
        .map_err(|_| Status::unknown("encoding/hex: invalid byte"))?;
    let bytes = hex::decode(text).map_err(|e| {
        Status::unknown(match e {
            hex::FromHexError::OddLength => "encoding/hex: odd length hex string".to_owned(),
            hex::FromHexError::InvalidHexCharacter { c, .. } => {
                format!("encoding/hex: invalid byte: U+{:04X} {c:?}", c as u32)
            }
            other => format!("encoding/hex: {other}"),
        })
    })?;
    if bytes != macaroon {
        return Err(Status::unknown(MSG_MACAROON_MISMATCH));
    }
    Ok(())
}

/// Binds `addr` and serves the router with TLS until the returned server is stopped.
async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<(RunningServer, SocketAddr)> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .context("mock LND: cannot create a socket")?;
    socket
        .set_reuseaddr(true)
        .context("mock LND: SO_REUSEADDR")?;
    socket
        .bind(addr)
        .with_context(|| format!("mock LND: cannot bind {addr}"))?;
    let listener = socket
        .listen(1024)
        .with_context(|| format!("mock LND: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    let router = Server::builder()
        .tls_config(tls)
        .context("mock LND: TLS configuration")?
        .tcp_nodelay(true)
        .add_service(shared.node.lightning_server())
        .add_service(shared.node.chain_notifier_server())
        .add_service(RouterServer::new(RouterService { shared }));
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let incoming = TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let signal = async {
            let _ = shutdown_rx.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::warn!(addr = %local, error = %e, "mock LND server failed");
        }
    });
    Ok((RunningServer { shutdown, task }, local))
}

/// A certificate like LND's `tls.cert`: self-signed ECDSA P-256 with `CA:TRUE`,
/// SANs localhost, 127.0.0.1 and ::1. Returns (certificate PEM, key PEM).
fn lnd_like_certificate() -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "lnd autogenerated cert");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A short channel id as LND prints it in errors: `block:tx:output`.
fn short_channel_id(scid: u64) -> String {
    format!(
        "{}:{}:{}",
        scid >> 40,
        (scid >> 16) & 0xff_ffff,
        scid & 0xffff
    )
}

/// A circuit key for logs: `chan:htlc`.
fn circuit(key: Key) -> String {
    format!("{}:{}", key.0, key.1)
}
