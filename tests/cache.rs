//! The compiled-code cache: unchanged plugins skip compilation; corrupt or foreign
//! entries are detected, ignored and rebuilt, never trusted.

mod common;

use common::{forward, input, plugin_with};
use htlcgate::config::SandboxConfig;
use htlcgate::verdict::{FailCode, Verdict};
use htlcgate::wasm::cache::CacheOutcome;
use htlcgate::wasm::engine::Sandbox;
use htlcgate::wasm::plugin::{Plugin, Step};

fn sandbox(dir: &std::path::Path) -> Sandbox {
    Sandbox::new(&SandboxConfig {
        cache_dir: Some(dir.to_owned()),
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::plugins_dir().join(format!("{name}.wasm"))).unwrap()
}

#[test]
fn an_unchanged_plugin_is_loaded_from_the_cache_and_still_decides() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(dir.path());
    let fee = bytes("fee-floor");
    assert_eq!(sb.compile(&fee).unwrap().1, CacheOutcome::Miss);
    assert_eq!(sb.compile(&fee).unwrap().1, CacheOutcome::Hit);
    // A new engine (a restart) with the same settings hits too.
    let restarted = sandbox(dir.path());
    assert_eq!(restarted.compile(&fee).unwrap().1, CacheOutcome::Hit);
    let mut p = Plugin::load(
        &restarted,
        plugin_with("fee-floor", &[("base_msat", "1000")]),
    )
    .unwrap();
    assert_eq!(
        p.decide(&input(forward(1, 100_000, 10))).0,
        Step::Verdict(Verdict::Fail(FailCode::TemporaryChannelFailure))
    );
}

#[test]
fn a_corrupted_cache_entry_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(dir.path());
    let fee = bytes("fee-floor");
    sb.compile(&fee).unwrap();
    let entry = sb.cache.as_ref().unwrap().entry_path(&fee);
    let mut data = std::fs::read(&entry).unwrap();
    let last = data.len() - 100;
    data[last] ^= 0xff;
    std::fs::write(&entry, &data).unwrap();
    assert_eq!(sb.compile(&fee).unwrap().1, CacheOutcome::Rebuilt);
    assert_eq!(sb.compile(&fee).unwrap().1, CacheOutcome::Hit, "rewritten");
    // Truncated.
    std::fs::write(&entry, &data[..data.len() / 3]).unwrap();
    assert_eq!(sb.compile(&fee).unwrap().1, CacheOutcome::Rebuilt);
}

#[test]
fn a_foreign_entry_under_a_plugins_name_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(dir.path());
    let fee = bytes("fee-floor");
    let trap = bytes("trap");
    sb.compile(&trap).unwrap();
    let cache = sb.cache.as_ref().unwrap();
    // Another plugin's valid entry copied under fee-floor's key.
    std::fs::copy(cache.entry_path(&trap), cache.entry_path(&fee)).unwrap();
    let (component, outcome) = sb.compile(&fee).unwrap();
    assert_eq!(outcome, CacheOutcome::Rebuilt);
    drop(component);
    let mut p = Plugin::load(&sb, plugin_with("fee-floor", &[("base_msat", "1000")])).unwrap();
    assert_eq!(
        p.decide(&input(forward(1, 100_000, 5_000))).0,
        Step::Next,
        "fee-floor's code, not trap's"
    );
}
