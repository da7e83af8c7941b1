//! Hot reload while HTLCs flow: plugin files and the config rewritten under a
//! running stream; every HTLC answered exactly once with a verdict a live version
//! gives; a half-written plugin is refused and the old chain keeps deciding.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::forward;
use htlcgate::chain::Chain;
use htlcgate::config::Config;
use htlcgate::gate::Gate;
use htlcgate::journal::Journal;
use htlcgate::lnd::proto::routerrpc::ResolveHoldForwardAction as A;
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::wasm::engine::Sandbox;
use tokio::sync::{mpsc, watch};

/// Version A answers resume (onion-size: next, then the default); version B fail
/// (trap with on_fault = fail). Both accept the same config.
fn version(name: &str) -> Vec<u8> {
    std::fs::read(common::plugins_dir().join(format!("{name}.wasm"))).unwrap()
}

fn config_text(plugin: &Path, timeout_ms: u64) -> String {
    format!(
        "[chain]\ndefault_verdict = \"resume\"\n\n[[plugin]]\nname = \"p\"\npath = \"{}\"\non_fault = \"fail\"\ngrants = [\"onion-blob\"]\ntimeout_ms = {timeout_ms}\nmax_faults = 1000000\n",
        plugin.display()
    )
}

struct Setup {
    gate: Arc<Gate>,
    mock: MockLnd,
    stop: watch::Sender<bool>,
    plugin: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(first: &str) -> Setup {
    setup_with(first, |_| {}).await
}

/// [`setup`], with `meanwhile` run on the plugin file's path in the daemon's
/// start-up window: after the reload watcher is armed and the chain compiled,
/// before the reload task first runs.
async fn setup_with(first: &str, meanwhile: impl FnOnce(&Path)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("p.wasm");
    std::fs::write(&plugin, version(first)).unwrap();
    let config = dir.path().join("htlcgate.toml");
    std::fs::write(&config, config_text(&plugin, 50)).unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let cfg = Config::load(&config).unwrap();
    // As the daemon does: armed before the chain compiles.
    let armed = htlcgate::reload::Watch::arm(&cfg);
    let sandbox = Sandbox::new(&cfg.sandbox).unwrap();
    let chain = Chain::load(&sandbox, &cfg.plugins, cfg.chain.default_verdict.verdict()).unwrap();
    let gate: Arc<Gate> = Gate::new(chain, cfg.chain.clone(), Journal::in_memory(), None);
    let (stop, stop_rx) = watch::channel(false);
    let (_hup_tx, hup_rx) = mpsc::unbounded_channel();
    meanwhile(&plugin);
    let watching = armed.run(cfg, sandbox, gate.clone(), hup_rx, stop_rx.clone());
    tokio::spawn(watching);
    tokio::spawn(htlcgate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        stop_rx,
    ));
    mock.wait_connected(Duration::from_secs(10)).await.unwrap();
    Setup {
        gate,
        mock,
        stop,
        plugin,
        config,
        _dir: dir,
    }
}

/// Sends `n` HTLCs starting at id `from` and returns their actions once answered.
async fn decide(mock: &MockLnd, from: u64, n: u64) -> Vec<A> {
    let before = mock.resolution_count();
    for id in from..from + n {
        mock.send_htlc(forward(id, 1000, 2000));
    }
    mock.wait_resolved(before + n as usize, Duration::from_secs(30))
        .await
        .unwrap();
    let by_key: HashMap<_, _> = mock
        .resolutions()
        .into_iter()
        .map(|r| (r.key.1, r.response.action()))
        .collect();
    (from..from + n).map(|id| by_key[&id]).collect()
}

/// Waits until HTLCs get `want` (the reload landed), up to 10 s.
async fn until_verdict(mock: &MockLnd, next_id: &mut u64, want: A) {
    for _ in 0..100 {
        let got = decide(mock, *next_id, 1).await[0];
        *next_id += 1;
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the reload never took effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_wasm_is_refused_and_the_old_version_keeps_deciding() {
    let s = setup("trap").await;
    let mut id = 0;
    assert_eq!(decide(&s.mock, id, 5).await, vec![A::Fail; 5]);
    id += 5;
    let good = version("onion-size");
    std::fs::write(&s.plugin, &good[..good.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        decide(&s.mock, id, 5).await,
        vec![A::Fail; 5],
        "old version still decides"
    );
    id += 5;
    // Written completely: the next change is retried and lands.
    std::fs::write(&s.plugin, &good).unwrap();
    until_verdict(&s.mock, &mut id, A::Resume).await;
    assert_eq!(decide(&s.mock, id, 5).await, vec![A::Resume; 5]);
    assert!(s.mock.violations().is_empty());
    let _ = s.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_htlcs_through_50_plugin_swaps_and_10_config_rewrites() {
    let s = setup("onion-size").await;
    let a = version("onion-size");
    let b = version("trap");
    const N: u64 = 20_000;
    let mut swaps = 0;
    let mut rewrites = 0;
    for id in 0..N {
        s.mock.send_htlc(forward(id, 1000, 2000));
        if id % 400 == 399 {
            swaps += 1;
            std::fs::write(&s.plugin, if swaps % 2 == 1 { &b } else { &a }).unwrap();
            if swaps % 5 == 0 {
                rewrites += 1;
                std::fs::write(&s.config, config_text(&s.plugin, 50 + rewrites)).unwrap();
            }
            // Longer than the debounce, so that each version gets to decide.
            tokio::time::sleep(htlcgate::reload::DEBOUNCE * 2).await;
        }
    }
    assert_eq!((swaps, rewrites), (50, 10));
    s.mock
        .wait_resolved(N as usize, Duration::from_secs(120))
        .await
        .unwrap();
    let mut per_key: HashMap<(u64, u64), A> = HashMap::new();
    for r in s.mock.resolutions() {
        assert!(
            per_key.insert(r.key, r.response.action()).is_none(),
            "{:?} answered twice",
            r.key
        );
    }
    assert_eq!(per_key.len(), N as usize);
    let resumes = per_key.values().filter(|a| **a == A::Resume).count();
    let fails = per_key.values().filter(|a| **a == A::Fail).count();
    assert_eq!(
        resumes + fails,
        N as usize,
        "only verdicts a live version gives"
    );
    assert!(
        resumes > 0 && fails > 0,
        "both versions decided: {resumes} resume, {fails} fail"
    );
    assert!(s.mock.violations().is_empty(), "{:?}", s.mock.violations());
    assert_eq!(s.mock.connects(), 1);
    // The last write was version A (50 is even): new HTLCs get resume.
    let mut id = N;
    until_verdict(&s.mock, &mut id, A::Resume).await;
    assert_eq!(decide(&s.mock, id, 20).await, vec![A::Resume; 20]);
    let _ = s.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_is_one_reload_and_busy_neighbours_do_not_delay_it() {
    let s = setup("trap").await;
    // A file beside the config written all the time (like the journal).
    let neighbour = s.config.with_file_name("busy.log");
    let busy = tokio::spawn(async move {
        for i in 0..100u32 {
            std::fs::write(&neighbour, i.to_le_bytes()).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    std::fs::write(&s.plugin, version("onion-size")).unwrap();
    let mut id = 0;
    until_verdict(&s.mock, &mut id, A::Resume).await;
    // The reload read the files it watches; reading is no change.
    tokio::time::sleep(htlcgate::reload::DEBOUNCE * 8).await;
    assert_eq!(s.gate.swaps(), 1, "reloads without a change");
    busy.abort();
    let _ = s.stop.send(true);
}

/// A plugin file replaced while the daemon starts (its chain compiling, or the
/// reload task not run yet on a busy runtime) still reloads. (The watcher was set
/// up in the task's first poll, after the chain compiled: such a change was lost,
/// and this test's neighbour flaked under a loaded test run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_while_the_daemon_starts_is_not_lost() {
    let s = setup_with("trap", |plugin| {
        std::fs::write(plugin, version("onion-size")).unwrap();
    })
    .await;
    let mut id = 0;
    until_verdict(&s.mock, &mut id, A::Resume).await;
    assert_eq!(s.gate.swaps(), 1);
    let _ = s.stop.send(true);
}

/// An operator adds a plugin to the config before its file is in place (in a
/// directory not watched yet): the reload is refused; once the file is there,
/// it loads, without touching the config again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_named_in_the_config_before_its_file_exists_loads_once_the_file_arrives() {
    let s = setup("trap").await;
    let mut id = 0;
    assert_eq!(decide(&s.mock, id, 3).await, vec![A::Fail; 3]);
    id += 3;
    let later_dir = s.config.with_file_name("later");
    std::fs::create_dir(&later_dir).unwrap();
    let later = later_dir.join("p.wasm");
    std::fs::write(&s.config, config_text(&later, 50)).unwrap();
    tokio::time::sleep(htlcgate::reload::DEBOUNCE * 3).await;
    assert_eq!(
        s.gate.swaps(),
        0,
        "a chain without its plugin file was swapped in"
    );
    assert_eq!(
        decide(&s.mock, id, 3).await,
        vec![A::Fail; 3],
        "old chain decides"
    );
    id += 3;
    std::fs::write(&later, version("onion-size")).unwrap();
    until_verdict(&s.mock, &mut id, A::Resume).await;
    assert_eq!(s.gate.swaps(), 1);
    assert!(s.mock.violations().is_empty());
    let _ = s.stop.send(true);
}
