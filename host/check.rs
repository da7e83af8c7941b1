//! `htlcgate check plugin.wasm [--config k=v ...]`: everything a plugin author
//! wants to know before putting a component into a chain, in one command.
//!
//! It prints the component's size, imports and exports, loads it exactly as the
//! daemon does ([`Plugin::from_bytes`]: compile, link against the world,
//! instantiate, `init` with the given config, all under the default limits), then
//! decides a few sample HTLCs and shows each verdict with its fuel and time. The
//! first call of each sample is shown as it is (it includes warm-up); the
//! steady-state cost is the median of `--repeat` further calls, which is what the
//! README's per-language table reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmparser::{ComponentTypeRef, Parser, Payload};

use crate::config::{PluginConfig, SandboxConfig};
use crate::lnd::proto::routerrpc::ForwardHtlcInterceptRequest;
use crate::mock_lnd::sample_request;
use crate::wasm::engine::Sandbox;
use crate::wasm::input::HtlcInput;
use crate::wasm::plugin::{Cost, Plugin, Step};

/// Arguments of `htlcgate check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    /// A config entry passed to the plugin's init, as in [plugin.config]
    /// (repeatable): --config base_msat=1000 --config ppm=100.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub config: Vec<(String, String)>,
    /// Further calls per sample HTLC after the first, for the median time and
    /// fuel (0: only the first call).
    #[arg(long, default_value_t = 200)]
    pub repeat: u32,
    /// Fuel per decide call (as `fuel` in [[plugin]]).
    #[arg(long, default_value_t = crate::config::defaults::FUEL)]
    pub fuel: u64,
    /// A capability to grant, as in `grants` (repeatable): --grant kv --grant node.
    /// `kv` is an in-memory namespace here; `node` answers no channel (no LND).
    #[arg(long = "grant", value_name = "CAPABILITY")]
    pub grants: Vec<String>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// One top-level import or export of a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentItem {
    /// `func`, `instance`, `type`, ...
    pub kind: &'static str,
    /// Its name (`decide`, `wasi:io/streams@0.2.6`).
    pub name: String,
}

/// The top-level imports and exports of a component.
pub fn component_items(bytes: &[u8]) -> anyhow::Result<(Vec<ComponentItem>, Vec<ComponentItem>)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("reading the component")? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            // Nested modules and components have their own sections; only the
            // outermost component's are the plugin's.
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import?;
                    imports.push(ComponentItem {
                        kind: type_ref_kind(&import.ty),
                        name: import.name.name.to_owned(),
                    });
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export?;
                    exports.push(ComponentItem {
                        kind: match export.kind {
                            wasmparser::ComponentExternalKind::Module => "module",
                            wasmparser::ComponentExternalKind::Func => "func",
                            wasmparser::ComponentExternalKind::Value => "value",
                            wasmparser::ComponentExternalKind::Type => "type",
                            wasmparser::ComponentExternalKind::Instance => "instance",
                            wasmparser::ComponentExternalKind::Component => "component",
                        },
                        name: export.name.name.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn type_ref_kind(ty: &ComponentTypeRef) -> &'static str {
    match ty {
        ComponentTypeRef::Module(_) => "module",
        ComponentTypeRef::Func(_) => "func",
        ComponentTypeRef::Value(_) => "value",
        ComponentTypeRef::Type(_) => "type",
        ComponentTypeRef::Instance(_) => "instance",
        ComponentTypeRef::Component(_) => "component",
    }
}

/// The sample HTLCs every check decides: a label and the request.
pub fn samples() -> Vec<(&'static str, ForwardHtlcInterceptRequest)> {
    let forward = |id: u64, out: u64, fee: u64| {
        let mut r = sample_request(1, id);
        r.outgoing_amount_msat = out;
        r.incoming_amount_msat = out.saturating_add(fee);
        r
    };
    let mut to_us = forward(4, 250_000, 0);
    to_us.outgoing_requested_chan_id = 0;
    let mut blinded = forward(5, 2_000_000, 2_000);
    blinded.outgoing_requested_chan_id = u64::MAX;
    blinded.outgoing_requested_node_id = vec![2; 33];
    blinded.custom_records = [(65_537, b"hello".to_vec())].into();
    vec![
        (
            "forward 1,000,000 msat, fee 1,100",
            forward(1, 1_000_000, 1_100),
        ),
        ("forward 1,000,000 msat, fee 0", forward(2, 1_000_000, 0)),
        (
            "forward 5,000,000,000 msat, fee 10",
            forward(3, 5_000_000_000, 10),
        ),
        ("payment to this node, 250,000 msat", to_us),
        ("node-addressed forward + 1 record", blinded),
    ]
}

/// What one sample cost: the first call and the median of the repeats.
#[derive(Clone, Debug)]
pub struct SampleResult {
    /// The sample's label.
    pub label: &'static str,
    /// What the plugin said on the first call.
    pub step: Step,
    /// The first call's cost.
    pub first: Cost,
    /// Median fuel and time of the repeated calls (None without repeats or
    /// after a fault).
    pub median: Option<Cost>,
}

/// Decides every sample once, then `repeat` more times for a median.
pub fn decide_samples(plugin: &mut Plugin, repeat: u32) -> Vec<SampleResult> {
    let inputs: Vec<(&'static str, Arc<HtlcInput>)> = samples()
        .into_iter()
        .map(|(label, req)| {
            let input = HtlcInput::from_request(req).expect("samples have a key");
            (label, Arc::new(input))
        })
        .collect();
    let mut out = Vec::new();
    for (label, input) in &inputs {
        let (step, first) = plugin.decide(input);
        let mut median = None;
        if !matches!(step, Step::Fault(_) | Step::Quarantined) && repeat > 0 {
            let mut fuel = Vec::with_capacity(repeat as usize);
            let mut time = Vec::with_capacity(repeat as usize);
            for _ in 0..repeat {
                let (s, c) = plugin.decide(input);
                if matches!(s, Step::Fault(_) | Step::Quarantined) {
                    break;
                }
                fuel.push(c.fuel);
                time.push(c.elapsed);
            }
            if !fuel.is_empty() {
                fuel.sort_unstable();
                time.sort_unstable();
                median = Some(Cost {
                    fuel: fuel[fuel.len() / 2],
                    elapsed: time[time.len() / 2],
                });
            }
        }
        out.push(SampleResult {
            label,
            step,
            first,
            median,
        });
    }
    out
}

/// A step in words.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Next => "next".into(),
        Step::Verdict(v) => v.to_string(),
        Step::Fault(f) => format!("FAULT: {f}"),
        Step::Quarantined => "quarantined (not called)".into(),
        Step::Hold(after) => format!("hold {} ms", after.as_millis()),
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// What `check` says about the plugin's `outcome`: whether it exports it and,
/// if so, whether it listens (one sample event, a forward failed downstream for
/// HTLC 0:0, is delivered to find out: the Rust SDK's default `Plugin::outcome`
/// answers it with `ignore-outcomes`).
fn outcome_line(plugin: &mut Plugin) -> String {
    if !plugin.exports_outcome() {
        return "not exported (optional; not told outcomes)".into();
    }
    let sample = crate::wasm::outcome::sample(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    let (result, cost) = plugin.outcome(&sample);
    match result {
        Err(fault) => format!("exported, but a sample event (forward-failed) faulted: {fault}"),
        Ok(()) if !plugin.wants_outcomes() => "exported but ignored: it called `ignore-outcomes` \
             (the Rust SDK's default `Plugin::outcome` does), so htlcgate stops calling it; \
             override `outcome` to hear how forwards end"
            .into(),
        Ok(()) => format!(
            "exported and listening (told what happened to each forward; a sample event \
             took {:.1} µs and {} fuel)",
            cost.elapsed.as_secs_f64() * 1e6,
            thousands(cost.fuel)
        ),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `htlcgate check`: prints the report, fails when the plugin cannot load.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    println!(
        "{}: {} bytes",
        args.file.display(),
        thousands(bytes.len() as u64)
    );
    if Parser::is_core_wasm(&bytes) {
        anyhow::bail!(
            "{} is a core WebAssembly module, not a component; turn it into one with `htlcgate componentize {} -o plugin.wasm`",
            args.file.display(),
            args.file.display()
        );
    }
    if Parser::is_component(&bytes) {
        let (imports, exports) = component_items(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a valid WebAssembly component: {e:#}; the file may be cut short or damaged (an interrupted build or copy): build it again (scripts/build-plugins, or your SDK's build) or copy it again",
                args.file.display()
            )
        })?;
        println!("imports:");
        for i in &imports {
            println!("  {:<8} {}", i.kind, i.name);
        }
        println!("exports:");
        for e in &exports {
            println!("  {:<8} {}", e.kind, e.name);
        }
    }
    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    let mut cfg = PluginConfig::with_defaults(&name, &args.file);
    cfg.config = args.config.clone();
    cfg.config.sort();
    cfg.fuel = args.fuel;
    for g in &args.grants {
        if crate::wasm::grants::capability(g).is_none() {
            anyhow::bail!(
                "--grant {g}: unknown capability; known: {}",
                crate::wasm::grants::CAPABILITIES
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    cfg.grants = args.grants.clone();
    let sandbox = Sandbox::new(&SandboxConfig::default())?;
    let started = Instant::now();
    let mut plugin = Plugin::from_bytes(&sandbox, cfg, &bytes).map_err(|e| match &e {
        crate::wasm::plugin::LoadError::NotGranted { grant, .. } => {
            anyhow::anyhow!(
                "{e}\n(here: htlcgate check {} --grant {grant})",
                args.file.display()
            )
        }
        _ => e.into(),
    })?;
    println!(
        "world: fits htlcgate:plugin@{} `decider` (linked, instantiated)",
        plugin.world_version()
    );
    println!("outcome: {}", outcome_line(&mut plugin));
    let shown: Vec<String> = args
        .config
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "init: ok with config {{{}}}; load (compile + instantiate + init) took {:.1} ms",
        shown.join(", "),
        started.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "decide ({} fuel and {} ms per call; first call, then median of {} more):",
        thousands(args.fuel),
        crate::config::defaults::TIMEOUT_MS,
        args.repeat
    );
    for r in decide_samples(&mut plugin, args.repeat) {
        let median = match r.median {
            Some(m) => format!(
                " | median fuel {:>9}  {:>9}",
                thousands(m.fuel),
                micros(m.elapsed)
            ),
            None => String::new(),
        };
        println!(
            "  {:<38} {:<34} fuel {:>10}  {:>10}{median}",
            r.label,
            describe(&r.step),
            thousands(r.first.fuel),
            micros(r.first.elapsed),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_pair("deny_in=1x2x3,4=5"),
            Ok(("deny_in".into(), "1x2x3,4=5".into()))
        );
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }

    #[test]
    fn samples_cover_forwards_a_payment_to_us_and_a_node_addressed_forward() {
        let s = samples();
        assert!(s.iter().any(|(_, r)| r.outgoing_requested_chan_id == 0));
        assert!(s
            .iter()
            .any(|(_, r)| !r.outgoing_requested_node_id.is_empty()));
        let keys: std::collections::HashSet<_> = s
            .iter()
            .map(|(_, r)| r.incoming_circuit_key.unwrap().htlc_id)
            .collect();
        assert_eq!(keys.len(), s.len(), "each sample has its own circuit key");
    }

    /// A component importing `log` and exporting `init` and `decide`.
    fn minimal_component() -> Vec<u8> {
        let core = wat::parse_str(
            r#"(module
                (import "$root" "log" (func (param i32 i32 i32)))
                (memory (export "memory") 1)
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0))
                (func (export "decide") (param i32) (result i32) (i32.const 16)))"#,
        )
        .unwrap();
        crate::componentize::componentize(&core).unwrap().component
    }

    /// A component cut short (an interrupted copy or build) is named, with the
    /// way out, not only with the parser's "unexpected end-of-file".
    #[test]
    fn a_truncated_component_is_named_with_the_way_out() {
        let component = minimal_component();
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.wasm");
        std::fs::write(&cut, &component[..component.len() / 2]).unwrap();
        let err = run(CheckArgs {
            file: cut.clone(),
            config: vec![],
            repeat: 0,
            fuel: crate::config::defaults::FUEL,
            grants: vec![],
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&cut.display().to_string()), "{msg}");
        assert!(msg.contains("end-of-file"), "{msg}");
        assert!(
            msg.contains("cut short") && msg.contains("build") && msg.contains("again"),
            "{msg}"
        );
    }

    #[test]
    fn a_components_top_level_imports_and_exports_are_listed() {
        let component = minimal_component();
        let (imports, exports) = component_items(&component).unwrap();
        assert!(imports.contains(&ComponentItem {
            kind: "func",
            name: "log".into()
        }));
        assert!(exports.contains(&ComponentItem {
            kind: "func",
            name: "decide".into()
        }));
        assert!(exports.contains(&ComponentItem {
            kind: "func",
            name: "init".into()
        }));
    }
}
