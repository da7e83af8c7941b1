//! The WebAssembly side: the generated WIT bindings, the shared engine, one plugin's
//! sandboxed instance, its host imports, and the ways a plugin can fault.
pub mod bindings;
pub mod cache;
pub mod engine;
pub mod fault;
pub mod grants;
pub mod imports;
pub mod input;
pub mod plugin;
