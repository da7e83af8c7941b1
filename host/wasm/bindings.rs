//! Host bindings generated from `wit/plugin.wit` (world `htlcgate:plugin/decider`).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "decider",
});
