//! Which version of the plugin world a component implements, its pre-instantiation
//! and its exports.
//!
//! htlcgate loads components built for `htlcgate:plugin@0.2.0` (`wit/plugin.wit`)
//! and for the frozen `htlcgate:plugin@0.1.0` (`wit/v0.1/plugin.wit`). A component
//! is linked and type-checked against 0.2.0 first, then against 0.1.0; both checks
//! are static (no instantiation), so a component fitting neither is refused before
//! any of its code runs, with both reasons.
//!
//! 0.2.0's `outcome` export is optional, which the generated `DeciderPre` cannot
//! express (it requires every export): [`Pre`] looks `init` and `decide` up as
//! required and `outcome` as optional, with the generated types, exactly as the
//! generated code would.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Component, ComponentExportIndex, Func, HasSelf, InstancePre, Linker, TypedFunc,
};
use wasmtime::Store;

use crate::wasm::bindings::{Decider, Htlc, HtlcOutcome, Resolution};
use crate::wasm::engine::Sandbox;
use crate::wasm::imports::PluginState;
use crate::wasm::input::HtlcInput;
use crate::wasm::v01;

/// `init`'s signature in both versions.
type InitSig<'a> = TypedFunc<(&'a [(String, String)],), (Result<(), String>,)>;
/// 0.2.0's `decide`.
type DecideSig<'a> = TypedFunc<(&'a Htlc,), (Resolution,)>;
/// 0.2.0's `outcome`.
type OutcomeSig<'a> = TypedFunc<(&'a HtlcOutcome,), ()>;

/// The version string of `htlcgate:plugin@0.2.0`.
pub const V0_2: &str = "0.2.0";
/// The version string of `htlcgate:plugin@0.1.0`.
pub const V0_1: &str = "0.1.0";

/// Why a component could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The host's own linker could not be built (a bug, not the plugin's fault).
    #[error("cannot build the host linker: {0}")]
    Linker(String),
    /// The component fits neither world.
    #[error("as {V0_2}: {v02}; as {V0_1}: {v01}")]
    Neither {
        /// What does not match 0.2.0 (the import or export and how).
        v02: String,
        /// What does not match 0.1.0.
        v01: String,
    },
}

/// The linker for 0.2.0 plugins: WASI preview 2 with an empty context, plus the
/// world's own imports.
fn linker_v02(sandbox: &Sandbox) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(&sandbox.engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::wait::bound_waits(&mut linker)?;
    Decider::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The linker for 0.1.0 plugins: the same WASI, and the 0.1.0 imports (served by
/// the same [`PluginState`] through `wasm::v01`).
fn linker_v01(sandbox: &Sandbox) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(&sandbox.engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::wait::bound_waits(&mut linker)?;
    v01::bindings::Decider::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A component linked and type-checked against one version of the world, ready
/// to be instantiated any number of times.
pub enum Pre {
    /// Built for 0.2.0.
    V02 {
        /// The linked component.
        pre: InstancePre<PluginState>,
        /// The `init` export.
        init: ComponentExportIndex,
        /// The `decide` export.
        decide: ComponentExportIndex,
        /// The `outcome` export, when the component has it.
        outcome: Option<ComponentExportIndex>,
    },
    /// Built for 0.1.0.
    V01(v01::bindings::DeciderPre<PluginState>),
}

/// Export `name` of `pre`'s component and its type; `Ok(None)` when there is no
/// such export.
fn lookup(
    pre: &InstancePre<PluginState>,
    name: &str,
) -> wasmtime::Result<Option<(ComponentFunc, ComponentExportIndex)>> {
    match pre.component().get_export(None, name) {
        None => Ok(None),
        Some((ComponentItem::ComponentFunc(func), index)) => Ok(Some((func, index))),
        Some(_) => Err(wasmtime::format_err!("export `{name}` is not a function")),
    }
}

/// Names the export in a type-check error.
fn typed(name: &str, check: wasmtime::Result<()>) -> wasmtime::Result<()> {
    check.map_err(|e| e.context(format!("export `{name}` does not have the world's type")))
}

/// A required export.
fn required(
    export: Option<(ComponentFunc, ComponentExportIndex)>,
    name: &str,
) -> wasmtime::Result<(ComponentFunc, ComponentExportIndex)> {
    export.ok_or_else(|| wasmtime::format_err!("no export `{name}`"))
}

impl Pre {
    /// Links and type-checks `component` against 0.2.0, then 0.1.0.
    pub fn new(sandbox: &Sandbox, component: &Component) -> Result<Pre, PrepareError> {
        let linker = |e: wasmtime::Error| PrepareError::Linker(format!("{e:#}"));
        let v02 = match Pre::v02(&linker_v02(sandbox).map_err(linker)?, component) {
            Ok(pre) => return Ok(pre),
            Err(e) => format!("{e:#}"),
        };
        let v01 = match Pre::v01(&linker_v01(sandbox).map_err(linker)?, component) {
            Ok(pre) => return Ok(pre),
            Err(e) => format!("{e:#}"),
        };
        Err(PrepareError::Neither { v02, v01 })
    }

    fn v02(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        // The checks of the generated `DeciderIndices::new`, with `outcome`
        // optional (but type-checked when present). `ComponentFunc::typecheck` is
        // hidden from wasmtime's docs, but it is what that generated code calls.
        let ty = pre.instance_type();
        let (f, init) = required(lookup(&pre, "init")?, "init")?;
        typed(
            "init",
            f.typecheck::<(&[(String, String)],), (Result<(), String>,)>(&ty),
        )?;
        let (f, decide) = required(lookup(&pre, "decide")?, "decide")?;
        typed("decide", f.typecheck::<(&Htlc,), (Resolution,)>(&ty))?;
        let outcome = match lookup(&pre, "outcome")? {
            Some((f, index)) => {
                typed("outcome", f.typecheck::<(&HtlcOutcome,), ()>(&ty))?;
                Some(index)
            }
            None => None,
        };
        Ok(Pre::V02 {
            pre,
            init,
            decide,
            outcome,
        })
    }

    fn v01(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        Ok(Pre::V01(v01::bindings::DeciderPre::new(pre)?))
    }

    /// The world version the component was built for: `"0.2.0"` or `"0.1.0"`.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::V02 { .. } => V0_2,
            Pre::V01(_) => V0_1,
        }
    }

    /// Whether the component exports `outcome` (never for 0.1.0).
    pub fn exports_outcome(&self) -> bool {
        matches!(
            self,
            Pre::V02 {
                outcome: Some(_),
                ..
            }
        )
    }

    /// Instantiates the component in `store` (running its start-up code).
    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Exports> {
        match self {
            Pre::V02 {
                pre,
                init,
                decide,
                outcome,
            } => {
                let instance = pre.instantiate(&mut *store)?;
                // Type-checked again against the instance, as the generated
                // `DeciderIndices::load` does: the unchecked calls below rely on it.
                let init = *instance
                    .get_typed_func::<(&[(String, String)],), (Result<(), String>,)>(
                        &mut *store,
                        init,
                    )?
                    .func();
                let decide = *instance
                    .get_typed_func::<(&Htlc,), (Resolution,)>(&mut *store, decide)?
                    .func();
                let outcome = match outcome {
                    Some(index) => Some(
                        *instance
                            .get_typed_func::<(&HtlcOutcome,), ()>(&mut *store, index)?
                            .func(),
                    ),
                    None => None,
                };
                Ok(Exports::V02 {
                    init,
                    decide,
                    outcome,
                })
            }
            Pre::V01(pre) => Ok(Exports::V01(pre.instantiate(&mut *store)?)),
        }
    }
}

/// The exports of one live instance.
pub enum Exports {
    /// A 0.2.0 instance; each function was type-checked at instantiation.
    V02 {
        /// `init`.
        init: Func,
        /// `decide`.
        decide: Func,
        /// `outcome`, when exported.
        outcome: Option<Func>,
    },
    /// A 0.1.0 instance.
    V01(v01::bindings::Decider),
}

impl Exports {
    /// Calls `init` with the plugin's config.
    pub fn call_init(
        &self,
        store: &mut Store<PluginState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Exports::V02 { init, .. } => {
                // SAFETY: `init` was type-checked as `InitSig` at instantiation.
                let f: InitSig<'_> = unsafe { TypedFunc::new_unchecked(*init) };
                Ok(f.call(store, (config,))?.0)
            }
            Exports::V01(d) => d.call_init(store, config),
        }
    }

    /// Calls `decide`; a 0.1.0 plugin gets the 0.1.0 record and its answer is
    /// returned as 0.2.0's.
    pub fn call_decide(
        &self,
        store: &mut Store<PluginState>,
        input: &HtlcInput,
    ) -> wasmtime::Result<Resolution> {
        match self {
            Exports::V02 { decide, .. } => {
                // SAFETY: `decide` was type-checked as `DecideSig` at instantiation.
                let f: DecideSig<'_> = unsafe { TypedFunc::new_unchecked(*decide) };
                Ok(f.call(store, (&input.record,))?.0)
            }
            Exports::V01(d) => Ok(v01::resolution(d.call_decide(store, input.record_v01())?)),
        }
    }

    /// Calls `outcome`; nothing when the instance does not export it.
    pub fn call_outcome(
        &self,
        store: &mut Store<PluginState>,
        outcome: &HtlcOutcome,
    ) -> wasmtime::Result<()> {
        match self {
            Exports::V02 {
                outcome: Some(func),
                ..
            } => {
                // SAFETY: `outcome` was type-checked as `OutcomeSig` at
                // instantiation.
                let f: OutcomeSig<'_> = unsafe { TypedFunc::new_unchecked(*func) };
                f.call(store, (outcome,))
            }
            Exports::V02 { outcome: None, .. } | Exports::V01(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PluginConfig, SandboxConfig};
    use crate::mock_lnd::sample_request;
    use crate::wasm::plugin::{Cost, LoadError, Plugin, Step};
    use std::sync::Arc;
    use std::time::Duration;
    use wit_parser::{Resolve, WorldKey};

    /// A component of `world` in `wit` from a core module in WAT; without
    /// `outcome` in the world unless the module exports it.
    fn component(wit: &str, world: &str, core_wat: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("test.wit", wit).unwrap();
        let world = resolve.select_world(&[package], Some(world)).unwrap();
        if !core_wat.contains("(export \"outcome\")") {
            resolve.worlds[world]
                .exports
                .shift_remove(&WorldKey::Name("outcome".into()));
        }
        let mut module = wat::parse_str(core_wat).unwrap();
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&module)
            .unwrap()
            .encode()
            .unwrap()
    }

    const V02_WIT: &str = include_str!("../../wit/plugin.wit");
    const V01_WIT: &str = include_str!("../../wit/v0.1/plugin.wit");

    /// A core module for either version: `init` says ok, `decide` answers the
    /// resolution whose case index is `$case` (next = 0; 0.2.0's hold = 5, with
    /// the number of decide calls of this instance as its milliseconds).
    /// `extra` adds imports, exports and functions.
    fn core(case: u32, extra: &str) -> String {
        format!(
            r#"(module
                {extra}
                (memory (export "memory") 1)
                (global $heap (mut i32) (i32.const 1024))
                (global $calls (mut i32) (i32.const 0))
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                    (local $p i32)
                    (if (i32.gt_u (i32.add (global.get $heap) (local.get 3)) (i32.const 60000))
                        (then (global.set $heap (i32.const 1024))))
                    (local.set $p (i32.and
                        (i32.add (global.get $heap) (i32.const 7))
                        (i32.const -8)))
                    (global.set $heap (i32.add (local.get $p) (local.get 3)))
                    (local.get $p))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0))
                (func (export "decide") (param i32) (result i32)
                    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                    (i32.store8 (i32.const 64) (i32.const {case}))
                    (i32.store (i32.const 72) (global.get $calls))
                    (i32.const 64)))"#
        )
    }

    /// 0.2.0's `outcome`, core signature: traps for `forward-failed` (case 2),
    /// otherwise does nothing.
    const OUTCOME: &str = r#"
        (func (export "outcome")
            (param i64 i64 i32 i64 i64 i32 i64 i64 i32 i32 i32 i64 i64 i32 i32 i64)
            (if (i32.eq (local.get 5) (i32.const 2)) (then unreachable)))"#;

    fn sandbox() -> Sandbox {
        Sandbox::new(&SandboxConfig::default()).unwrap()
    }

    fn load(sandbox: &Sandbox, bytes: &[u8], grants: &[&str]) -> Result<Plugin, LoadError> {
        let mut cfg = PluginConfig::with_defaults("t", "t.wasm");
        cfg.grants = grants.iter().map(|g| g.to_string()).collect();
        cfg.max_faults = 2;
        Plugin::from_bytes(sandbox, cfg, bytes)
    }

    fn input() -> Arc<HtlcInput> {
        Arc::new(HtlcInput::from_request(sample_request(1, 2)).unwrap())
    }

    fn forward_failed() -> HtlcOutcome {
        HtlcOutcome {
            incoming_circuit_key: crate::wasm::bindings::CircuitKey {
                chan_id: 1,
                htlc_id: 2,
            },
            outgoing_circuit_key: None,
            kind: crate::wasm::bindings::OutcomeKind::ForwardFailed,
            at_unix_ms: 1,
        }
    }

    /// A final, settled off-chain outcome for the same HTLC (no trap in `OUTCOME`).
    fn settled() -> HtlcOutcome {
        HtlcOutcome {
            kind: crate::wasm::bindings::OutcomeKind::Final(
                crate::wasm::bindings::FinalResolution {
                    settled: true,
                    offchain: true,
                },
            ),
            ..forward_failed()
        }
    }

    #[test]
    fn the_version_and_the_optional_outcome_are_detected() {
        let sb = sandbox();
        let with = component(V02_WIT, "decider", &core(0, OUTCOME));
        let without = component(V02_WIT, "decider", &core(0, ""));
        let old = component(V01_WIT, "decider", &core(0, ""));
        for (bytes, version, outcome) in [
            (&with, V0_2, true),
            (&without, V0_2, false),
            (&old, V0_1, false),
        ] {
            let p = load(&sb, bytes, &[]).unwrap();
            assert_eq!((p.world_version(), p.exports_outcome()), (version, outcome));
            let mut p = p;
            assert_eq!(p.decide(&input()).0, Step::Next);
        }
    }

    #[test]
    fn a_component_of_neither_world_is_refused_naming_both_versions_and_the_export() {
        let wit = r#"package other:plugin@1.0.0;
            world decider {
                export init: func(config: list<tuple<string, string>>) -> result<_, string>;
                export decide: func(amount: u64) -> u32;
            }"#;
        let core = r#"(module
            (memory (export "memory") 1)
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
            (func (export "init") (param i32 i32) (result i32) (i32.const 0))
            (func (export "decide") (param i64) (result i32) (i32.const 0)))"#;
        let err = load(&sandbox(), &component(wit, "decider", core), &[])
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(matches!(err, LoadError::WrongWorld { .. }), "{text}");
        assert!(text.contains("htlcgate:plugin@0.2.0"), "{text}");
        assert!(text.contains("htlcgate:plugin@0.1.0"), "{text}");
        assert!(text.contains("as 0.2.0: export `decide`"), "{text}");
        assert!(text.contains("as 0.1.0:"), "{text}");
        assert!(text.contains("wit/v0.1/plugin.wit"), "{text}");
    }

    #[test]
    fn hold_is_a_step_of_at_least_one_millisecond() {
        let sb = sandbox();
        let mut p = load(&sb, &component(V02_WIT, "decider", &core(5, "")), &[]).unwrap();
        // hold(n) where n counts this instance's decide calls: 1, 2, ...
        assert_eq!(p.decide(&input()).0, Step::Hold(Duration::from_millis(1)));
        assert_eq!(p.decide(&input()).0, Step::Hold(Duration::from_millis(2)));
        assert!(!p.is_quarantined());
    }

    #[test]
    fn an_outcome_fault_is_returned_restarts_the_instance_and_never_quarantines() {
        let sb = sandbox();
        let mut p = load(&sb, &component(V02_WIT, "decider", &core(5, OUTCOME)), &[]).unwrap();
        let fine = settled();
        assert_eq!(p.outcome(&fine).0, Ok(()));
        assert_eq!(p.decide(&input()).0, Step::Hold(Duration::from_millis(1)));
        assert_eq!(p.decide(&input()).0, Step::Hold(Duration::from_millis(2)));
        // max_faults is 2: three faults in a row would quarantine a decide.
        for _ in 0..3 {
            let (r, _) = p.outcome(&forward_failed());
            assert_eq!(r.unwrap_err().reason(), "trap");
        }
        assert!(!p.is_quarantined());
        // The trap replaced the instance: its decide count starts again.
        assert_eq!(p.decide(&input()).0, Step::Hold(Duration::from_millis(1)));
    }

    #[test]
    fn outcome_is_a_no_op_without_the_export() {
        let sb = sandbox();
        for wit in [V02_WIT, V01_WIT] {
            let mut p = load(&sb, &component(wit, "decider", &core(0, "")), &[]).unwrap();
            let (r, cost) = p.outcome(&forward_failed());
            assert_eq!(r, Ok(()));
            assert_eq!(cost.fuel, 0);
        }
    }

    /// 0.2.0's `outcome` calling `ignore-outcomes` (import included).
    const IGNORING_OUTCOME: &str = r#"
        (import "$root" "ignore-outcomes" (func $ignore))
        (func (export "outcome")
            (param i64 i64 i32 i64 i64 i32 i64 i64 i32 i32 i32 i64 i64 i32 i32 i64)
            (call $ignore))"#;

    #[test]
    fn a_plugin_that_calls_ignore_outcomes_is_not_called_again() {
        let sb = sandbox();
        let mut p = load(
            &sb,
            &component(V02_WIT, "decider", &core(0, IGNORING_OUTCOME)),
            &[],
        )
        .unwrap();
        assert!(p.exports_outcome() && p.wants_outcomes());
        let (r, cost) = p.outcome(&forward_failed());
        assert_eq!(r, Ok(()));
        assert!(cost.fuel > 0, "the first outcome runs");
        assert!(!p.wants_outcomes());
        assert_eq!(p.outcome(&forward_failed()), (Ok(()), Cost::default()));
        assert_eq!(p.decide(&input()).0, Step::Next, "decide goes on");
        assert!(!p.wants_outcomes());

        // A plugin that never calls it keeps being told.
        let mut p = load(&sb, &component(V02_WIT, "decider", &core(5, OUTCOME)), &[]).unwrap();
        let fine = settled();
        for _ in 0..3 {
            let (r, cost) = p.outcome(&fine);
            assert_eq!(r, Ok(()));
            assert!(cost.fuel > 0);
        }
        assert!(p.wants_outcomes());
    }

    #[test]
    fn ignore_outcomes_called_from_init_holds_from_the_load() {
        let ignoring_init = core(0, r#"(import "$root" "ignore-outcomes" (func $ignore))"#)
            .replace(
                r#"(func (export "init") (param i32 i32) (result i32) (i32.const 0))"#,
                r#"(func (export "init") (param i32 i32) (result i32) (call $ignore) (i32.const 0))"#,
            );
        let wat = ignoring_init.replace(
            "(memory (export \"memory\") 1)",
            &format!("{OUTCOME}\n(memory (export \"memory\") 1)"),
        );
        let p = load(&sandbox(), &component(V02_WIT, "decider", &wat), &[]).unwrap();
        assert!(p.exports_outcome());
        assert!(!p.wants_outcomes());
    }

    #[test]
    fn channel_needs_the_node_grant_and_block_height_does_not() {
        let sb = sandbox();
        let channel = r#"(import "$root" "channel" (func (param i64 i32)))"#;
        let err = load(&sb, &component(V02_WIT, "decider", &core(0, channel)), &[])
            .err()
            .expect("refused");
        assert!(
            matches!(&err, LoadError::NotGranted { grant: "node", import, .. } if import == "channel"),
            "{err}"
        );
        load(
            &sb,
            &component(V02_WIT, "decider", &core(0, channel)),
            &["node"],
        )
        .unwrap();
        let height = r#"(import "$root" "block-height" (func (param i32)))"#;
        let p = load(&sb, &component(V02_WIT, "decider", &core(0, height)), &[]).unwrap();
        assert_eq!(p.world_version(), V0_2);
    }

    #[test]
    fn a_01_component_importing_a_02_only_function_fits_neither() {
        // A 0.1.0 `decide` with 0.2.0's `block-height` import.
        let mut resolve_wit = V01_WIT.replace(
            "    export init:",
            "    import block-height: func() -> option<u32>;\n    export init:",
        );
        resolve_wit = resolve_wit.replace("@0.1.0", "@0.1.9");
        let height = r#"(import "$root" "block-height" (func (param i32)))"#;
        let err = load(
            &sandbox(),
            &component(&resolve_wit, "decider", &core(0, height)),
            &[],
        )
        .err()
        .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("as 0.1.0:") && text.contains("block-height"),
            "{text}"
        );
    }
}
