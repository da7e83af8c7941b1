//! After criterion: one Markdown table with every figure of this run (criterion's
//! median per HTLC), the ratios the issue asks for and whether each target is met.

use std::path::{Path, PathBuf};

/// Where criterion wrote this run's estimates: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `target/criterion` (criterion's own order;
/// its last fallback asks `cargo metadata`, which says `target/` here).
pub fn criterion_home() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return h.into();
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::common::repo().join("target"))
        .join("criterion")
}

/// Criterion's median estimate of `group/id` in nanoseconds, if it ran.
fn median_ns(home: &Path, group: &str, id: &str) -> Option<f64> {
    let path = home.join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn fmt_time(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The rows of the table: (benchmark id, what it is).
const ROWS: &[(&str, &str)] = &[
    (
        "native-chain-3",
        "native Rust: the 3 policies (fee-floor, max-htlc, channel-filter)",
    ),
    (
        "native-rate-limit",
        "native Rust: rate-limit (its plugin crate, SDK's in-memory kv)",
    ),
    (
        "native-circuitbreaker",
        "native Rust: circuitbreaker, decide + its outcome (its plugin crate, SDK stand-ins)",
    ),
    (
        "floor-wasmtime",
        "**floor**: bare wasmtime, empty decide, full record + 1366-B onion",
    ),
    (
        "floor-wasmtime-no-onion",
        "bare wasmtime, empty decide, record without the onion",
    ),
    (
        "floor-wasmtime-metered",
        "bare wasmtime + fuel + epoch deadline, onion in the record",
    ),
    (
        "htlcgate-empty",
        "htlcgate `Plugin`, empty decide (onion behind the import)",
    ),
    (
        "htlcgate-empty-no-onion",
        "htlcgate `Plugin`, empty decide, HTLC without an onion",
    ),
    ("htlcgate-fee-floor", "htlcgate: fee-floor (Rust)"),
    ("htlcgate-max-htlc", "htlcgate: max-htlc (Rust)"),
    ("htlcgate-channel-filter", "htlcgate: channel-filter (Rust)"),
    (
        "htlcgate-onion-size",
        "htlcgate: onion-size (Rust, reads the onion)",
    ),
    (
        "htlcgate-rate-limit",
        "htlcgate: rate-limit (Rust, kv: reads and writes its counters)",
    ),
    (
        "htlcgate-circuitbreaker",
        "htlcgate: circuitbreaker (Rust, kv + node), decide + its outcome: 2 calls",
    ),
    (
        "htlcgate-as-fee-floor",
        "htlcgate: as-fee-floor (AssemblyScript)",
    ),
    ("htlcgate-go-fee-floor", "htlcgate: go-fee-floor (Go)"),
    (
        "floor-wasmtime-x3",
        "3 bare wasmtime instances, empty decide, called in turn (a 3-plugin chain's floor)",
    ),
    (
        "htlcgate-chain-3-empty-sequential",
        "htlcgate: 3 empty decides in a row (the chain's own cost)",
    ),
    (
        "htlcgate-chain-3-sequential",
        "htlcgate: the 3 plugins called in a row on one thread",
    ),
    (
        "htlcgate-chain-3",
        "htlcgate `Chain` of 3, one HTLC at a time (latency)",
    ),
    (
        "htlcgate-chain-3-x1000",
        "htlcgate `Chain` of 3, 1,000 in flight (per HTLC)",
    ),
    (
        "pipe-rust-fee-floor",
        "fee-floor as a child process, JSON over a pipe (Rust child)",
    ),
    (
        "pipe-python-fee-floor",
        "fee-floor as a child process, JSON over a pipe (python3 child)",
    ),
    (
        "pipe-rust-chain-3",
        "3 child processes asked in turn, as CLN chains hooks (Rust children)",
    ),
    (
        "pipe-python-chain-3",
        "3 child processes asked in turn, as CLN chains hooks (python3 children)",
    ),
];

/// Prints the table (stdout): the interleaved medians, their ratios to the floor,
/// and criterion's medians beside them.
pub fn print(home: &Path, interleaved: &[(&str, f64)]) {
    let get = |id: &str| interleaved.iter().find(|(i, _)| *i == id).map(|(_, t)| *t);
    let crit = |id: &str| {
        if id.starts_with("htlcgate-chain-3-x1000") {
            median_ns(home, "chain-batch", id).map(|t| t / 1_000.0)
        } else {
            median_ns(home, "decide", id)
        }
    };
    let Some(floor) = get("floor-wasmtime") else {
        println!("decide: the floor was not measured");
        return;
    };
    println!();
    println!("## Per-HTLC decision cost");
    println!();
    println!("Machine: {}", crate::common::machine());
    println!();
    println!("Interleaved: every subject timed in turns, {} rounds, median per call; criterion: its median, one benchmark after the other.", crate::ROUNDS);
    println!();
    println!("| what | per HTLC (interleaved) | vs floor | criterion |");
    println!("|---|---:|---:|---:|");
    for (id, what) in ROWS {
        let Some(t) = get(id) else { continue };
        let c = crit(id).map(fmt_time).unwrap_or_else(|| "-".into());
        println!("| {what} | {} | {:.2}x | {c} |", fmt_time(t), t / floor);
    }
    for id in ["input-from-request"] {
        if let Some(c) = crit(id) {
            println!(
                "| LND request -> htlcgate input (once per HTLC) | - | - | {} |",
                fmt_time(c)
            );
        }
    }
    println!();
    println!("Stateful plugins, against the same plugin crate compiled natively:");
    // (htlcgate id, native id, what, calls into the plugin per iteration)
    for (ours, native, label, calls) in [
        (
            "htlcgate-rate-limit",
            "native-rate-limit",
            "rate-limit (one decide)",
            1.0,
        ),
        (
            "htlcgate-circuitbreaker",
            "native-circuitbreaker",
            "circuitbreaker (decide + the outcome that resolves it)",
            2.0,
        ),
    ] {
        let (Some(t), Some(n)) = (get(ours), get(native)) else {
            continue;
        };
        println!(
            "- {label}: {} in htlcgate, {} native ({:.0}x native; {:.2} floors per call into the plugin)",
            fmt_time(t),
            fmt_time(n),
            t / n,
            t / floor / calls
        );
        if let Some(e) = get("htlcgate-empty") {
            println!(
                "  (htlcgate's own cost, as {calls} empty decide(s): {}; the rest, the plugin's code and its kv/node imports in the sandbox: {})",
                fmt_time(e * calls),
                fmt_time(t - e * calls)
            );
        }
    }
    println!();
    println!("Targets:");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    // One overhead target line: `ours` over `base` against at most +20%.
    let overhead = |what: &str, ours: f64, base: f64, target: &str| {
        let over = ours / base - 1.0;
        println!(
            "- htlcgate's own overhead {what}: {:+.0}% (target <= +20%{target}): {}",
            over * 100.0,
            verdict(over <= 0.20)
        );
    };
    if let Some(e) = get("htlcgate-empty") {
        // The floor: a bare call of an empty decide with the full record,
        // which lowers the 1366-byte onion into the guest every call.
        overhead(
            "per plugin, `htlcgate-empty` vs `floor-wasmtime` (the issue's floor: bare wasmtime, empty decide, full record with the 1366-byte onion lowered every call)",
            e,
            floor,
            "",
        );
        // The same against a floor that copies no onion either: htlcgate's record
        // leaves it behind an import, so this is like for like on the copying.
        if let Some(t) = get("floor-wasmtime-no-onion") {
            overhead(
                "per plugin, `htlcgate-empty` vs `floor-wasmtime-no-onion` (bare wasmtime, empty decide, the same record without the onion: neither copies it)",
                e,
                t,
                "",
            );
        }
        if let Some(t) = get("floor-wasmtime-metered") {
            println!(
                "  (for attribution: `htlcgate-empty` is {:+.0}% over `floor-wasmtime-metered`, a bare call with the onion under fuel + epoch deadline)",
                (e / t - 1.0) * 100.0
            );
        }
    }
    if let (Some(without), Some(e), Some(e0)) = (
        get("floor-wasmtime-no-onion"),
        get("htlcgate-empty"),
        get("htlcgate-empty-no-onion"),
    ) {
        // The onion is not in htlcgate's record: an HTLC with one costs the same
        // as one without (within noise), while a naive host pays for the copy.
        let naive = floor - without;
        let ours = e - e0;
        println!(
            "- the onion: a naive host pays {} per call to copy it; htlcgate pays {} (with vs without an onion; only a plugin that calls `onion-blob` copies it): {}",
            fmt_time(naive),
            fmt_time(ours),
            verdict(ours < naive / 2.0)
        );
    }
    for (id, label) in [
        (
            "htlcgate-chain-3-empty-sequential",
            "htlcgate's own cost of a 3-plugin chain (3 empty decides)",
        ),
        ("htlcgate-chain-3-sequential", "3 example plugins in a row"),
        ("htlcgate-chain-3", "3-plugin chain, one HTLC at a time"),
        (
            "htlcgate-chain-3-x1000",
            "3-plugin chain, 1,000 in flight, per HTLC",
        ),
    ] {
        if let Some(t) = get(id) {
            println!("- {label}: {:.1} floors (target: near 3)", t / floor);
        }
    }
    if let (Some(e3), Some(f3)) = (
        get("htlcgate-chain-3-empty-sequential"),
        get("floor-wasmtime-x3"),
    ) {
        overhead(
            &format!(
                "on a 3-plugin chain, `htlcgate-chain-3-empty-sequential` vs `floor-wasmtime-x3` (3 bare instances called in turn: {:.1} floors by themselves, since each call finds another instance's memory and code)",
                f3 / floor
            ),
            e3,
            f3,
            " per plugin",
        );
    }
    if let (Some(e), Some(f)) = (get("htlcgate-empty"), get("htlcgate-fee-floor")) {
        println!(
            "  (the Rust SDK plugin's own code, fee-floor minus the empty decide: {} per call)",
            fmt_time(f - e)
        );
    }
    // Pipe children against htlcgate. Like for like: one plugin against one
    // child; a chain of 3 against 3 children asked in turn (how CLN runs a hook
    // registered by 3 plugins). Each pipe row is one HTLC's round trip(s), one
    // HTLC at a time; each line names the htlcgate row it is divided by.
    for lang in ["rust", "python"] {
        for (pipe, ours, label) in [
            (
                "fee-floor",
                "htlcgate-fee-floor",
                "the fee-floor plugin called in place on the caller's thread (no hand-off)",
            ),
            (
                "chain-3",
                "htlcgate-chain-3-sequential",
                "the 3 plugins called in a row on one thread (no hand-offs)",
            ),
            (
                "chain-3",
                "htlcgate-chain-3-x1000",
                "`Chain` of 3 with 1,000 HTLCs in flight, time per HTLC (throughput, while the pipe runs one at a time)",
            ),
            (
                "chain-3",
                "htlcgate-chain-3",
                "latency for latency: `Chain` of 3, one HTLC at a time, including its 2 thread hand-offs (to the plugin thread and back)",
            ),
        ] {
            let children = if pipe == "fee-floor" {
                format!("one {lang} child's round trip over a pipe")
            } else {
                format!("3 {lang} children's round trips over pipes, in turn")
            };
            let pipe = format!("pipe-{lang}-{pipe}");
            let (Some(p), Some(t)) = (get(&pipe), get(ours)) else {
                continue;
            };
            println!(
                "- `{pipe}` / `{ours}`: {children} vs {label}: {:.0}x (target >= 50x): {}",
                p / t,
                verdict(p / t >= 50.0)
            );
        }
        if let Some(p) = get(&format!("pipe-{lang}-fee-floor")) {
            println!(
                "  (a pipe round trip to a {lang} child is {:.0} floors here: the most any wasm host could be ahead per plugin)",
                p / floor
            );
        }
    }
    println!();
}
