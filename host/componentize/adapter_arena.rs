//! Memory for the WASI preview-1 adapter inside a Go module, reserved by the Go
//! SDK and handed to the adapter through an injected `cabi_realloc_adapter`.
//!
//! Why: the adapter allocates its state (one 64 KiB page) and its stack lazily, on
//! the first WASI call, which the Go runtime makes while it starts (random seed,
//! clock). By default the adapter asks the module's `cabi_realloc` for that
//! memory, but Go's exported functions abort when called before the runtime has
//! started. The other option of `wit-component`, growing memory behind Go's
//! back, corrupts both: Go's `sbrk` treats all memory above its data as its own
//! heap, so it would hand the adapter's page out again.
//!
//! So the Go SDK reserves an array in its data (`adapterArena` in
//! `sdk/go/wasm.go`), starting with [`MARKER`]. The Go linker keeps the marker in a
//! data segment and omits the zeros after it, so the reservation costs no file
//! size; Go never allocates inside its own data. `componentize` finds the marker
//! and adds a raw WebAssembly bump allocator over the array, exported as
//! `cabi_realloc_adapter` — the name `wit-component` gives the adapter instead of
//! `cabi_realloc`. It runs no Go code, so it works before the runtime starts.

use wasm_encoder::reencode::{utils, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection,
    GlobalType, Instruction, TypeSection, ValType,
};
use wasmparser::{Parser, Payload};

/// The bytes that start the Go SDK's reservation (32 bytes, none zero, so that
/// the linker keeps them in one data segment).
pub const MARKER: &[u8; 32] = b"htlcgate:preview1-adapter-arena1";

/// Size of the reservation after the marker; must match `adapterArenaBytes` in
/// `sdk/go/wasm.go`. The adapter takes one page for its state and one for its
/// stack.
pub const ARENA_BYTES: u32 = 3 * 65536;

/// Name under which `wit-component` hands a function to the adapter as its
/// allocator.
pub const EXPORT_NAME: &str = "cabi_realloc_adapter";

/// Why the reservation cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    /// The marker appears more than once.
    #[error("the Go SDK's adapter arena marker appears {0} times; rebuild with one copy of htlcgate.dev/sdk/go")]
    Ambiguous(usize),
    /// The module's layout is not what the injection needs.
    #[error("cannot add the adapter allocator: {0}")]
    Layout(String),
}

/// Where the reservation is: the address just after the marker, or `None` when
/// the module has none (not built with the Go SDK).
pub fn find(core: &[u8]) -> Result<Option<u32>, ArenaError> {
    let mut found = Vec::new();
    for payload in Parser::new(0).parse_all(core) {
        let Ok(Payload::DataSection(reader)) = payload else {
            continue;
        };
        for data in reader.into_iter().flatten() {
            let wasmparser::DataKind::Active { offset_expr, .. } = data.kind else {
                continue;
            };
            let Ok(wasmparser::Operator::I32Const { value }) =
                offset_expr.get_operators_reader().read()
            else {
                continue;
            };
            let mut from = 0;
            while let Some(pos) = data.data[from..]
                .windows(MARKER.len())
                .position(|w| w == MARKER)
            {
                let at = value as u32 + (from + pos) as u32;
                found.push(at + MARKER.len() as u32);
                from += pos + 1;
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(ArenaError::Ambiguous(n)),
    }
}

/// Counts of what the injection appends after.
#[derive(Default)]
struct Counts {
    types: u32,
    imported_funcs: u32,
    local_funcs: u32,
    imported_globals: u32,
    local_globals: u32,
    has: [bool; 4], // type, function, global, export section present
}

fn count(core: &[u8]) -> Result<Counts, ArenaError> {
    let layout = |e: wasmparser::BinaryReaderError| ArenaError::Layout(e.to_string());
    let mut c = Counts::default();
    for payload in Parser::new(0).parse_all(core) {
        match payload.map_err(layout)? {
            Payload::TypeSection(r) => {
                c.has[0] = true;
                for group in r {
                    c.types += group.map_err(layout)?.types().len() as u32;
                }
            }
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    match import.map_err(layout)?.ty {
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => {
                            c.imported_funcs += 1
                        }
                        wasmparser::TypeRef::Global(_) => c.imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(r) => {
                c.has[1] = true;
                c.local_funcs = r.count();
            }
            Payload::GlobalSection(r) => {
                c.has[2] = true;
                c.local_globals = r.count();
            }
            Payload::ExportSection(_) => c.has[3] = true,
            _ => {}
        }
    }
    if c.has.iter().any(|h| !h) {
        return Err(ArenaError::Layout(
            "the module lacks a type, function, global or export section (not a Go module?)".into(),
        ));
    }
    Ok(c)
}

/// Appends the allocator's type, global, function and export while copying the
/// module.
struct Inject {
    counts: Counts,
    start: u32,
    end: u32,
}

impl Inject {
    fn new_type(&self) -> u32 {
        self.counts.types
    }
    fn new_global(&self) -> u32 {
        self.counts.imported_globals + self.counts.local_globals
    }
    fn new_func(&self) -> u32 {
        self.counts.imported_funcs + self.counts.local_funcs
    }

    /// `(old_ptr, old_size, align, new_size) -> ptr`: bumps `next` by
    /// `new_size` after aligning; traps on a reallocation (the adapter makes
    /// none) or when the arena is used up.
    fn body(&self) -> Function {
        let next = self.new_global();
        let mut f = Function::new([(2, ValType::I32)]);
        let (old_ptr, align, new_size, ptr, end) = (0, 2, 3, 4, 5);
        for i in [
            Instruction::LocalGet(old_ptr),
            Instruction::If(wasm_encoder::BlockType::Empty),
            Instruction::Unreachable,
            Instruction::End,
            // ptr = (next + align - 1) & -align
            Instruction::GlobalGet(next),
            Instruction::LocalGet(align),
            Instruction::I32Add,
            Instruction::I32Const(1),
            Instruction::I32Sub,
            Instruction::I32Const(0),
            Instruction::LocalGet(align),
            Instruction::I32Sub,
            Instruction::I32And,
            Instruction::LocalTee(ptr),
            Instruction::LocalGet(new_size),
            Instruction::I32Add,
            Instruction::LocalTee(end),
            Instruction::I32Const(self.end as i32),
            Instruction::I32GtU,
            Instruction::If(wasm_encoder::BlockType::Empty),
            Instruction::Unreachable,
            Instruction::End,
            Instruction::LocalGet(end),
            Instruction::GlobalSet(next),
            Instruction::LocalGet(ptr),
            Instruction::End,
        ] {
            f.instruction(&i);
        }
        f
    }
}

impl Reencode for Inject {
    type Error = std::convert::Infallible;

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.new_type());
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        utils::parse_global_section(self, globals, section)?;
        globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(self.start as i32),
        );
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        utils::parse_export_section(self, exports, section)?;
        exports.export(EXPORT_NAME, ExportKind::Func, self.new_func());
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        utils::parse_code_section(self, code, section)?;
        code.function(&self.body());
        Ok(())
    }
}

/// Adds `cabi_realloc_adapter` over the reservation that starts at `start`.
pub fn inject(core: &[u8], start: u32) -> Result<Vec<u8>, ArenaError> {
    let counts = count(core)?;
    let mut inject = Inject {
        counts,
        start,
        end: start + ARENA_BYTES,
    };
    let mut module = wasm_encoder::Module::new();
    inject
        .parse_core_module(&mut module, Parser::new(0), core)
        .map_err(|e| ArenaError::Layout(format!("{e:?}")))?;
    Ok(module.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module shaped like a Go one: the marker in a data segment at 4096.
    fn module_with_marker(copies: usize) -> Vec<u8> {
        let marker = String::from_utf8(MARKER.to_vec()).unwrap().repeat(copies);
        wat::parse_str(format!(
            r#"(module
                (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
                (memory (export "memory") 8)
                (global (mut i32) (i32.const 0))
                (func (export "f") (result i32) (i32.const 1))
                (data (i32.const 4096) "{marker}"))"#
        ))
        .unwrap()
    }

    #[test]
    fn the_marker_is_found_and_the_arena_starts_after_it() {
        assert_eq!(find(&module_with_marker(1)).unwrap(), Some(4096 + 32));
        assert!(matches!(
            find(&module_with_marker(2)),
            Err(ArenaError::Ambiguous(2))
        ));
        let plain = wat::parse_str("(module (memory 1))").unwrap();
        assert_eq!(find(&plain).unwrap(), None);
    }

    #[test]
    fn the_injected_allocator_bumps_aligns_and_traps_when_full() {
        let core = inject(&module_with_marker(1), 4128).unwrap();
        wasmparser::Validator::new().validate_all(&core).unwrap();
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &core).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let mut linker = wasmtime::Linker::new(&engine);
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "random_get",
                |_: i32, _: i32| -> i32 { 0 },
            )
            .unwrap();
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let realloc = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, EXPORT_NAME)
            .unwrap();
        assert_eq!(realloc.call(&mut store, (0, 0, 8, 3)).unwrap(), 4128);
        // 4131 aligned up to 8.
        assert_eq!(realloc.call(&mut store, (0, 0, 8, 65536)).unwrap(), 4136);
        assert_eq!(
            realloc.call(&mut store, (0, 0, 1, 1)).unwrap(),
            4136 + 65536
        );
        // More than is left: a trap, never memory outside the arena.
        assert!(realloc
            .call(&mut store, (0, 0, 1, ARENA_BYTES as i32))
            .is_err());
        // The module's own export still works.
        let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
        assert_eq!(f.call(&mut store, ()).unwrap(), 1);
    }
}
