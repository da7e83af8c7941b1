//! Plugin state (the `kv` import): granted per plugin, bounded, shared by the
//! versions of a plugin across hot swaps, and durable across a `kill -9`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::plugin_with;
use common::process::{spawn, wait_for_line};
use htlcgate::chain::Chain;
use htlcgate::config::{KvLimits, SandboxConfig};
use htlcgate::lnd::proto::routerrpc::ResolveHoldForwardAction as A;
use htlcgate::mock_lnd::{sample_request, MockLnd, MockOptions};
use htlcgate::verdict::{FailCode, Verdict};
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::input::HtlcInput;
use htlcgate::wasm::plugin::{LoadError, Plugin};

fn rate_limit(max: &str) -> htlcgate::config::PluginConfig {
    let mut p = plugin_with("rate-limit", &[("max_htlcs", max), ("window_secs", "3600")]);
    p.grants = vec!["kv".into()];
    p
}

#[test]
fn a_plugin_importing_kv_without_the_grant_is_refused_naming_it() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut p = rate_limit("3");
    p.grants.clear();
    let err = Plugin::load(&sandbox, p).err().expect("refused");
    let msg = err.to_string();
    match err {
        LoadError::NotGranted { import, grant, .. } => {
            assert!(import.starts_with("kv-"), "{import}");
            assert_eq!(grant, "kv");
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(msg.contains("grants = [\"kv\"]"), "{msg}");
}

/// rate-limit keeps 541 bytes per channel: a `kv_max_value_bytes` below that is
/// refused at load, naming the fix (every write would fail, and rate-limit lets
/// HTLCs through when its store fails: the limit would be off without a word
/// but an error log per HTLC).
#[test]
fn rate_limit_refuses_a_value_limit_its_counters_do_not_fit() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut p = rate_limit("1");
    p.kv = KvLimits {
        max_value_bytes: 300,
        ..KvLimits::default()
    };
    let err = Plugin::load(&sandbox, p)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("kv_max_value_bytes = 300") && err.contains("at least 541"),
        "{err}"
    );
}

async fn decide(chain: &Chain, chan: u64, id: u64) -> Verdict {
    let input = std::sync::Arc::new(HtlcInput::from_request(sample_request(chan, id)).unwrap());
    chain.decide(input).await.unwrap().verdict
}

#[tokio::test]
async fn a_write_beyond_the_limits_is_refused_and_forwarding_goes_on() {
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut p = rate_limit("1");
    p.kv = KvLimits {
        max_keys: 2,
        ..KvLimits::default()
    };
    let chain = Chain::load(&sandbox, &[p], Verdict::Resume).unwrap();
    let fail = Verdict::Fail(FailCode::TemporaryChannelFailure);
    for chan in [1, 2] {
        assert_eq!(decide(&chain, chan, 0).await, Verdict::Resume);
        assert_eq!(decide(&chain, chan, 1).await, fail);
    }
    // A third channel's counters do not fit (kv_max_keys = 2): the plugin is told,
    // logs it and answers `next`; nothing is counted, nothing stalls.
    for id in 0..3 {
        assert_eq!(decide(&chain, 3, id).await, Verdict::Resume);
    }
    assert_eq!(sandbox.kv.namespace("rate-limit").unwrap().len(), 2);
}

/// Appends a custom section: a different file (a new version to the watcher and
/// the compile cache) with the same behaviour.
fn new_version(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"htlcgate-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    assert!(payload.len() < 128);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

/// `rate-limit` (3 per channel per hour) counts 3 HTLCs, is swapped for a new
/// version, counts on, htlcgate is killed with SIGKILL and restarted: each step
/// continues from the counters the previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_counters_survive_a_hot_swap_and_a_kill_9_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let original = std::fs::read(common::plugins_dir().join("rate-limit.wasm")).unwrap();
    let wasm = dir.path().join("rate-limit.wasm");
    std::fs::write(&wasm, &original).unwrap();
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lnd]\nrpcserver = \"{}\"\ntlscertpath = \"{}\"\nmacaroonpath = \"{}\"\n\n\
             [sandbox]\ncache_dir = \"{}\"\n\n\
             [[plugin]]\nname = \"rate-limit\"\npath = \"{}\"\ngrants = [\"kv\"]\n\
             config = {{ max_htlcs = \"3\", window_secs = \"3600\" }}\n",
            mock.addr(),
            mock.cert_path().display(),
            mock.macaroon_path().display(),
            dir.path().join("cache").display(),
            wasm.display(),
        ),
    )
    .unwrap();
    let (log1, log2) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let mut sent = 0;
    let mut send = |chan: u64, id: u64| {
        mock.send_htlc(sample_request(chan, id));
        sent += 1;
        sent
    };

    let mut first = spawn(&cfg, &log1, "info");
    mock.wait_connected(Duration::from_secs(30)).await.unwrap();
    for id in 0..4 {
        send(7, id);
    }
    mock.wait_resolved(4, Duration::from_secs(20))
        .await
        .unwrap();

    // Swap in a new version the way an operator would: write beside, rename over.
    let tmp = dir.path().join("rate-limit.wasm.new");
    std::fs::write(&tmp, new_version(&original, "2")).unwrap();
    std::fs::rename(&tmp, &wasm).unwrap();
    wait_for_line(&log1, "reloaded").await;
    send(7, 4);
    let n = send(8, 0);
    mock.wait_resolved(n, Duration::from_secs(20))
        .await
        .unwrap();

    first.start_kill().unwrap(); // SIGKILL: no shutdown code runs
    first.wait().await.unwrap();
    let mut second = spawn(&cfg, &log2, "info");
    mock.wait_connects(2, Duration::from_secs(30))
        .await
        .unwrap();
    send(7, 5);
    for id in 1..4 {
        send(8, id);
    }
    let n = sent;
    mock.wait_resolved(n, Duration::from_secs(20))
        .await
        .unwrap();
    second.start_kill().unwrap();
    let _ = second.wait().await;

    let mut got = HashMap::new();
    for r in mock.resolutions() {
        assert!(
            got.insert(r.key, r.response.action()).is_none(),
            "{:?} answered twice",
            r.key
        );
    }
    // HTLCs sent together may reach the plugin in any order: count per group.
    let resumed = |chan: u64, ids: std::ops::Range<u64>| {
        ids.filter(|id| {
            let a = got.get(&(chan, *id)).copied();
            assert!(a.is_some(), "htlc {chan}:{id} unanswered");
            a == Some(A::Resume)
        })
        .count()
    };
    // First process: three of four let through.
    assert_eq!(resumed(7, 0..4), 3);
    // New version: 7 still full; 8 is new.
    assert_eq!(resumed(7, 4..5), 0);
    assert_eq!(resumed(8, 0..1), 1);
    // After kill -9 and restart: 7 still full; 8 had two left.
    assert_eq!(resumed(7, 5..6), 0);
    assert_eq!(resumed(8, 1..4), 2);
    assert_eq!(got.len(), 10);
    assert!(got.values().all(|a| matches!(a, A::Resume | A::Fail)));
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
}
