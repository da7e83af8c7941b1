//! Components whose `decide` does nothing, built from WAT at run time (no plugin
//! crate, no toolchain): the floor of every per-HTLC figure.
//!
//! The core module has a bump allocator as `cabi_realloc` (reset on every call:
//! the cheapest allocator a guest can have) and a `decide` that returns a pointer
//! to zeroed memory, which the canonical ABI reads as `next` (discriminant 0).
//! `wit-component` wraps it into a component of the given world. Built once for
//! htlcgate's world (`wit/plugin.wit`, with `init`) and once for the naive world
//! (`benches/decide/naive.wit`, onion in the record).

use std::path::Path;

use anyhow::Context;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The core module. Both exports take their arguments through memory (the HTLC
/// record flattens to more than 16 values) and return a pointer to their result.
fn core_wat(with_init: bool) -> String {
    // Bytes 0..1024 stay zero: the result areas. `init` returning a pointer to
    // zeros means `ok`, `decide` returning one means `next`.
    let init = if with_init {
        r#"(func (export "init") (param i32 i32) (result i32)
             (global.set $bump (i32.const 1024))
             (i32.const 0))"#
    } else {
        ""
    };
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32)
        (param $align i32) (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.lt_s
              (memory.grow
                (i32.add
                  (i32.shr_u
                    (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                    (i32.const 16))
                  (i32.const 1)))
              (i32.const 0))
          (then unreachable))))
    (global.set $bump (local.get $end))
    (local.get $p))
  {init}
  (func (export "decide") (param i32) (result i32)
    (global.set $bump (i32.const 1024))
    (i32.const 0))
)"#
    )
}

/// A component of `world` in the WIT file `wit` whose `decide` returns `next`.
pub fn component(wit: &Path, world: &str, with_init: bool) -> anyhow::Result<Vec<u8>> {
    let mut module = wat::parse_str(core_wat(with_init)).context("empty decide: WAT")?;
    let mut resolve = Resolve::default();
    let package = resolve
        .push_file(wit)
        .with_context(|| format!("empty decide: reading {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("empty decide: world {world} in {}", wit.display()))?;
    // htlcgate's optional `outcome` export: the empty plugin does not have it
    // (as `htlcgate componentize` does for a module without it).
    resolve.worlds[world]
        .exports
        .shift_remove(&wit_parser::WorldKey::Name("outcome".into()));
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .context("empty decide: embedding the world")?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("empty decide: encoder")?
        .encode()
        .context("empty decide: encoding the component")
}
