//! The generated LND protobuf and gRPC code (from `proto/`, by `build.rs`).
#![allow(missing_docs, clippy::all)]

/// LND's `lnrpc` package (only `Failure.FailureCode`).
pub mod lnrpc {
    tonic::include_proto!("lnrpc");
}

/// LND's `routerrpc` package (the HTLC interceptor).
pub mod routerrpc {
    tonic::include_proto!("routerrpc");
}
