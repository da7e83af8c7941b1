//! The WebAssembly side: the generated WIT bindings (world 0.2.0, and the frozen
//! 0.1.0 in `v01`), the shared engine, one plugin's sandboxed instance, its host
//! imports, and the ways a plugin can fault.
pub mod bindings;
pub mod cache;
pub mod clock;
pub mod determinism;
pub mod engine;
pub mod fault;
pub mod grants;
pub mod imports;
pub mod input;
pub mod node;
pub mod outcome;
pub mod plugin;
pub mod v01;
pub mod wait;
pub mod world;
