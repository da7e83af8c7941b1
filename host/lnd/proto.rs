//! The generated LND protobuf and gRPC code (from `proto/`, by `build.rs`).
#![allow(missing_docs, clippy::all)]

/// LND's `lnrpc` package (`Failure.FailureCode`; `Lightning`: GetInfo,
/// ListChannels, SubscribeChannelEvents).
pub mod lnrpc {
    tonic::include_proto!("lnrpc");
}

/// LND's `routerrpc` package (the HTLC interceptor and HTLC events).
pub mod routerrpc {
    tonic::include_proto!("routerrpc");
}

/// LND's `chainrpc` package (`ChainNotifier.RegisterBlockEpochNtfn`).
pub mod chainrpc {
    tonic::include_proto!("chainrpc");
}
