//! The funds-safety promises, each proved against the mock LND or the real sandbox:
//! durable verdicts through a crash, an LND that vanishes, on-chain HTLCs, plugin
//! integrity and capability grants.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{forward, plugin, plugin_with};
use htlcgate::chain::Chain;
use htlcgate::config::{ChainConfig, OnFault, PluginConfig, SandboxConfig};
use htlcgate::gate::Gate;
use htlcgate::journal::{Journal, Retention};
use htlcgate::lnd::proto::routerrpc::ResolveHoldForwardAction;
use htlcgate::mock_lnd::{sample_preimage, MockLnd, MockOptions};
use htlcgate::verdict::Verdict;
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::plugin::{LoadError, Plugin};
use tokio::sync::{mpsc, watch};

fn chain(plugins: &[PluginConfig]) -> Chain {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    Chain::load(&sandbox, plugins, Verdict::Resume).unwrap_or_else(|e| panic!("{e}"))
}

/// Traps on every second call of an instance, on_fault = fail: a plugin whose
/// second decision differs from its first.
fn flip_flop() -> PluginConfig {
    let mut p = plugin_with("trap", &[("every", "2")]);
    p.on_fault = OnFault::Fail;
    p
}

async fn answer(
    rx: &mut mpsc::UnboundedReceiver<htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse>,
) -> ResolveHoldForwardAction {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .action()
}

/// Key 1:7, as [`forward`]`(7, ..)` asks about it.
/// Opens a stream on `gate` and offers it HTLC 7 (key 1:7); its answers arrive
/// on the returned receiver.
fn offer_7(
    gate: &Arc<Gate>,
) -> mpsc::UnboundedReceiver<htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse> {
    let (tx, rx) = mpsc::unbounded_channel();
    let s = gate.open_stream(tx);
    gate.on_request(s, forward(7, 1_000_000, 2_000));
    rx
}

const KEY_1_7: htlcgate::circuit::CircuitKey = htlcgate::circuit::CircuitKey {
    chan_id: 1,
    htlc_id: 7,
};

/// A journal at `path` kept from another node or chain: its entry for key 1:7 is
/// another HTLC's `verdict`, recorded with that HTLC's payment hash `hash` (or
/// without one, as before hashes were recorded), with that HTLC's on-chain mark
/// if `on_chain`.
async fn journal_of_another_htlc(
    path: &std::path::Path,
    hash: Option<[u8; 32]>,
    verdict: Verdict,
    on_chain: bool,
) {
    let journal = Journal::open(path, Retention::default()).unwrap();
    journal
        .record_for(KEY_1_7, hash, &verdict, 800_134)
        .await
        .unwrap();
    if on_chain {
        journal.mark_on_chain(&[KEY_1_7]).unwrap();
    }
    journal.sync().await.unwrap();
}

/// A gate over the journal at `path` whose chain is `fixed-verdict` answering
/// `verdict`.
fn fixed_gate(path: &std::path::Path, verdict: &str) -> Arc<Gate> {
    Gate::new(
        chain(&[plugin_with("fixed-verdict", &[("verdict", verdict)])]),
        ChainConfig::default(),
        Journal::open(path, Retention::default()).unwrap(),
        None,
    )
}

#[tokio::test]
async fn after_a_restart_a_replayed_htlc_gets_its_journaled_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htlcgate.journal");
    {
        let gate = Gate::new(
            chain(&[flip_flop()]),
            ChainConfig::default(),
            Journal::open(&path, Retention::default()).unwrap(),
            None,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let s = gate.open_stream(tx);
        gate.on_request(s, forward(1, 1000, 2000));
        assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Resume);
        // htlcgate dies here; LND never saw the answer and will replay key 1.
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gate = Gate::new(
        chain(&[flip_flop()]),
        ChainConfig::default(),
        Journal::open(&path, Retention::default()).unwrap(),
        None,
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let s = gate.open_stream(tx);
    // A new HTLC takes the fresh instance's first call (resume) ...
    gate.on_request(s, forward(2, 1000, 2000));
    assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Resume);
    // ... so deciding key 1 again would give fail; the journal gives resume.
    gate.on_request(s, forward(1, 1000, 2000));
    assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Resume);
    gate.on_request(s, forward(3, 1000, 2000));
    assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Fail);
}

/// A journal reused where its keys name other HTLCs (a regtest reset, or a
/// config directory moved to another node or chain) held a settle for the key.
/// Replaying it would send a preimage that does not hash to this HTLC's payment
/// hash: the HTLC is decided afresh instead, never settled with it.
#[tokio::test]
async fn a_journaled_settle_whose_preimage_does_not_fit_this_htlc_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htlcgate.journal");
    // The settle another HTLC with this key got (its own preimage), recorded
    // before payment hashes were.
    let other = Verdict::Settle(sample_preimage(99, 99));
    journal_of_another_htlc(&path, None, other, false).await;
    let gate = Gate::new(
        chain(&[plugin("fee-floor")]),
        ChainConfig::default(),
        Journal::open(&path, Retention::default()).unwrap(),
        None,
    );
    let mut rx = offer_7(&gate);
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        got.action(),
        ResolveHoldForwardAction::Settle,
        "a settle with another HTLC's preimage was sent: {got:?}"
    );
    assert_eq!(got.action(), ResolveHoldForwardAction::Resume);
    // LND replaying it on the next stream: the stale settle is refused again and
    // the HTLC decided again (the journal keeps the first entry per key; here the
    // chain decides the same way).
    let mut rx = offer_7(&gate);
    assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Resume);
}

/// A journal kept across a reset holds another HTLC's verdict for a key,
/// recorded with that HTLC's payment hash. A new HTLC under the key is not
/// answered with it (a stale resume would bypass every policy): the chain
/// decides, the fresh verdict replaces the entry, and LND replaying the new
/// HTLC after a restart gets that verdict, not a new decision.
#[tokio::test]
async fn a_journaled_verdict_of_another_htlc_under_the_same_key_is_replaced_by_this_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htlcgate.journal");
    journal_of_another_htlc(&path, Some([0xaa; 32]), Verdict::Resume, true).await;
    // Marks count in whole seconds, and only one older than the new verdict is
    // the other HTLC's (a journal kept across a reset has them from long ago).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    {
        let gate = fixed_gate(&path, "fail");
        let mut rx = offer_7(&gate);
        assert_eq!(
            answer(&mut rx).await,
            ResolveHoldForwardAction::Fail,
            "the other HTLC's resume (or its on-chain mark) was applied"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A restart with a chain that would resume: the replay gets the journaled fail.
    let gate = fixed_gate(&path, "resume");
    let mut rx = offer_7(&gate);
    assert_eq!(answer(&mut rx).await, ResolveHoldForwardAction::Fail);
}

/// An on-chain mark this process made (LND refused the current HTLC's answer)
/// stays even while the journal's entry for the key is still another HTLC's (the
/// new verdict not journaled, e.g. the journal's writer gone): dropping it would
/// answer the on-chain HTLC again and end the stream on every reconnect.
#[tokio::test]
async fn an_on_chain_mark_made_by_this_process_outlives_a_stale_journal_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htlcgate.journal");
    journal_of_another_htlc(&path, Some([0xaa; 32]), Verdict::Resume, false).await;
    let gate = fixed_gate(&path, "resume");
    gate.mark_on_chain(&[KEY_1_7]);
    let mut rx = offer_7(&gate);
    let got = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(got.is_err(), "an HTLC held on-chain was answered: {got:?}");
}

/// Waits until HTLCs 0..n on channel 1 are answered, then checks: each exactly
/// once, failed where `fails(id)`, resumed otherwise, no rule broken, none
/// resolved by LND itself.
async fn assert_each_answered_once(
    mock: &MockLnd,
    n: u64,
    limit: Duration,
    fails: impl Fn(u64) -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while (mock.resolution_count() as u64) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} answered",
            mock.resolution_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = HashMap::new();
    for res in mock.resolutions() {
        assert!(
            seen.insert(res.key, res.response.action()).is_none(),
            "{:?} twice",
            res.key
        );
    }
    for id in 0..n {
        let want = if fails(id) {
            ResolveHoldForwardAction::Fail
        } else {
            ResolveHoldForwardAction::Resume
        };
        assert_eq!(seen[&(1, id)], want, "htlc {id}");
    }
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    assert!(mock.lnd_outcomes().is_empty());
}

struct Running {
    gate: Arc<Gate>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn run(mock: &MockLnd, plugins: &[PluginConfig]) -> Running {
    let gate = Gate::new(
        chain(plugins),
        ChainConfig::default(),
        Journal::in_memory(),
        None,
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(htlcgate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        rx,
    ));
    Running { gate, stop, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_chain_htlc_ends_the_stream_once_not_on_every_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path());
    opts.require_interceptor = true;
    let mock = MockLnd::start(opts).await.unwrap();
    let r = run(&mock, &[]);
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    // The incoming channel was force-closed: LND refuses our resume once.
    mock.send_htlc_on_chain(forward(1, 1000, 2000));
    mock.wait_stream_ends(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(mock.violations().len(), 1);
    assert!(mock.violations()[0].message.contains("on-chain flow"));
    // htlcgate reconnects; LND replays the key; htlcgate must not answer it.
    mock.wait_connects(2, Duration::from_secs(10))
        .await
        .unwrap();
    mock.send_htlc(forward(2, 1000, 2000));
    mock.wait_resolved(1, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.violations().len(), 1, "{:?}", mock.violations());
    assert!(mock.is_held((1, 1)), "the on-chain HTLC stays with LND");
    assert_eq!(mock.resolutions()[0].key, (1, 2));
    let _ = r.stop.send(true);
    let _ = r.task.await;
    drop(r.gate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_chain_htlc_is_settled_when_the_chain_says_settle() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    let pre = hex::encode(sample_preimage(1, 1));
    let r = run(
        &mock,
        &[plugin_with(
            "fixed-verdict",
            &[("verdict", "settle-config"), ("preimage", &pre)],
        )],
    );
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    mock.send_htlc_on_chain(forward(1, 1000, 2000));
    mock.wait_resolved(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        mock.resolutions()[0].response.action(),
        ResolveHoldForwardAction::Settle
    );
    assert!(mock.violations().is_empty());
    let _ = r.stop.send(true);
    let _ = r.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lnd_vanishing_for_five_seconds_loses_nothing_and_answers_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path());
    opts.require_interceptor = true;
    let mut mock = MockLnd::start(opts).await.unwrap();
    let mut slow = plugin("spin-forever");
    slow.fuel = u64::MAX / 2;
    slow.timeout = Duration::from_millis(20);
    slow.max_faults = 1_000_000;
    let r = run(
        &mock,
        &[slow, plugin_with("fee-floor", &[("base_msat", "1000")])],
    );
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    for id in 0..40 {
        mock.send_htlc(forward(id, 100_000, if id % 3 == 0 { 10 } else { 5000 }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    mock.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    mock.restart().await.unwrap();
    assert_each_answered_once(&mock, 40, Duration::from_secs(40), |id| id % 3 == 0).await;
    let _ = r.stop.send(true);
    let _ = r.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_past_its_auto_fail_height_is_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path())).await.unwrap();
    let r = run(&mock, &[plugin_with("fee-floor", &[("base_msat", "1000")])]);
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    let mut req = forward(1, 1000, 2000);
    req.auto_fail_height = 0;
    mock.send_htlc(req);
    let mut req = forward(2, 1000, 2000);
    req.auto_fail_height = -1;
    mock.send_htlc(req);
    mock.wait_resolved(2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(mock.violations().is_empty());
    let _ = r.stop.send(true);
    let _ = r.task.await;
}

#[test]
fn a_plugin_whose_sha256_does_not_match_is_refused() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut cfg = plugin("fee-floor");
    cfg.sha256 = Some("00".repeat(32));
    let err = Plugin::load(&sandbox, cfg.clone()).err().unwrap();
    assert!(matches!(err, LoadError::IntegrityMismatch { .. }), "{err}");
    assert!(err.to_string().contains("update `sha256`"), "{err}");
    use sha2::Digest;
    cfg.sha256 = Some(hex::encode(sha2::Sha256::digest(
        std::fs::read(&cfg.path).unwrap(),
    )));
    Plugin::load(&sandbox, cfg).unwrap();
}

#[test]
fn a_plugin_importing_an_ungranted_capability_is_refused_naming_it() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let err = Plugin::load(&sandbox, plugin("onion-size")).err().unwrap();
    assert!(matches!(err, LoadError::NotGranted { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`onion-blob`") && msg.contains("grants = [\"onion-blob\"]"),
        "{msg}"
    );
    let mut granted = plugin("onion-size");
    granted.grants = vec!["onion-blob".into()];
    let mut p = Plugin::load(&sandbox, granted).unwrap();
    let (step, _) = p.decide(&common::input(forward(1, 1000, 10)));
    assert_eq!(
        step,
        htlcgate::wasm::plugin::Step::Next,
        "1366-byte onion read"
    );
}

/// kill -9 of the htlcgate binary with HTLCs in flight, then a restart on the same
/// journal: every held HTLC gets exactly one valid answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_htlcs_in_flight_then_restart_answers_each_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MockOptions::new(dir.path().join("lnd"));
    opts.require_interceptor = true;
    let mock = MockLnd::start(opts).await.unwrap();
    let plugins = common::plugins_dir();
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lnd]\nrpcserver = \"{}\"\ntlscertpath = \"{}\"\nmacaroonpath = \"{}\"\n\n\
             [[plugin]]\nname = \"slow\"\npath = \"{}\"\nfuel = 1000000000000\ntimeout_ms = 100\nmax_faults = 1000000\n\n\
             [[plugin]]\nname = \"fee-floor\"\npath = \"{}\"\n[plugin.config]\nbase_msat = 1000\n",
            mock.addr(),
            mock.cert_path().display(),
            mock.macaroon_path().display(),
            plugins.join("spin-forever.wasm").display(),
            plugins.join("fee-floor.wasm").display(),
        ),
    )
    .unwrap();
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    mock.wait_connected(Duration::from_secs(20)).await.unwrap();
    for id in 0..12 {
        mock.send_htlc(forward(id, 100_000, if id % 2 == 0 { 10 } else { 5000 }));
    }
    // About half are decided (100 ms each, one at a time) when the process dies.
    tokio::time::sleep(Duration::from_millis(550)).await;
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let before = mock.resolution_count();
    assert!(before < 12, "the kill came too late to test anything");
    let mut second = spawn();
    assert_each_answered_once(&mock, 12, Duration::from_secs(30), |id| id % 2 == 0).await;
    assert!(dir.path().join("htlcgate.journal").is_file());
    second.start_kill().unwrap();
    let _ = second.wait().await;
}
