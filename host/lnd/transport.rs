//! The LND clients of the node context (`lnrpc.Lightning`, `routerrpc.Router` for
//! HTLC events, `chainrpc.ChainNotifier`) over the same pinned-TLS, macaroon-sending
//! transport as the interceptor ([`crate::lnd::connect::connect_transport`]).

pub use crate::lnd::connect::{connect_transport, LndTransport as Transport};
use crate::lnd::proto::chainrpc::chain_notifier_client::ChainNotifierClient;
use crate::lnd::proto::lnrpc::lightning_client::LightningClient;
use crate::lnd::proto::routerrpc::router_client::RouterClient;

/// The largest message accepted from LND: lncli's limit (200 MB). gRPC's default
/// of 4 MiB is below a large node's ListChannels answer, which would then fail on
/// every retry and leave the channel cache empty for good.
pub const MAX_LND_MESSAGE: usize = 200 * 1024 * 1024;

/// A `lnrpc.Lightning` client (GetInfo, ListChannels, SubscribeChannelEvents).
pub fn lightning(transport: Transport) -> LightningClient<Transport> {
    LightningClient::new(transport).max_decoding_message_size(MAX_LND_MESSAGE)
}

/// A `routerrpc.Router` client (SubscribeHtlcEvents).
pub fn router(transport: Transport) -> RouterClient<Transport> {
    RouterClient::new(transport).max_decoding_message_size(MAX_LND_MESSAGE)
}

/// A `chainrpc.ChainNotifier` client (RegisterBlockEpochNtfn).
pub fn chain_notifier(transport: Transport) -> ChainNotifierClient<Transport> {
    ChainNotifierClient::new(transport).max_decoding_message_size(MAX_LND_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::connect::{ConnectError, LndEndpoint};

    #[tokio::test]
    async fn missing_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let ep = LndEndpoint {
            rpcserver: "127.0.0.1:1".to_owned(),
            tls_cert_path: dir.path().join("tls.cert"),
            macaroon_path: dir.path().join("admin.macaroon"),
        };
        let err = connect_transport(&ep).await.unwrap_err();
        assert!(matches!(err, ConnectError::CertFile { .. }), "{err}");
        assert!(err.to_string().contains("tls.cert"), "{err}");
    }
}
