//! Host bindings generated from `wit/plugin.wit` (package `htlcgate:plugin@0.2.0`,
//! world `decider`): the types every part of the host uses.
//!
//! The generated `Decider`/`DeciderPre` require every export, `outcome` included;
//! htlcgate treats `outcome` as optional, so plugins are pre-instantiated by
//! `wasm::world` instead (which uses these types). The frozen 0.1.0 world's
//! bindings are in `wasm::v01`.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "decider",
    // Lets tests (and callers) compare records, outcomes and resolutions.
    additional_derives: [PartialEq, Eq],
});
