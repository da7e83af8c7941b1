//! htlcgate: a chain of sandboxed WebAssembly components decides every HTLC that LND
//! hands to its interceptor stream. See docs/ARCHITECTURE.md for the map.
pub mod audit;
pub mod chain;
pub mod check;
pub mod circuit;
pub mod componentize;
pub mod config;
pub mod corpus;
pub mod daemon;
pub mod demo;
pub mod gate;
pub mod health;
pub mod http;
pub mod journal;
pub mod kv;
pub mod lnd;
pub mod metrics;
pub mod mock_lnd;
pub mod mock_node;
pub mod pace;
pub mod record;
pub mod reload;
pub mod replay;
pub mod scaffold;
pub mod verdict;
pub mod wal;
pub mod wasm;
