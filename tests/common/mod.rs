//! Shared test helpers: the built example plugins and hand-made HTLCs.
#![allow(dead_code)]

pub mod live;
pub mod process;

use std::path::PathBuf;
use std::sync::{Arc, Once};

use htlcgate::config::PluginConfig;
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use htlcgate::mock_lnd::sample_request;
use htlcgate::wasm::input::HtlcInput;

static BUILD: Once = Once::new();

/// The directory with the built plugins; builds them (scripts/build-plugins) once
/// per test binary so that `cargo test` alone works.
pub fn plugins_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BUILD.call_once(|| {
        let status = std::process::Command::new(repo.join("scripts/build-plugins"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running scripts/build-plugins");
        assert!(status.success(), "scripts/build-plugins failed");
    });
    repo.join("target/wasm-plugins")
}

/// A `[[plugin]]` entry for an example plugin with default limits.
pub fn plugin(name: &str) -> PluginConfig {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(path.is_file(), "missing {}", path.display());
    PluginConfig::with_defaults(name, path)
}

/// As [`plugin`], with config pairs.
pub fn plugin_with(name: &str, config: &[(&str, &str)]) -> PluginConfig {
    let mut p = plugin(name);
    p.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p
}

/// A forward of `out` msat with `fee` msat fee on channel 1, HTLC `id`.
pub fn forward(id: u64, out: u64, fee: u64) -> ForwardHtlcInterceptRequest {
    let mut r = sample_request(1, id);
    r.outgoing_amount_msat = out;
    r.incoming_amount_msat = out.saturating_add(fee);
    r
}

/// The chain's input for a request.
pub fn input(req: ForwardHtlcInterceptRequest) -> Arc<HtlcInput> {
    Arc::new(HtlcInput::from_request(req).unwrap())
}

/// Answers the mock LND accepted, by key; panics on a key answered twice.
pub fn answers(
    mock: &htlcgate::mock_lnd::MockLnd,
) -> std::collections::HashMap<
    (u64, u64),
    htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse,
> {
    let mut out = std::collections::HashMap::new();
    for r in mock.resolutions() {
        assert!(
            out.insert(r.key, r.response).is_none(),
            "key {:?} answered twice",
            r.key
        );
    }
    out
}
