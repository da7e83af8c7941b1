//! Helpers shared by the benchmarks (`benches/decide`, `benches/load`): where the
//! plugins are, how to build them, the HTLCs the benchmarks send, and the machine
//! the figures come from.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use htlcgate::lnd::proto::routerrpc::{CircuitKey, ForwardHtlcInterceptRequest};
use htlcgate::mock_lnd::sample_request;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The htlcgate binary under test: the one cargo built for this benchmark (release
/// under `cargo bench`), or `$HTLCGATE_BENCH_BIN` to measure another build.
pub fn htlcgate_bin() -> PathBuf {
    std::env::var_os("HTLCGATE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_htlcgate")))
}

/// Where `scripts/build-plugins` puts the components.
pub fn plugins_dir() -> PathBuf {
    repo().join("target/wasm-plugins")
}

/// True under `cargo bench` (cargo passes `--bench`); false under `cargo test`,
/// which runs every bench target once to check that it still works.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Builds the named plugins with `scripts/build-plugins` (quick when they are up
/// to date). Go and AssemblyScript plugins need their toolchains (`scripts/setup`).
pub fn build_plugins(names: &[&str]) -> anyhow::Result<()> {
    let script = repo().join("scripts/build-plugins");
    let out = Command::new(&script)
        .args(names)
        // Componentizing Go/AssemblyScript plugins uses this binary instead of
        // building a debug one.
        .env("HTLCGATE_BIN", htlcgate_bin())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed (Go and AssemblyScript plugins need scripts/setup first):\n{}",
            script.display(),
            names.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The built component `name`.
pub fn plugin_path(name: &str) -> PathBuf {
    plugins_dir().join(format!("{name}.wasm"))
}

/// A forward of `out` msat paying `fee` msat, arriving on channel `chan` as HTLC
/// `id`, with a 1366-byte onion (LND's `onion_blob` is always that size).
pub fn forward(chan: u64, id: u64, out: u64, fee: u64) -> ForwardHtlcInterceptRequest {
    let mut r = sample_request(chan, id);
    r.incoming_circuit_key = Some(CircuitKey {
        chan_id: chan,
        htlc_id: id,
    });
    r.outgoing_amount_msat = out;
    r.incoming_amount_msat = out + fee;
    // Not all zeros: a real onion is ciphertext.
    let mut rng = fastrand::Rng::with_seed(id);
    r.onion_blob.iter_mut().for_each(|b| *b = rng.u8(..));
    r
}

/// The HTLC every per-call benchmark decides: 999,000 msat out paying 2,000 msat,
/// which passes the example chain's fee floor (1000 msat + 100 ppm), max-htlc and
/// channel-filter, so every plugin of the chain runs.
pub fn passing_forward(id: u64) -> ForwardHtlcInterceptRequest {
    forward(INCOMING_CHAN, id, 999_000, 2_000)
}

/// The incoming channel of the benchmark HTLCs (812345x1204x0).
pub const INCOMING_CHAN: u64 = (812_345 << 40) | (1_204 << 16);
/// A channel the benchmark chain's channel-filter denies (never used by the HTLCs).
pub const DENIED_CHAN: u64 = (840_512 << 40) | (3 << 16);

/// `bytes` with a custom section named `htlcgate-bench-variant-N` appended: the same
/// plugin with a different content hash, so the compile cache sees `n` distinct
/// plugins (used to load N "different" plugins cold).
pub fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = format!("htlcgate-bench-variant-{n}");
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The machine the figures come from: CPU model, cores, load average.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores (nproc), load average {load}")
}

/// Median of `v` (sorted in place); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
