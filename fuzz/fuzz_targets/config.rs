//! Arbitrary text as the TOML config file: `Config::parse` returns a config or an
//! error naming the file, never panics, and a config it returns keeps every bound
//! the rest of htlcgate relies on (budgets, limits, names, journal retention).
//!
//! The config path is in a directory that does not exist, so relative plugin paths
//! never resolve to a file (absolute ones may: `/etc/hostname` is a file), and
//! nothing is ever written.
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use htlcgate::config::{Config, ConfigError, NETWORKS};
use htlcgate::wasm::grants;
use libfuzzer_sys::fuzz_target;

/// The bounds a validated config promises (see `host/config.rs` and the README's
/// Configuration section).
fn assert_within_bounds(cfg: &Config, path: &Path) {
    assert_eq!(cfg.source, path);
    if let Some(net) = &cfg.lnd.network {
        assert!(NETWORKS.contains(&net.as_str()), "network {net}");
    }
    let budget = cfg.chain.budget;
    assert!(
        (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&budget),
        "budget {budget:?}"
    );
    // Replayed HTLCs must find their verdict: LND can hold one for 2016 blocks.
    let r = &cfg.journal.retention;
    assert!(
        r.max_entries >= 1000,
        "journal keeps {} entries",
        r.max_entries
    );
    assert!(
        r.max_age >= Duration::from_secs(14 * 24 * 3600),
        "journal keeps entries {:?}",
        r.max_age
    );
    assert!((64..=8192).contains(&cfg.sandbox.max_wasm_stack_kb));
    let mut names = HashSet::new();
    for p in &cfg.plugins {
        assert!(
            !p.name.is_empty()
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "plugin name {:?}",
            p.name
        );
        assert!(names.insert(&p.name), "plugin {} twice", p.name);
        // Every plugin needs an existing file; none exists under /tmp/x.
        assert!(p.path.is_file(), "plugin {} without a file", p.name);
        assert!(
            p.fuel > 0 && p.init_fuel > 0,
            "plugin {} without fuel",
            p.name
        );
        assert!(
            p.timeout >= Duration::from_millis(1) && p.timeout <= budget,
            "plugin {} timeout {:?} outside the budget {budget:?}",
            p.name,
            p.timeout
        );
        assert!(
            (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&p.init_timeout),
            "plugin {} init timeout {:?}",
            p.name,
            p.init_timeout
        );
        assert!(
            (1 << 20..=4 << 30).contains(&p.memory_bytes) && p.memory_bytes % (1 << 20) == 0,
            "plugin {} memory {}",
            p.name,
            p.memory_bytes
        );
        assert!(p.max_faults >= 1, "plugin {} max_faults 0", p.name);
        if let Some(h) = &p.sha256 {
            assert!(
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "plugin {} sha256 {h:?}",
                p.name
            );
        }
        for g in &p.grants {
            assert!(
                grants::capability(g).is_some(),
                "plugin {} grant {g}",
                p.name
            );
        }
        assert!(
            p.config.windows(2).all(|w| w[0].0 < w[1].0),
            "plugin {} config not sorted by key",
            p.name
        );
    }
}

fuzz_target!(|text: &str| {
    let path = Path::new("/tmp/x/htlcgate.toml");
    match Config::parse(text, path) {
        Ok(cfg) => assert_within_bounds(&cfg, path),
        Err(e) => {
            // The message names the file (as every config error must).
            let msg = e.to_string();
            assert!(
                msg.contains("/tmp/x/htlcgate.toml"),
                "error without the file: {msg}"
            );
            assert!(
                !matches!(e, ConfigError::Read { .. }),
                "parse never reads a file: {msg}"
            );
        }
    }
});
