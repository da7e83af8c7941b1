//! Everything that speaks to LND: the generated protobuf code, the TLS + macaroon
//! connection, the interceptor stream loop, and the node context (HTLC outcomes,
//! channel cache, block height; see docs/NODE-CONTEXT.md).
pub mod channels;
pub mod connect;
pub mod events;
pub mod feature;
pub mod height;
pub mod node;
pub mod outcome;
pub mod proto;
pub mod stream;
pub mod transport;
