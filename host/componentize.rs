//! `htlcgate componentize`: turns a core WebAssembly module (built by Go or
//! AssemblyScript with the SDK's glue) into a component of the
//! `htlcgate:plugin@0.2.0` `decider` world, so plugin authors need no tool
//! besides their compiler and htlcgate. (htlcgate still loads components built
//! for 0.1.0; new ones are built for the current world.)
//!
//! The world (`wit/plugin.wit`) and the WASI preview-1 reactor adapter are
//! compiled into the binary. Before handing the module to `wit-component`, its
//! exports and imports are checked against what the world lowers to, so a
//! mistake is reported as "export `decide` is missing" or "imports `env.abort`;
//! pass `--use abort=...` to asc" instead of an encoder's internal message.
//!
//! What the world lowers to (canonical ABI, core signatures):
//!
//! | core name                | signature                       |
//! |--------------------------|---------------------------------|
//! | export `decide`          | `(i32) -> i32` (pointer to the 104-byte `htlc` record, return area) |
//! | export `init`            | `(i32, i32) -> i32` (list, return area) |
//! | export `cabi_realloc`    | `(i32, i32, i32, i32) -> i32`   |
//! | export `memory`          | the linear memory               |
//! | export `cabi_post_decide`, `cabi_post_init` | `(i32)`, optional |
//! | export `outcome`         | 16 flat values, optional (below) |
//! | import `$root` `log`     | `(i32, i32, i32)`               |
//! | import `$root` `now-unix-ms` | `() -> i64`                 |
//! | import `$root` `onion-blob`  | `(i32)` (return area)       |
//! | import `$root` `kv-get`  | `(i32, i32, i32)` (key, return area) |
//! | import `$root` `kv-set`  | `(i32, i32, i32, i32, i32)` (key, value, return area) |
//! | import `$root` `kv-delete` | `(i32, i32, i32)` (key, return area) |
//! | import `$root` `channel` | `(i64, i32)` (chan-id, return area) |
//! | import `$root` `block-height` | `(i32)` (return area)      |
//! | import `$root` `ignore-outcomes` | `()`                     |
//!
//! `outcome(htlc-outcome)` flattens to exactly 16 values (MAX_FLAT_PARAMS), so
//! it is passed flat, not through a pointer: `(i64 i64 | i32 i64 i64 | i32 i64
//! i64 i32 i32 i32 i64 i64 i32 i32 | i64)` = incoming key, option<outgoing key>,
//! `outcome-kind` (discriminant and the joined payloads of its cases),
//! `at-unix-ms`. It has no result, hence no `cabi_post_outcome`.
//!
//! `outcome` is optional: a module that does not export it is componentized
//! against the world without that export (removed from the resolved world
//! before `wit-component` runs), and htlcgate never calls it. The signatures
//! above are checked against `wit-parser`'s own lowering of `wit/plugin.wit` by
//! this module's tests.
//!
//! Imports from `wasi_snapshot_preview1` (the Go runtime's) are served by the
//! embedded reactor adapter, which turns them into WASI preview 2 imports; a
//! module without them (AssemblyScript) gets no adapter and imports no WASI.
//!
//! A module the Go toolchain built (it has a `go:buildid` custom section) must
//! also be a reactor (`-buildmode=c-shared`: `_initialize`, not `_start`) and
//! carry the Go SDK's memory reservation for the adapter; otherwise the
//! component could be written but would trap at load, so it is refused with the
//! fix named.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasmparser::{ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, WorldKey};

pub mod adapter_arena;

/// The plugin contract, `wit/plugin.wit`, as compiled into this binary.
pub const WORLD_WIT: &str = include_str!("../wit/plugin.wit");

/// The world every plugin implements.
pub const WORLD_NAME: &str = "htlcgate:plugin@0.2.0 `decider`";

/// The world's optional export: a module without it becomes a component
/// without it.
const OUTCOME: &str = "outcome";

/// Module name of the world-level imports in a core module.
const ROOT: &str = "$root";

/// Why a core module cannot become a plugin component. Each names the export or
/// import and the way out.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly module (it does not start with \\0asm); pass the .wasm your compiler wrote")]
    NotWasm,
    /// The input is already a component.
    #[error("this is already a component, not a core module: load it as it is (`htlcgate check FILE` shows whether it fits the world)")]
    AlreadyComponent,
    /// The module does not validate.
    #[error("not a valid core WebAssembly module: {reason}")]
    Invalid {
        /// The validator's message.
        reason: String,
    },
    /// A required export is missing.
    #[error("the module does not export `{name}` ({what}); {fix}")]
    MissingExport {
        /// Core export name.
        name: &'static str,
        /// What it is for.
        what: &'static str,
        /// How to add it.
        fix: &'static str,
    },
    /// An export has the wrong kind or signature.
    #[error("export `{name}` is {found}, but the world needs {expected}; {fix}")]
    ExportSignature {
        /// Core export name.
        name: String,
        /// What the module has.
        found: String,
        /// What the canonical ABI needs.
        expected: String,
        /// How to fix it.
        fix: String,
    },
    /// An import the world does not provide.
    #[error("the module imports `{module}`.`{name}`, which htlcgate does not provide: {fix}")]
    UnknownImport {
        /// Core import module.
        module: String,
        /// Core import name.
        name: String,
        /// How to get rid of it.
        fix: String,
    },
    /// A world import with the wrong signature.
    #[error("import `$root`.`{name}` is {found}, but the world's `{name}` lowers to {expected}; declare it with exactly these parameters and results")]
    ImportSignature {
        /// Core import name.
        name: String,
        /// What the module has.
        found: String,
        /// What the canonical ABI needs.
        expected: String,
    },
    /// A Go module built as a command (`_start`): the component could never
    /// start its Go runtime.
    #[error("the module was built by Go as a command (it exports `_start`, not `_initialize`): its Go runtime would never start and the component would trap at load; build with -buildmode=c-shared (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o core.wasm .)")]
    GoCommand,
    /// A Go module without the Go SDK's memory reservation for the WASI
    /// adapter (not built with the SDK, or with one too old).
    #[error("the module was built by Go but has no htlcgate Go SDK in it (its memory reservation for the WASI adapter, marked `htlcgate:preview1-adapter-arena1`, is missing), so the Go runtime's start-up would corrupt the adapter's memory; rebuild with htlcgate.dev/sdk/go (import it, call htlcgate.Register from an init function; use the SDK that comes with this htlcgate)")]
    GoWithoutSdk,
    /// `wit-component` refused the module after the checks above.
    #[error("cannot build the component: {reason}")]
    Encode {
        /// The encoder's message chain.
        reason: String,
    },
}

/// A core module's import or export, for messages and `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreItem {
    /// Import module (empty for exports).
    pub module: String,
    /// Name.
    pub name: String,
    /// Kind and signature, e.g. `func (i32) -> i32` or `memory`.
    pub ty: String,
}

/// What [`componentize`] produced.
#[derive(Clone, Debug)]
pub struct Componentized {
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The core module's imports.
    pub imports: Vec<CoreItem>,
    /// The core module's exports.
    pub exports: Vec<CoreItem>,
    /// Whether the WASI preview-1 adapter was linked (the module imports
    /// `wasi_snapshot_preview1`).
    pub uses_wasi: bool,
}

/// An export the world needs.
struct RequiredExport {
    /// Core export name.
    name: &'static str,
    /// Core parameter types.
    params: &'static [ValType],
    /// Core result types.
    results: &'static [ValType],
    /// What it is for.
    what: &'static str,
    /// How to add it.
    fix: &'static str,
}

/// How the SDKs export the world's functions.
const GLUE_FIX: &str = "export it from the SDK glue (Go: import htlcgate.dev/sdk/go; AssemblyScript: `export * from \"htlcgate-sdk/assembly/glue\"` in the entry file)";

/// Exports the world needs.
const REQUIRED_EXPORTS: &[RequiredExport] = &[
    RequiredExport {
        name: "decide",
        params: &[ValType::I32],
        results: &[ValType::I32],
        what: "the world's `decide`",
        fix: GLUE_FIX,
    },
    RequiredExport {
        name: "init",
        params: &[ValType::I32, ValType::I32],
        results: &[ValType::I32],
        what: "the world's `init`",
        fix: GLUE_FIX,
    },
    RequiredExport {
        name: "cabi_realloc",
        params: &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        results: &[ValType::I32],
        what: "the allocator the host writes arguments with",
        fix: "export it from the SDK glue (it is part of the SDK in every language)",
    },
];

/// `outcome(htlc-outcome)` lowered: 16 flat values (see the module docs).
const OUTCOME_PARAMS: &[ValType] = &[
    // incoming-circuit-key
    ValType::I64,
    ValType::I64,
    // outgoing-circuit-key: option discriminant, chan-id, htlc-id
    ValType::I32,
    ValType::I64,
    ValType::I64,
    // kind: discriminant, then the cases' payloads joined slot by slot
    ValType::I32,
    ValType::I64,
    ValType::I64,
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I64,
    ValType::I64,
    ValType::I32,
    ValType::I32,
    // at-unix-ms
    ValType::I64,
];

/// Optional exports with their signatures and how to get them right.
const OPTIONAL_EXPORTS: &[(&str, &[ValType], &[ValType], &str)] = &[
    ("cabi_post_decide", &[ValType::I32], &[], GLUE_UNCHANGED),
    ("cabi_post_init", &[ValType::I32], &[], GLUE_UNCHANGED),
    ("_initialize", &[], &[], "it is the Go runtime's start (-buildmode=c-shared); do not export a function of your own under that name"),
    (OUTCOME, OUTCOME_PARAMS, &[], "export the SDK's `outcome` unchanged (Go: import _ \"htlcgate.dev/sdk/go/outcome\"; AssemblyScript: `export * from \"htlcgate-sdk/assembly/outcome-glue\"`), or no `outcome` at all"),
];

/// The fix for an SDK export with the wrong signature.
const GLUE_UNCHANGED: &str = "it must be the SDK glue's export, unchanged";

/// The world's imports as core functions: name, params, results.
const ROOT_IMPORTS: &[(&str, &[ValType], &[ValType])] = &[
    ("log", &[ValType::I32, ValType::I32, ValType::I32], &[]),
    ("now-unix-ms", &[], &[ValType::I64]),
    ("onion-blob", &[ValType::I32], &[]),
    ("kv-get", &[ValType::I32, ValType::I32, ValType::I32], &[]),
    (
        "kv-set",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
        ],
        &[],
    ),
    (
        "kv-delete",
        &[ValType::I32, ValType::I32, ValType::I32],
        &[],
    ),
    ("channel", &[ValType::I64, ValType::I32], &[]),
    ("block-height", &[ValType::I32], &[]),
    ("ignore-outcomes", &[], &[]),
];

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |v: &[ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match results {
        [] => format!("func ({})", list(params)),
        [r] => format!("func ({}) -> {r}", list(params)),
        _ => format!("func ({}) -> ({})", list(params), list(results)),
    }
}

fn func_signature(f: &FuncType) -> String {
    signature(f.params(), f.results())
}

/// Why an unknown import is there and how to drop it.
fn import_fix(module: &str, name: &str) -> String {
    match (module, name) {
        ("env", "abort") => "AssemblyScript's default abort handler; build with `--use abort=~lib/htlcgate-sdk/assembly/abort/abort` (the SDK's build command and `htlcgate plugin new`'s `npm run build` do)".into(),
        ("env", "seed") => "AssemblyScript's Math.random seed; avoid Math.random, or build with `--use seed=...` pointing at a function of your own".into(),
        ("env", "trace") => "AssemblyScript's trace(); remove the calls and log with the SDK's log functions".into(),
        ("gojs", _) => "the module was built for GOOS=js; build with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared".into(),
        ("wasi_unstable", _) => "an old WASI snapshot; rebuild for wasi_snapshot_preview1 (GOOS=wasip1)".into(),
        (ROOT, _) => format!(
            "the world imports only {}; check the spelling of `//go:wasmimport` / `@external`",
            ROOT_IMPORTS
                .iter()
                .map(|(n, _, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "a plugin may import only the world's functions (module `$root`) and WASI preview 1 (`wasi_snapshot_preview1`); remove the dependency that needs it".into(),
    }
}

/// Lists a core module's imports and exports with their signatures, after
/// validating it.
pub fn inspect(core: &[u8]) -> Result<(Vec<CoreItem>, Vec<CoreItem>), ComponentizeError> {
    if !core.starts_with(b"\0asm") {
        return Err(ComponentizeError::NotWasm);
    }
    if wasmparser::Parser::is_component(core) {
        return Err(ComponentizeError::AlreadyComponent);
    }
    let types = Validator::new()
        .validate_all(core)
        .map_err(|e| ComponentizeError::Invalid {
            reason: e.to_string(),
        })?;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut imported_funcs = 0u32;
    for payload in Parser::new(0).parse_all(core) {
        let payload = payload.map_err(|e| ComponentizeError::Invalid {
            reason: e.to_string(),
        })?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| ComponentizeError::Invalid {
                        reason: e.to_string(),
                    })?;
                    let ty = match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                            let id = types.as_ref().core_function_at(imported_funcs);
                            imported_funcs += 1;
                            func_signature(types[id].unwrap_func())
                        }
                        TypeRef::Memory(_) => "memory".into(),
                        TypeRef::Table(_) => "table".into(),
                        TypeRef::Global(_) => "global".into(),
                        TypeRef::Tag(_) => "tag".into(),
                    };
                    imports.push(CoreItem {
                        module: import.module.into(),
                        name: import.name.into(),
                        ty,
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| ComponentizeError::Invalid {
                        reason: e.to_string(),
                    })?;
                    let ty = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => func_signature(
                            types[types.as_ref().core_function_at(export.index)].unwrap_func(),
                        ),
                        ExternalKind::Memory => "memory".into(),
                        ExternalKind::Table => "table".into(),
                        ExternalKind::Global => "global".into(),
                        ExternalKind::Tag => "tag".into(),
                    };
                    exports.push(CoreItem {
                        module: String::new(),
                        name: export.name.into(),
                        ty,
                    });
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// Checks the module's exports and imports against the world.
fn check_against_world(
    imports: &[CoreItem],
    exports: &[CoreItem],
) -> Result<bool, ComponentizeError> {
    let export = |name: &str| exports.iter().find(|e| e.name == name);
    for required in REQUIRED_EXPORTS {
        let expected = signature(required.params, required.results);
        match export(required.name) {
            None => {
                return Err(ComponentizeError::MissingExport {
                    name: required.name,
                    what: required.what,
                    fix: required.fix,
                });
            }
            Some(e) if e.ty != expected => {
                return Err(ComponentizeError::ExportSignature {
                    name: required.name.into(),
                    found: e.ty.clone(),
                    expected,
                    fix: GLUE_UNCHANGED.into(),
                })
            }
            Some(_) => {}
        }
    }
    match export("memory") {
        Some(e) if e.ty == "memory" => {}
        found => {
            return Err(ComponentizeError::ExportSignature {
                name: "memory".into(),
                found: found.map_or("missing".into(), |e| e.ty.clone()),
                expected: "the exported linear memory".into(),
                fix: "export the module's memory as `memory` (Go and AssemblyScript do by default)"
                    .into(),
            })
        }
    }
    for (name, params, results, fix) in OPTIONAL_EXPORTS {
        let expected = signature(params, results);
        if let Some(e) = export(name) {
            if e.ty != expected {
                return Err(ComponentizeError::ExportSignature {
                    name: (*name).into(),
                    found: e.ty.clone(),
                    expected,
                    fix: (*fix).into(),
                });
            }
        }
    }
    let mut uses_wasi = false;
    for import in imports {
        if import.module == "wasi_snapshot_preview1" {
            uses_wasi = true;
            continue;
        }
        if import.module == ROOT {
            if let Some((_, params, results)) =
                ROOT_IMPORTS.iter().find(|(n, _, _)| *n == import.name)
            {
                let expected = signature(params, results);
                if import.ty != expected {
                    return Err(ComponentizeError::ImportSignature {
                        name: import.name.clone(),
                        found: import.ty.clone(),
                        expected,
                    });
                }
                continue;
            }
        }
        return Err(ComponentizeError::UnknownImport {
            module: import.module.clone(),
            name: import.name.clone(),
            fix: import_fix(&import.module, &import.name),
        });
    }
    Ok(uses_wasi)
}

/// Whether the Go toolchain built the module: Go writes a `go:buildid` custom
/// section into every module it links.
fn built_by_go(core: &[u8]) -> bool {
    Parser::new(0)
        .parse_all(core)
        .any(|payload| matches!(payload, Ok(Payload::CustomSection(c)) if c.name() == "go:buildid"))
}

/// What a Go module needs to load beyond the world's exports: built as a reactor
/// (`-buildmode=c-shared` exports `_initialize`, which starts the Go runtime;
/// a command's `_start` would run `main` and exit), and with the Go SDK's memory
/// reservation for the WASI adapter (see [`adapter_arena`]).
fn check_go(core: &[u8], exports: &[CoreItem]) -> Result<(), ComponentizeError> {
    let exports_fn = |name: &str| exports.iter().any(|e| e.name == name);
    if exports_fn("_start") && !exports_fn("_initialize") {
        return Err(ComponentizeError::GoCommand);
    }
    match adapter_arena::find(core) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ComponentizeError::GoWithoutSdk),
        Err(e) => Err(ComponentizeError::Encode {
            reason: e.to_string(),
        }),
    }
}

/// Turns a core module into a component of the `decider` world.
pub fn componentize(core: &[u8]) -> Result<Componentized, ComponentizeError> {
    let (imports, exports) = inspect(core)?;
    if built_by_go(core) {
        // Before the world's checks: an SDK-less Go module also lacks `decide`,
        // and the Go-specific fix is the one that helps.
        check_go(core, &exports)?;
    }
    let uses_wasi = check_against_world(&imports, &exports)?;
    let encode_err = |e: anyhow::Error| ComponentizeError::Encode {
        reason: format!("{e:#}"),
    };
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("wit/plugin.wit", WORLD_WIT)
        .map_err(encode_err)?;
    let world = resolve
        .select_world(&[package], Some("decider"))
        .map_err(encode_err)?;
    if !exports.iter().any(|e| e.name == OUTCOME) {
        // The module is not told about outcomes: build the component against
        // the world without the optional export (wit-component would otherwise
        // ask for it).
        let removed = resolve.worlds[world]
            .exports
            .shift_remove(&WorldKey::Name(OUTCOME.into()));
        debug_assert!(removed.is_some(), "the world has no `{OUTCOME}` export");
    }
    let mut module = core.to_vec();
    if uses_wasi {
        // A Go SDK module reserves memory for the adapter; see `adapter_arena`.
        // (A Go module without it was refused above; another WASI module gets
        // wit-component's default.)
        let arena = adapter_arena::find(core).map_err(|e| ComponentizeError::Encode {
            reason: e.to_string(),
        })?;
        if let Some(start) = arena {
            module = adapter_arena::inject(core, start).map_err(|e| ComponentizeError::Encode {
                reason: e.to_string(),
            })?;
        }
    }
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .map_err(encode_err)?;
    let mut encoder = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(encode_err)?;
    if uses_wasi {
        encoder = encoder
            .adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(encode_err)?;
    }
    let component = encoder.encode().map_err(encode_err)?;
    Ok(Componentized {
        component,
        imports,
        exports,
        uses_wasi,
    })
}

/// Arguments of `htlcgate componentize`.
#[derive(clap::Args, Debug, Clone)]
pub struct ComponentizeArgs {
    /// The core module your compiler wrote (Go: GOOS=wasip1 -buildmode=c-shared;
    /// AssemblyScript: asc with the SDK's flags).
    pub input: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Writes `bytes` to `path` atomically: into a temporary file next to it, then
/// renamed over it, so a reader never sees half a file. The temporary file is
/// removed again when anything fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to it", tmp.display()))
        });
    if let Err(e) = written {
        // Also after a failed write: it may have created a partial file.
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!(
            "cannot write the component to {} (-o must be a file path in an existing, writable directory)",
            path.display()
        )));
    }
    Ok(())
}

/// Runs `htlcgate componentize`: reads, converts, writes (atomically: a reader
/// never sees half a file), and prints what it wrote.
pub fn run(args: ComponentizeArgs) -> anyhow::Result<()> {
    let core = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let out = componentize(&core).with_context(|| {
        format!(
            "{} cannot become a plugin of the {WORLD_NAME} world",
            args.input.display()
        )
    })?;
    if args.output.is_dir() {
        anyhow::bail!(
            "cannot write the component to {}: it is a directory; -o must be a file path (e.g. -o {})",
            args.output.display(),
            args.output.join("plugin.wasm").display()
        );
    }
    write_atomically(&args.output, &out.component)?;
    println!(
        "{}: component of {WORLD_NAME}, {} bytes (core module {} bytes; {})",
        args.output.display(),
        out.component.len(),
        core.len(),
        if out.uses_wasi {
            "WASI preview 1 adapted to preview 2"
        } else {
            "no WASI"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with the world's exports, importing `log` plus `imports`
    /// and exporting `extra` too; `decide` has parameters `decide_params`.
    fn module_full(imports: &str, decide_params: &str, extra: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                {imports}
                (import "$root" "log" (func (param i32 i32 i32)))
                {extra}
                (memory (export "memory") 1)
                (global $next (mut i32) (i32.const 1024))
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                    (local $p i32)
                    (local.set $p (global.get $next))
                    (global.set $next (i32.add (global.get $next) (local.get 3)))
                    (local.get $p))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0))
                (func (export "decide") (param {decide_params}) (result i32) (i32.const 16))
            )"#
        ))
        .unwrap()
    }

    fn module_with(imports: &str, decide_params: &str) -> Vec<u8> {
        module_full(imports, decide_params, "")
    }

    fn module(imports: &str) -> Vec<u8> {
        module_with(imports, "i32")
    }

    /// The core signature wit-parser derives for a world function.
    fn lowered(
        resolve: &Resolve,
        world: wit_parser::WorldId,
        name: &str,
        import: bool,
    ) -> (Vec<ValType>, Vec<ValType>) {
        use wit_parser::abi::{AbiVariant, WasmType};
        let items = if import {
            &resolve.worlds[world].imports
        } else {
            &resolve.worlds[world].exports
        };
        let Some(wit_parser::WorldItem::Function(f)) = items.get(&WorldKey::Name(name.into()))
        else {
            panic!("the world has no function `{name}`");
        };
        let variant = if import {
            AbiVariant::GuestImport
        } else {
            AbiVariant::GuestExport
        };
        let sig = resolve.wasm_signature(variant, f);
        let core = |v: &[WasmType]| {
            v.iter()
                .map(|t| match t {
                    WasmType::I32 | WasmType::Pointer | WasmType::Length => ValType::I32,
                    WasmType::I64 | WasmType::PointerOrI64 => ValType::I64,
                    WasmType::F32 => ValType::F32,
                    WasmType::F64 => ValType::F64,
                })
                .collect::<Vec<_>>()
        };
        (core(&sig.params), core(&sig.results))
    }

    /// The names a component exports at its top level.
    fn component_exports(component: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(component) {
            if let Payload::ComponentExportSection(reader) = payload.unwrap() {
                for export in reader {
                    names.push(export.unwrap().name.name.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn the_signature_tables_are_the_worlds_own_lowering() {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("plugin.wit", WORLD_WIT).unwrap();
        let world = resolve.select_world(&[package], Some("decider")).unwrap();
        let imports: Vec<&str> = resolve.worlds[world]
            .imports
            .iter()
            .filter(|(_, item)| matches!(item, wit_parser::WorldItem::Function(_)))
            .map(|(key, _)| match key {
                WorldKey::Name(n) => n.as_str(),
                WorldKey::Interface(_) => panic!("an interface import"),
            })
            .collect();
        let table: Vec<&str> = ROOT_IMPORTS.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(table, imports, "every world import, in the world's order");
        for (name, params, results) in ROOT_IMPORTS {
            assert_eq!(
                lowered(&resolve, world, name, true),
                (params.to_vec(), results.to_vec()),
                "import `{name}`"
            );
        }
        for r in REQUIRED_EXPORTS.iter().filter(|r| r.name != "cabi_realloc") {
            assert_eq!(
                lowered(&resolve, world, r.name, false),
                (r.params.to_vec(), r.results.to_vec()),
                "export `{}`",
                r.name
            );
        }
        let (params, results) = lowered(&resolve, world, OUTCOME, false);
        assert_eq!(params.len(), 16, "outcome is passed flat (16 values)");
        assert_eq!(
            (params, results),
            (OUTCOME_PARAMS.to_vec(), vec![]),
            "export `outcome`"
        );
        assert_eq!(
            resolve.worlds[world].exports.len(),
            3,
            "init, decide, outcome"
        );
    }

    /// An `outcome` export that does nothing, with the world's signature.
    const OUTCOME_EXPORT: &str = r#"(func (export "outcome")
        (param i64 i64 i32 i64 i64 i32 i64 i64 i32 i32 i32 i64 i64 i32 i32 i64))"#;

    #[test]
    fn outcome_is_exported_by_the_component_only_when_the_module_exports_it() {
        let without = componentize(&module("")).unwrap();
        let names = component_exports(&without.component);
        assert!(names.contains(&"decide".to_owned()), "{names:?}");
        assert!(!names.contains(&"outcome".to_owned()), "{names:?}");

        let with = componentize(&module_full("", "i32", OUTCOME_EXPORT)).unwrap();
        let names = component_exports(&with.component);
        assert!(
            names.contains(&"outcome".to_owned()) && names.contains(&"decide".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn an_outcome_export_with_the_wrong_signature_is_named_with_the_fix() {
        let core = module_full("", "i32", r#"(func (export "outcome") (param i32))"#);
        let err = componentize(&core).unwrap_err();
        assert!(
            matches!(&err, ComponentizeError::ExportSignature { name, .. } if name == "outcome"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("func (i32)")
                && msg.contains("func (i64, i64, i32, i64, i64, i32, i64, i64, i32, i32, i32, i64, i64, i32, i32, i64)")
                && msg.contains("htlcgate.dev/sdk/go/outcome"),
            "{msg}"
        );
    }

    #[test]
    fn the_kv_channel_and_block_height_imports_are_accepted() {
        let core = module(
            r#"(import "$root" "kv-get" (func (param i32 i32 i32)))
               (import "$root" "kv-set" (func (param i32 i32 i32 i32 i32)))
               (import "$root" "kv-delete" (func (param i32 i32 i32)))
               (import "$root" "channel" (func (param i64 i32)))
               (import "$root" "block-height" (func (param i32)))"#,
        );
        let out = componentize(&core).unwrap();
        assert!(!out.uses_wasi);
        assert!(out.imports.iter().any(|i| i.name == "channel"));
    }

    #[test]
    fn a_channel_import_taking_an_i32_id_is_refused_with_the_lowering() {
        let core = module(r#"(import "$root" "channel" (func (param i32 i32)))"#);
        let err = componentize(&core).unwrap_err();
        assert!(
            matches!(&err, ComponentizeError::ImportSignature { name, .. } if name == "channel"),
            "{err}"
        );
        assert!(err.to_string().contains("func (i64, i32)"), "{err}");
    }

    #[test]
    fn a_module_with_the_worlds_exports_becomes_a_component_without_wasi() {
        let out = componentize(&module("")).unwrap();
        assert!(wasmparser::Parser::is_component(&out.component));
        assert!(!out.uses_wasi);
        assert!(out.exports.iter().any(|e| e.name == "decide"));
    }

    #[test]
    fn a_missing_decide_is_named_with_the_fix() {
        let core = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0)))"#,
        )
        .unwrap();
        let err = componentize(&core).unwrap_err();
        assert!(
            matches!(err, ComponentizeError::MissingExport { name: "decide", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("SDK glue"), "{err}");
    }

    #[test]
    fn a_decide_with_the_wrong_signature_is_refused() {
        let err = componentize(&module_with("", "i64")).unwrap_err();
        assert!(
            matches!(&err, ComponentizeError::ExportSignature { name, .. } if name == "decide"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("func (i64) -> i32") && msg.contains("func (i32) -> i32"),
            "{msg}"
        );
    }

    #[test]
    fn assemblyscripts_abort_import_is_named_with_the_asc_flag() {
        let core = module(r#"(import "env" "abort" (func (param i32 i32 i32 i32)))"#);
        let err = componentize(&core).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ComponentizeError::UnknownImport { .. }),
            "{msg}"
        );
        // The value asc resolves (the SDK's README, `plugin new` and
        // build-plugins use it): a path under `~lib/`, naming the module file.
        assert!(
            msg.contains("`env`.`abort`")
                && msg.contains("`--use abort=~lib/htlcgate-sdk/assembly/abort/abort`"),
            "{msg}"
        );
    }

    #[test]
    fn a_misspelt_world_import_is_refused() {
        let core = module(r#"(import "$root" "now_unix_ms" (func (result i64)))"#);
        let msg = componentize(&core).unwrap_err().to_string();
        assert!(
            msg.contains("now_unix_ms") && msg.contains("`now-unix-ms`"),
            "{msg}"
        );
    }

    #[test]
    fn a_world_import_with_the_wrong_signature_is_refused() {
        let core = module(r#"(import "$root" "now-unix-ms" (func (result i32)))"#);
        let err = componentize(&core).unwrap_err();
        assert!(
            matches!(err, ComponentizeError::ImportSignature { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("func () -> i64"), "{err}");
    }

    #[test]
    fn a_component_or_garbage_is_not_a_core_module() {
        let component = componentize(&module("")).unwrap().component;
        assert!(matches!(
            componentize(&component),
            Err(ComponentizeError::AlreadyComponent)
        ));
        assert!(matches!(
            componentize(b"#!/bin/sh"),
            Err(ComponentizeError::NotWasm)
        ));
    }

    #[test]
    fn a_failed_write_or_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: a non-empty directory is in the way.
        let taken = dir.path().join("plugin.wasm");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("keep"), b"x").unwrap();
        let err = write_atomically(&taken, b"component").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&taken.display().to_string()) && msg.contains("-o must be a file path"),
            "{msg}"
        );
        // The write fails: no such directory.
        let missing = dir.path().join("gone/plugin.wasm");
        assert!(write_atomically(&missing, b"component").is_err());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["plugin.wasm"], "a temporary file was left behind");
        // And it works where it can.
        let fine = dir.path().join("fine.wasm");
        write_atomically(&fine, b"component").unwrap();
        assert_eq!(std::fs::read(&fine).unwrap(), b"component");
    }

    /// A module shaped like the Go SDK's: the world's exports, WASI imports, a
    /// `go:buildid` section, `start` exported (`_start` for a command,
    /// `_initialize` for -buildmode=c-shared) and the adapter arena's marker if
    /// `marker`.
    fn go_module(start: &str, marker: bool) -> Vec<u8> {
        let data = if marker {
            format!(
                r#"(data (i32.const 4096) "{}")"#,
                std::str::from_utf8(adapter_arena::MARKER).unwrap()
            )
        } else {
            String::new()
        };
        let extra = format!(
            r#"(@custom "go:buildid" "Go build ID: \"abc/def\"")
               (func (export "{start}"))
               {data}"#
        );
        module_full(
            r#"(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))"#,
            "i32",
            &extra,
        )
    }

    #[test]
    fn a_go_module_built_as_a_reactor_with_the_sdk_is_accepted() {
        let out = componentize(&go_module("_initialize", true)).unwrap();
        assert!(out.uses_wasi);
    }

    #[test]
    fn a_go_command_module_is_refused_with_the_build_mode_that_fixes_it() {
        let err = componentize(&go_module("_start", true)).unwrap_err();
        assert!(
            matches!(err, ComponentizeError::GoCommand),
            "wrong error: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("`_start`")
                && msg.contains("`_initialize`")
                && msg.contains("build with -buildmode=c-shared"),
            "{msg}"
        );
    }

    #[test]
    fn a_go_module_without_the_sdks_arena_is_refused_with_the_sdk_named() {
        let err = componentize(&go_module("_initialize", false)).unwrap_err();
        assert!(
            matches!(err, ComponentizeError::GoWithoutSdk),
            "wrong error: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("rebuild with htlcgate.dev/sdk/go"), "{msg}");
        // A WASI module not built by Go (no go:buildid) keeps the fallback.
        let not_go = module(
            r#"(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))"#,
        );
        assert!(componentize(&not_go).unwrap().uses_wasi);
    }

    #[test]
    fn wasi_imports_get_the_embedded_adapter() {
        let core = module(
            r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#,
        );
        let out = componentize(&core).unwrap();
        assert!(out.uses_wasi);
        let text = String::from_utf8_lossy(&out.component);
        assert!(text.contains("wasi:clocks/wall-clock"), "no WASI p2 import");
    }
}
