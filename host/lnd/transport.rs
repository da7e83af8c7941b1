//! A pinned-TLS gRPC transport to LND that sends the macaroon with every call, for
//! the clients of the node context: `lnrpc.Lightning`, `routerrpc.Router` (HTLC
//! events) and `chainrpc.ChainNotifier`.
//!
//! It follows [`crate::lnd::connect::connect`] exactly (same timeouts, keepalive,
//! the same [`PinnedCertVerifier`] as the whole trust decision, errors as
//! [`ConnectError`]) but hands out the transport instead of a `RouterClient`, which
//! cannot be turned into another service's client. When `connect.rs` exposes such a
//! transport itself, this file becomes a re-export (see docs/NODE-CONTEXT.md).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::CertificateError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::lnd::connect::{ConnectError, LndEndpoint, PinnedCertVerifier};
use crate::lnd::proto::chainrpc::chain_notifier_client::ChainNotifierClient;
use crate::lnd::proto::lnrpc::lightning_client::LightningClient;
use crate::lnd::proto::routerrpc::router_client::RouterClient;

/// How long a TCP connect to LND may take (as in `connect.rs`).
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take after the TCP connection is up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Backstop for tonic's own connect timeout.
const CHANNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(11);
/// HTTP/2 PING interval: above LND's `grpc.client-ping-min-wait` (5 s).
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a PING may go unanswered before the connection counts as dead.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds the gRPC metadata `macaroon` (lowercase hex of the macaroon file) to every call.
#[derive(Clone)]
pub struct MacaroonHeader {
    /// The hex-encoded macaroon.
    macaroon_hex: MetadataValue<Ascii>,
}

impl std::fmt::Debug for MacaroonHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A bearer credential: never printed.
        f.write_str("MacaroonHeader { macaroon_hex: <redacted> }")
    }
}

impl tonic::service::Interceptor for MacaroonHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("macaroon", self.macaroon_hex.clone());
        Ok(request)
    }
}

/// A gRPC channel to LND (pinned TLS) that sends the macaroon with every call.
pub type Transport = InterceptedService<Channel, MacaroonHeader>;

/// Opens a pinned-TLS gRPC channel to LND; the TCP connection and the TLS
/// handshake happen here, the macaroon is checked by LND on each call.
pub async fn connect_transport(ep: &LndEndpoint) -> Result<Transport, ConnectError> {
    let pinned = load_pinned_certs(ep)?;
    let macaroon = load_macaroon(ep)?;
    let (host, port) = split_host_port(&ep.rpcserver)?;
    let server_name = server_name_for(&host).map_err(|reason| ConnectError::InvalidAddress {
        addr: ep.rpcserver.clone(),
        reason,
    })?;
    let tls = TlsConnector::from(Arc::new(pinned_client_config(pinned)));
    let endpoint = Endpoint::from_shared(format!("http://{}", ep.rpcserver))
        .map_err(|e| ConnectError::InvalidAddress {
            addr: ep.rpcserver.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(CHANNEL_CONNECT_TIMEOUT)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
        .tcp_nodelay(true);
    let addr = ep.rpcserver.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        let addr = addr.clone();
        async move { dial(&addr, &host, port, tls, server_name).await }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| transport_error(&e, ep))?;
    Ok(InterceptedService::new(channel, macaroon))
}

/// A `lnrpc.Lightning` client on `transport`.
pub fn lightning(transport: Transport) -> LightningClient<Transport> {
    LightningClient::new(transport)
}

/// A `routerrpc.Router` client on `transport`.
pub fn router(transport: Transport) -> RouterClient<Transport> {
    RouterClient::new(transport)
}

/// A `chainrpc.ChainNotifier` client on `transport`.
pub fn chain_notifier(transport: Transport) -> ChainNotifierClient<Transport> {
    ChainNotifierClient::new(transport)
}

/// Why our connector failed; carried through tonic's error chain.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// The server's certificate is not one of the pinned ones.
    #[error("{addr} presented a certificate that is not the pinned tls.cert")]
    NotPinned {
        /// host:port dialled.
        addr: String,
    },
    /// TCP, TLS or a timeout.
    #[error("{0}")]
    Other(String),
}

/// TCP connect + TLS handshake with the pinned verifier.
async fn dial(
    addr: &str,
    host: &str,
    port: u16,
    tls: TlsConnector,
    server_name: ServerName<'static>,
) -> Result<TokioIo<TlsStream<TcpStream>>, DialError> {
    let tcp =
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
            Err(_) => {
                return Err(DialError::Other(format!(
                    "TCP connect to {addr} timed out after {TCP_CONNECT_TIMEOUT:?}"
                )))
            }
            Ok(Err(e)) => {
                return Err(DialError::Other(format!(
                    "TCP connect to {addr} failed: {e}"
                )))
            }
            Ok(Ok(tcp)) => tcp,
        };
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.connect(server_name, tcp)).await {
        Err(_) => Err(DialError::Other(format!(
            "TLS handshake with {addr} timed out after {TLS_HANDSHAKE_TIMEOUT:?}"
        ))),
        Ok(Err(e)) if is_not_pinned(&e) => Err(DialError::NotPinned {
            addr: addr.to_owned(),
        }),
        Ok(Err(e)) => Err(DialError::Other(format!(
            "TLS handshake with {addr} failed: {e}"
        ))),
        Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
    }
}

/// Whether a TLS error is [`PinnedCertVerifier`] refusing the certificate: the only
/// `CertificateError::Other` it raises.
fn is_not_pinned(err: &io::Error) -> bool {
    matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(
            _
        )))
    )
}

/// Maps the error of [`Endpoint::connect_with_connector`].
fn transport_error(err: &tonic::transport::Error, ep: &LndEndpoint) -> ConnectError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut text = err.to_string();
    while let Some(e) = source {
        if let Some(DialError::NotPinned { .. }) = e.downcast_ref::<DialError>() {
            return ConnectError::CertificateMismatch {
                addr: ep.rpcserver.clone(),
                cert_path: ep.tls_cert_path.clone(),
            };
        }
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    ConnectError::Unreachable {
        addr: ep.rpcserver.clone(),
        reason: text,
    }
}

/// `host:port` (IPv6 in brackets) split into host and port.
fn split_host_port(addr: &str) -> Result<(String, u16), ConnectError> {
    let invalid = |reason: &str| ConnectError::InvalidAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid("missing `:port`"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    Ok((host.to_owned(), port))
}

/// The TLS server name for `host` (not used for verification: the pin decides).
fn server_name_for(host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` is not a valid host name: {e}"))
}

/// Every certificate in `tls.cert`.
fn load_pinned_certs(ep: &LndEndpoint) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let path = &ep.tls_cert_path;
    let cert_err = |reason: String| ConnectError::CertFile {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| cert_err(e.to_string()))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| cert_err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned(),
        ));
    }
    Ok(certs)
}

/// The macaroon file as a metadata value.
fn load_macaroon(ep: &LndEndpoint) -> Result<MacaroonHeader, ConnectError> {
    let path = &ep.macaroon_path;
    let mac_err = |reason: String| ConnectError::MacaroonFile {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| mac_err(e.to_string()))?;
    if bytes.is_empty() {
        return Err(mac_err("the file is empty".to_owned()));
    }
    let macaroon_hex = MetadataValue::try_from(hex::encode(&bytes))
        .map_err(|e| mac_err(format!("cannot be sent as metadata: {e}")))?;
    Ok(MacaroonHeader { macaroon_hex })
}

/// rustls client configuration (ring, TLS 1.2 + 1.3, ALPN h2) trusting exactly `pinned`.
fn pinned_client_config(pinned: Vec<CertificateDer<'static>>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertVerifier::new(pinned, &provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn endpoint(dir: &std::path::Path) -> LndEndpoint {
        LndEndpoint {
            rpcserver: "127.0.0.1:1".to_owned(),
            tls_cert_path: dir.join("tls.cert"),
            macaroon_path: dir.join("admin.macaroon"),
        }
    }

    #[test]
    fn addresses_split_like_connect_rs() {
        assert_eq!(
            split_host_port("localhost:10009").unwrap(),
            ("localhost".to_owned(), 10009)
        );
        assert_eq!(
            split_host_port("[::1]:10009").unwrap(),
            ("::1".to_owned(), 10009)
        );
        for bad in ["localhost", ":10009", "host:port", "host:0"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn missing_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_transport(&endpoint(dir.path())).await.unwrap_err();
        assert!(matches!(err, ConnectError::CertFile { .. }), "{err}");
        assert!(err.to_string().contains("tls.cert"), "{err}");
        let ep = LndEndpoint {
            macaroon_path: PathBuf::from("/nonexistent/admin.macaroon"),
            ..endpoint(dir.path())
        };
        let err = load_macaroon(&ep).unwrap_err();
        assert!(err.to_string().contains("admin.macaroon"), "{err}");
    }
}
