//! Everything that speaks to LND: the generated protobuf code, the TLS + macaroon
//! connection, and the interceptor stream loop.
pub mod connect;
pub mod proto;
pub mod stream;
