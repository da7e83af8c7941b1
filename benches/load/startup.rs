//! Benchmark 5: the daemon's start-up time with 10 plugins, compiled cold and
//! loaded from the compile cache.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::common;
use crate::target::{self, PluginEntry};
use crate::Sizes;

/// Benchmark 5: time from starting `htlcgate run` to its stream being open at the
/// mock LND, with no plugin and with 10 distinct plugins, cold (empty compile
/// cache) and from the cache. Medians.
pub async fn run(work: &Path, sizes: Sizes) -> anyhow::Result<String> {
    // Ten distinct Rust plugins: fee-floor with a different custom section each,
    // so each has its own content hash and compiles on its own.
    let fee = std::fs::read(common::plugin_path("fee-floor"))?;
    let variants = work.join("startup-plugins");
    std::fs::create_dir_all(&variants)?;
    let mut ten = Vec::new();
    for i in 0..10 {
        let path = variants.join(format!("fee-floor-{i}.wasm"));
        std::fs::write(&path, common::variant(&fee, i))?;
        ten.push(path);
    }
    let go = common::plugin_path("go-fee-floor");
    let entries = |files: &[PathBuf]| -> Vec<PluginEntry> {
        files
            .iter()
            .enumerate()
            .map(|(i, p)| {
                PluginEntry::new(format!("p{i}"), p, &[("base_msat", "1000"), ("ppm", "100")])
            })
            .collect()
    };
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (label, files) in [
        ("no plugin (process, engine, journal, TLS connect)", vec![]),
        ("10 Rust plugins (fee-floor variants)", ten.clone()),
        ("1 Go plugin (go-fee-floor)", vec![go]),
    ] {
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for rep in 0..sizes.startups {
            let cache = work.join(format!("startup-cache-{}-{rep}", rows.len()));
            let dir = work.join("startup");
            // Cold: a fresh, empty cache directory.
            let (t, _mock, proc) =
                target::start_daemon(&dir, entries(&files), Some(cache.clone())).await?;
            proc.stop();
            cold.push(t.as_secs_f64() * 1e3);
            // Cached: the same directory, now filled.
            let (t, _mock, proc) = target::start_daemon(&dir, entries(&files), Some(cache)).await?;
            proc.stop();
            warm.push(t.as_secs_f64() * 1e3);
        }
        rows.push((
            label.to_string(),
            common::median(&mut cold),
            common::median(&mut warm),
        ));
    }
    let mut s = String::new();
    writeln!(
        s,
        "## Start-up: `htlcgate run` until its stream is open at LND\n"
    )?;
    writeln!(
        s,
        "Median of {} starts each; cold = empty compile cache, cached = the same plugins again.\n",
        sizes.startups
    )?;
    writeln!(s, "| chain | cold | from the cache | cold / cached |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    for (label, cold, warm) in &rows {
        writeln!(
            s,
            "| {label} | {cold:.0} ms | {warm:.0} ms | {:.1}x |",
            cold / warm
        )?;
    }
    let (_, c0, w0) = rows[0];
    let (_, c10, w10) = rows[1];
    writeln!(
        s,
        "\nLoading 10 plugins (minus the no-plugin start): cold {:.0} ms, from the cache {:.0} ms.",
        c10 - c0,
        w10 - w0
    )?;
    Ok(s)
}
