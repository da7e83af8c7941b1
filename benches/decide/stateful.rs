//! The stateful example plugins: `rate-limit` (`kv`) and `circuitbreaker` (`kv`,
//! the node context, `outcome`). Their configs, the node context the
//! circuitbreaker needs (read once from an in-process mock LND, before anything
//! is timed), the outcome that resolves the benchmark HTLC, and the setup checks
//! (once, not timed) that every benchmark iteration really reads and writes the
//! plugin's state: never a cheap path such as an unknown channel's early `next`
//! or a refused `kv` write answered with `next`.
//!
//! The checks read the state through a plain getter, so the same check runs
//! against htlcgate's store (the wasm plugin) and the SDK's native stand-in (the
//! same crate compiled natively).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use htlcgate::circuit::Scid;
use htlcgate::config::KvLimits;
use htlcgate::kv::Namespace;
use htlcgate::lnd::feature::Features;
use htlcgate::lnd::node::{NodeContext, NodeOptions};
use htlcgate::mock_lnd::{sample_preimage, MockLnd, MockOptions};
use htlcgate::mock_node::sample_channel;
use htlcgate::wasm::bindings::{CircuitKey, Htlc, HtlcOutcome, OutcomeKind};
use htlcgate_sdk::NodeId;

/// `rate-limit`'s config: `max_htlcs` far above the calls of a whole run (a few
/// million at most, all inside one window of an hour), so the verdict stays
/// `next` and every call reads the channel's counters, counts the HTLC and
/// writes them back.
pub const RATE_LIMIT: &[(&str, &str)] = &[("max_htlcs", "1000000000"), ("window_secs", "3600")];

/// `rate-limit`'s slot length with [`RATE_LIMIT`]'s window, ms.
const RATE_LIMIT_SLOT_MS: u64 = 3_600_000 / rate_limit::SLOTS as u64;

/// `circuitbreaker`'s config: mode `fail` with both limits on, so each HTLC is
/// counted in flight and takes a token, but never reached: `max_pending` at its
/// most (170; here one HTLC is in flight at a time) and a bucket of 4e9 tokens
/// refilled at the most rate allowed (a million per second, one per µs), which
/// no run empties.
pub const CIRCUITBREAKER: &[(&str, &str)] = &[
    ("mode", "fail"),
    ("max_pending", "170"),
    ("max_hourly_rate", "3600000000"),
    ("burst", "4000000000"),
];

/// A full bucket with [`CIRCUITBREAKER`]'s burst, in the plugin's units (see
/// plugins/circuitbreaker/src/state.rs).
const FULL_BUCKET: u64 = 4_000_000_000 * circuitbreaker::state::UNITS_PER_TOKEN;

/// A value of a plugin's state store, by key (`None`: absent).
pub type Get<'a> = &'a dyn Fn(&[u8]) -> Option<Vec<u8>>;

/// A getter over a plugin's namespace in htlcgate's store.
pub fn host_get(ns: &Arc<Namespace>) -> impl Fn(&[u8]) -> Option<Vec<u8>> + '_ {
    |key| {
        ns.get(key, &KvLimits::default())
            .expect("a benchmark key is within the limits")
    }
}

/// A getter over this thread's SDK stand-in store (the native plugins).
pub fn native_get(key: &[u8]) -> Option<Vec<u8>> {
    htlcgate_sdk::kv::get(key).expect("a benchmark key is within the limits")
}

/// The peer of the benchmark's incoming channel: the mock LND's `sample_channel`
/// peer, which the node context reports.
pub fn peer() -> anyhow::Result<NodeId> {
    let hex = sample_channel(crate::common::INCOMING_CHAN).remote_pubkey;
    hex.parse()
        .map_err(|e| anyhow::anyhow!("the mock channel's peer {hex}: {e}"))
}

/// A node context that knows the benchmark's incoming channel (the mock LND's
/// `sample_channel`) and the block height, read from an in-process mock LND.
/// Its background tasks are then stopped and the mock shut down, so nothing runs
/// beside the benchmarks; the context keeps what it read (plugin reads of it are
/// memory lookups either way).
pub fn node_context() -> anyhow::Result<NodeContext> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the mock LND")?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let mock = MockLnd::start(MockOptions::new(dir.path())).await?;
        mock.node()
            .set_channels(vec![sample_channel(crate::common::INCOMING_CHAN)]);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let node = NodeContext::spawn(
            mock.endpoint(),
            NodeOptions::default(),
            Features::new(),
            stop_rx,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.channel(Scid(crate::common::INCOMING_CHAN)).is_none() || node.height().is_none()
        {
            ensure!(
                Instant::now() < deadline,
                "the node context did not load the channel and height from the mock LND in 30 s: {:?}",
                node.features()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), node.join())
            .await
            .context("the node context's tasks did not stop")?;
        drop(mock);
        Ok(node)
    })
}

/// The outcome that resolves the benchmark HTLC `h`: settled downstream with its
/// preimage (a `forwarded` outcome would not: the HTLC stays in flight).
pub fn settled(h: &Htlc) -> HtlcOutcome {
    let key = h.incoming_circuit_key;
    HtlcOutcome {
        incoming_circuit_key: key,
        outgoing_circuit_key: Some(CircuitKey {
            chan_id: h.outgoing_requested_chan_id,
            htlc_id: key.htlc_id,
        }),
        kind: OutcomeKind::Settled(sample_preimage(key.chan_id, key.htlc_id).to_vec()),
        at_unix_ms: 1_700_000_000_000,
    }
}

/// The same outcome as the SDK's `Outcome` (what the native plugin gets).
pub fn sdk_settled(h: &Htlc) -> htlcgate_sdk::Outcome {
    let key = h.incoming_circuit_key;
    htlcgate_sdk::Outcome {
        outgoing: Some(htlcgate_sdk::CircuitKey::new(
            htlcgate_sdk::Scid(h.outgoing_requested_chan_id),
            key.htlc_id,
        )),
        at_unix_ms: 1_700_000_000_000,
        ..htlcgate_sdk::Outcome::new(
            htlcgate_sdk::CircuitKey::new(htlcgate_sdk::Scid(key.chan_id), key.htlc_id),
            htlcgate_sdk::OutcomeKind::Settled(Some(sample_preimage(key.chan_id, key.htlc_id))),
        )
    }
}

/// HTLCs `rate-limit` counted on the benchmark channel in the current window.
fn rate_limit_count(get: Get<'_>) -> anyhow::Result<u64> {
    let mut key = b"chan:".to_vec();
    key.extend_from_slice(&crate::common::INCOMING_CHAN.to_be_bytes());
    let Some(bytes) = get(&key) else {
        return Ok(0);
    };
    let now = htlcgate_sdk::now_unix_ms();
    let mut window = rate_limit::Window::decode(&bytes, RATE_LIMIT_SLOT_MS, now)
        .context("rate-limit's counters are unreadable")?;
    Ok(window.count(now))
}

/// Checks that one `decide` (true: it said `next`) counts the HTLC in the
/// channel's stored counters: the call read and wrote its state.
pub fn check_rate_limit(
    what: &str,
    decide: &mut dyn FnMut() -> bool,
    get: Get<'_>,
) -> anyhow::Result<()> {
    let before = rate_limit_count(get)?;
    ensure!(decide(), "{what} must say next to the benchmark HTLC");
    let after = rate_limit_count(get)?;
    ensure!(
        after == before + 1,
        "{what} must count the HTLC in kv: {before} -> {after}"
    );
    Ok(())
}

/// One half of a circuitbreaker iteration.
#[derive(Clone, Copy, Debug)]
pub enum Half {
    /// `decide` on the benchmark HTLC; true: it said `next`.
    Decide,
    /// The outcome that resolves it; true: no fault.
    Outcome,
}

/// A key of circuitbreaker's store: `tag` + the benchmark peer (state.rs).
fn peer_key(tag: u8, peer: &NodeId) -> Vec<u8> {
    let mut key = vec![tag];
    key.extend_from_slice(peer.as_bytes());
    key
}

/// Checks two iterations of `decide` + its outcome against circuitbreaker's
/// store: after `decide` the HTLC is the peer's one in-flight entry, the channel's
/// peer is stored and a token was taken; after the outcome the entry and the
/// channel key are gone (the state is back where it was: bounded) and the bucket
/// stays.
pub fn check_breaker(
    what: &str,
    call: &mut dyn FnMut(Half) -> bool,
    get: Get<'_>,
    h: &Htlc,
) -> anyhow::Result<()> {
    let peer = peer()?;
    let (inflight, bucket) = (peer_key(b'f', &peer), peer_key(b'b', &peer));
    let mut chan = vec![b'c'];
    chan.extend_from_slice(&h.incoming_circuit_key.chan_id.to_be_bytes());
    ensure!(get(&inflight).is_none(), "{what}: nothing in flight yet");
    for round in 1..=2 {
        ensure!(
            call(Half::Decide),
            "{what} must say next to the benchmark HTLC (round {round})"
        );
        let list = get(&inflight).with_context(|| {
            format!("{what} did not count the HTLC in flight (unknown channel: no node context?)")
        })?;
        // Format byte, then 24 bytes per entry: chan, htlc id, expiry, admitted.
        ensure!(
            list.len() == 1 + 24
                && list[1..9] == h.incoming_circuit_key.chan_id.to_le_bytes()
                && list[9..17] == h.incoming_circuit_key.htlc_id.to_le_bytes(),
            "{what}: the in-flight list must hold exactly the benchmark HTLC: {list:?}"
        );
        ensure!(
            get(&chan).is_some(),
            "{what}: the channel's peer must be stored"
        );
        let level = get(&bucket)
            .filter(|b| b.len() == 17)
            .map(|b| u64::from_le_bytes(b[1..9].try_into().expect("8 bytes")))
            .with_context(|| format!("{what}: no token bucket stored"))?;
        ensure!(level < FULL_BUCKET, "{what}: no token taken");
        ensure!(call(Half::Outcome), "{what}: the outcome must not fault");
        ensure!(
            get(&inflight).is_none() && get(&chan).is_none(),
            "{what}: the outcome must end the HTLC's entry"
        );
        ensure!(get(&bucket).is_some(), "{what}: the bucket stays");
    }
    Ok(())
}
