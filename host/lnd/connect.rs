//! Connecting to LND: TLS pinned to `tls.cert`, the macaroon as gRPC metadata, and
//! the backoff between reconnects.
//!
//! LND serves gRPC over TLS with a self-signed certificate (ECDSA P-256, `CA:TRUE`)
//! that it writes to `tls.cert`. A webpki chain check rejects such a certificate
//! as an end entity (`CaUsedAsEndEntity`), so instead of trusting it as a root we
//! *pin* it: the handshake succeeds only if the server presents exactly one of the
//! certificates in `tls.cert`, byte for byte, and proves it holds the matching key
//! (the handshake signature is verified with ring). There is no "accept anything"
//! mode; a server with another certificate is reported as
//! [`ConnectError::CertificateMismatch`], which usually means LND regenerated its
//! certificate and the copy we were given is stale.
//!
//! Pinning makes the certificate's host names and validity period irrelevant: the
//! operator handed us the exact certificate, so LND reached through an SSH tunnel,
//! a Tor address or an IP that is not among its SANs works the same way.
//!
//! With tonic, the TLS handshake happens in [`connect`], but the macaroon is only
//! checked by LND when the first RPC (the `HtlcInterceptor` call) is made, and a
//! dropped connection is re-established lazily by the next call. Errors from
//! calls are therefore mapped with [`classify_status`], which knows LND's messages.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::lnd::proto::routerrpc::router_client::RouterClient;

/// How long a TCP connect to LND may take before it counts as unreachable.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the TLS handshake may take after the TCP connection is up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Backstop for tonic's own connect timeout (TCP + TLS + HTTP/2 setup); the two
/// timeouts above fire first and give the precise reason.
const CHANNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(11);

/// Interval of HTTP/2 PING frames on an otherwise silent connection. LND's
/// `grpc.client-ping-min-wait` defaults to 5 s and grpc-go sends GOAWAY
/// (`too_many_pings`) to clients that ping more often, so we stay well above it.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a PING may go unanswered before the connection is declared dead: a
/// vanished LND is detected within about interval + timeout = 15 s.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where LND listens for gRPC and the two files needed to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LndEndpoint {
    /// LND's gRPC address as `host:port` (LND's `rpclisten`, default `localhost:10009`).
    pub rpcserver: String,
    /// LND's TLS certificate (`tls.cert`, PEM); the server must present one of the
    /// certificates in it.
    pub tls_cert_path: PathBuf,
    /// A macaroon with `offchain:read offchain:write` (e.g. `admin.macaroon`).
    pub macaroon_path: PathBuf,
}

impl LndEndpoint {
    /// LND's defaults for `network` (`mainnet`, `testnet`, `signet`, `regtest`, ...):
    /// `localhost:10009` and the files from [`default_paths`].
    pub fn with_defaults(network: &str) -> Self {
        let (tls_cert_path, macaroon_path) = default_paths(network);
        LndEndpoint {
            rpcserver: "localhost:10009".to_owned(),
            tls_cert_path,
            macaroon_path,
        }
    }
}

/// LND's default `tls.cert` and `admin.macaroon` locations for `network`:
/// `~/.lnd/tls.cert` and `~/.lnd/data/chain/bitcoin/<network>/admin.macaroon`,
/// with `~` taken from `HOME`.
pub fn default_paths(network: &str) -> (PathBuf, PathBuf) {
    let lnd_dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".lnd");
    let tls_cert = lnd_dir.join("tls.cert");
    let macaroon = lnd_dir
        .join("data")
        .join("chain")
        .join("bitcoin")
        .join(network)
        .join("admin.macaroon");
    (tls_cert, macaroon)
}

/// Adds the gRPC metadata `macaroon` (lowercase hex of the macaroon file) to every call.
#[derive(Clone)]
pub struct MacaroonInterceptor {
    /// The hex-encoded macaroon, ready to be copied into each request.
    macaroon_hex: MetadataValue<Ascii>,
}

impl fmt::Debug for MacaroonInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The macaroon is a bearer credential: never print it.
        f.write_str("MacaroonInterceptor { macaroon_hex: <redacted> }")
    }
}

impl tonic::service::Interceptor for MacaroonInterceptor {
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

/// A `routerrpc.Router` client on a pinned-TLS channel that sends the macaroon
/// with every call.
pub type InterceptorClient = RouterClient<LndTransport>;

/// Why htlcgate could not reach LND's interceptor stream, or why it ended. Every
/// message names what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `tls.cert` is missing, unreadable or holds no PEM certificate.
    #[error(
        "cannot use LND's TLS certificate {}: {reason}; point `tls_cert_path` at LND's tls.cert \
         (default ~/.lnd/tls.cert)",
        path.display()
    )]
    CertFile {
        /// The certificate file that was tried.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The macaroon file is missing, unreadable or empty.
    #[error(
        "cannot use the macaroon {}: {reason}; point `macaroon_path` at a macaroon with \
         offchain:read offchain:write (default ~/.lnd/data/chain/bitcoin/<network>/admin.macaroon)",
        path.display()
    )]
    MacaroonFile {
        /// The macaroon file that was tried.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// `rpcserver` is not a `host:port` address.
    #[error("LND address `{addr}` is not usable: {reason}; set `rpcserver` to host:port, e.g. localhost:10009")]
    InvalidAddress {
        /// The configured address.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Nothing answered at the address: TCP refused or timed out, DNS failed, the
    /// TLS handshake failed for a reason other than the certificate, or the
    /// connection died.
    #[error(
        "LND at {addr} is unreachable: {reason}; check that lnd is running and that `rpcserver` \
         matches its rpclisten (will retry)"
    )]
    Unreachable {
        /// The address that was dialled.
        addr: String,
        /// The transport error.
        reason: String,
    },

    /// The server presented a certificate that is not in `tls.cert`.
    #[error(
        "LND at {addr} presented a TLS certificate that is not the one in {}; if lnd regenerated \
         tls.cert (e.g. after tlsextraip/tlsextradomain changes or expiry), copy the new tls.cert, \
         and make sure `rpcserver` points at lnd and not at another service",
        cert_path.display()
    )]
    CertificateMismatch {
        /// The address that was dialled.
        addr: String,
        /// The pinned certificate file.
        cert_path: PathBuf,
    },

    /// LND refused the macaroon (wrong node, wrong permissions, malformed).
    #[error(
        "LND at {addr} rejected the macaroon ({}): {message}; use a macaroon of this lnd with \
         offchain:read offchain:write (`lncli bakemacaroon offchain:read offchain:write` or \
         admin.macaroon), see README",
        macaroon_path.display()
    )]
    MacaroonRejected {
        /// The address that was dialled.
        addr: String,
        /// The macaroon file that was sent.
        macaroon_path: PathBuf,
        /// LND's error message.
        message: String,
    },

    /// LND already has an interceptor: only one stream is allowed.
    #[error(
        "another client already holds LND's interceptor stream at {addr} (only one is allowed); \
         stop it (another htlcgate, circuitbreaker, lndg, ...) or wait for it to disconnect (will retry)"
    )]
    InterceptorAlreadyExists {
        /// The address of the LND that refused the stream.
        addr: String,
    },

    /// LND ended an open interceptor stream with an error status (for example a
    /// response that broke one of its rules: "forward does not exist", "missing
    /// preimage", ...) or closed it.
    #[error(
        "LND ended the interceptor stream: {message} (will reconnect; held HTLCs are replayed)"
    )]
    StreamEnded {
        /// LND's status message, or a description of how the stream ended.
        message: String,
    },

    /// Any other gRPC error.
    #[error("LND interceptor call failed: {0}")]
    Rpc(tonic::Status),
}

impl ConnectError {
    /// Whether retrying with the same configuration can succeed (LND starting up,
    /// another interceptor going away, a stream that ended). Files, addresses,
    /// certificates and macaroons that are wrong stay wrong until the operator acts,
    /// although a daemon may still choose to retry them slowly.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnectError::Unreachable { .. }
                | ConnectError::InterceptorAlreadyExists { .. }
                | ConnectError::StreamEnded { .. }
                | ConnectError::Rpc(_)
        )
    }
}

/// Opens a pinned-TLS gRPC channel to LND and returns a `routerrpc.Router` client
/// that sends the macaroon with every call.
///
/// The TCP connection and the TLS handshake happen here (so an unreachable LND or
/// a wrong certificate are reported at once); the macaroon is checked by LND on
/// the first call, whose error should go through [`classify_status`].
pub async fn connect(ep: &LndEndpoint) -> Result<InterceptorClient, ConnectError> {
    Ok(RouterClient::new(connect_transport(ep).await?)
        .max_decoding_message_size(crate::lnd::transport::MAX_LND_MESSAGE))
}

/// The pinned-TLS channel to LND that sends the macaroon with every call: the
/// transport of every LND client htlcgate uses (router, lightning, chain notifier).
pub type LndTransport = InterceptedService<Channel, MacaroonInterceptor>;

/// Opens the transport behind [`connect`], for any LND client (same timeouts,
/// keepalive, pinning and errors).
pub async fn connect_transport(ep: &LndEndpoint) -> Result<LndTransport, ConnectError> {
    let pinned = load_pinned_certs(&ep.tls_cert_path)?;
    let interceptor = load_macaroon(&ep.macaroon_path)?;
    let (host, port) = split_host_port(&ep.rpcserver)?;

    let server_name = server_name_for(&host).map_err(|reason| ConnectError::InvalidAddress {
        addr: ep.rpcserver.clone(),
        reason,
    })?;
    let tls = TlsConnector::from(Arc::new(pinned_client_config(pinned)));

    // The URI is only used for the `:authority` header; the connector below dials
    // host:port itself.
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

    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        async move { dial(&host, port, tls, server_name).await }
    });

    tracing::debug!(addr = %ep.rpcserver, cert = %ep.tls_cert_path.display(), "connecting to LND");
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| classify_transport_error(&e, ep))?;
    tracing::info!(addr = %ep.rpcserver, "TLS connection to LND established (certificate pinned)");

    Ok(InterceptedService::new(channel, interceptor))
}

/// Maps an error status from a call on LND's router (usually the
/// `HtlcInterceptor` call or its stream) to a [`ConnectError`] using LND's
/// messages: macaroon failures, "interceptor already exists", transport and TLS
/// failures (including a certificate that is not the pinned one). Status codes
/// `Unknown` / `InvalidArgument` with any other message are LND ending the stream
/// ([`ConnectError::StreamEnded`]); everything else is [`ConnectError::Rpc`].
pub fn classify_status(status: &tonic::Status, ep: &LndEndpoint) -> ConnectError {
    // Our own connector's errors travel inside the status when a lazy reconnect
    // failed: they say precisely what went wrong.
    if let Some(err) = find_in_chain::<DialError>(status) {
        return err.to_connect_error(ep);
    }
    if chain_has_pin_mismatch(status) {
        return cert_mismatch(ep);
    }

    let message = status.message();
    let lower = message.to_ascii_lowercase();
    if lower.contains("interceptor already exists") {
        return ConnectError::InterceptorAlreadyExists {
            addr: ep.rpcserver.clone(),
        };
    }
    if is_macaroon_message(&lower) {
        return ConnectError::MacaroonRejected {
            addr: ep.rpcserver.clone(),
            macaroon_path: ep.macaroon_path.clone(),
            message: message.to_owned(),
        };
    }
    if lower.contains("certificate") && !lower.contains("macaroon") {
        return cert_mismatch(ep);
    }
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => ConnectError::Unreachable {
            addr: ep.rpcserver.clone(),
            reason: describe_status(status),
        },
        tonic::Code::Unknown | tonic::Code::InvalidArgument
            if lower.contains("transport error")
                || lower.contains("h2 protocol error")
                || lower.contains("connection reset")
                || lower.contains("broken pipe") =>
        {
            ConnectError::Unreachable {
                addr: ep.rpcserver.clone(),
                reason: describe_status(status),
            }
        }
        tonic::Code::Unknown | tonic::Code::InvalidArgument => ConnectError::StreamEnded {
            message: message.to_owned(),
        },
        _ => ConnectError::Rpc(status.clone()),
    }
}

/// LND's macaroon failures, as they appear in the status message: from its
/// macaroon service ("expected 1 macaroon, got 0", "cannot get macaroon: root key
/// with id 0 doesn't exist", "verification failed: signature mismatch after caveat
/// verification", "permission denied", "invalid macaroon ..."), from hex decoding
/// ("encoding/hex: ...") and from parsing ("packet too short").
fn is_macaroon_message(lower: &str) -> bool {
    const NEEDLES: [&str; 7] = [
        "macaroon",
        "verification failed",
        "permission denied",
        "encoding/hex",
        "packet too short",
        "caveat",
        "root key",
    ];
    NEEDLES.iter().any(|needle| lower.contains(needle))
}

/// A status message with its source chain, for "unreachable" reasons.
fn describe_status(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(err) = source {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = err.source();
    }
    text
}

/// Maps the error of [`Endpoint::connect_with_connector`].
fn classify_transport_error(err: &tonic::transport::Error, ep: &LndEndpoint) -> ConnectError {
    if let Some(dial) = find_in_chain::<DialError>(err) {
        return dial.to_connect_error(ep);
    }
    if chain_has_pin_mismatch(err) {
        return cert_mismatch(ep);
    }
    ConnectError::Unreachable {
        addr: ep.rpcserver.clone(),
        reason: error_chain(err),
    }
}

fn cert_mismatch(ep: &LndEndpoint) -> ConnectError {
    ConnectError::CertificateMismatch {
        addr: ep.rpcserver.clone(),
        cert_path: ep.tls_cert_path.clone(),
    }
}

/// `err` and its sources joined with ": ", without repeats.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// The first error of type `T` in `err`'s source chain (including `err`).
fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        // io::Error hides its payload from `source()` in some versions; look inside.
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = find_in_chain::<T>(inner) {
                    return Some(found);
                }
            }
        }
        current = e.source();
    }
    None
}

/// Whether the chain holds the rustls error our verifier raises for a certificate
/// that is not pinned.
fn chain_has_pin_mismatch(err: &(dyn StdError + 'static)) -> bool {
    find_in_chain::<rustls::Error>(err).is_some_and(is_pin_mismatch)
}

fn is_pin_mismatch(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<NotPinned>().is_some()
        }
        _ => false,
    }
}

/// What went wrong in our connector (TCP + TLS), carried through tonic's errors.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// DNS or TCP connect failed.
    #[error("TCP connect to {addr} failed: {source}")]
    Tcp {
        /// host:port dialled.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// A step took too long.
    #[error("{step} to {addr} timed out after {after:?}")]
    Timeout {
        /// host:port dialled.
        addr: String,
        /// "TCP connect" or "TLS handshake".
        step: &'static str,
        /// The limit that was hit.
        after: Duration,
    },
    /// The server's certificate is not one of the pinned ones.
    #[error("{addr} presented a certificate that is not pinned")]
    NotPinned {
        /// host:port dialled.
        addr: String,
    },
    /// The TLS handshake failed otherwise (not TLS, bad signature, protocol error).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// host:port dialled.
        addr: String,
        /// The rustls error, wrapped by tokio-rustls.
        source: io::Error,
    },
}

impl DialError {
    fn to_connect_error(&self, ep: &LndEndpoint) -> ConnectError {
        match self {
            DialError::NotPinned { .. } => cert_mismatch(ep),
            other => ConnectError::Unreachable {
                addr: ep.rpcserver.clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// TCP connect + TLS handshake to `host:port`, with the pinned verifier.
async fn dial(
    host: &str,
    port: u16,
    tls: TlsConnector,
    server_name: ServerName<'static>,
) -> Result<TokioIo<TlsStream<TcpStream>>, DialError> {
    let addr = format!("{host}:{port}");
    let tcp =
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
            Err(_) => {
                return Err(DialError::Timeout {
                    addr,
                    step: "TCP connect",
                    after: TCP_CONNECT_TIMEOUT,
                })
            }
            Ok(Err(source)) => return Err(DialError::Tcp { addr, source }),
            Ok(Ok(tcp)) => tcp,
        };
    // Answers are small and latency matters: do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);

    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.connect(server_name, tcp)).await {
        Err(_) => Err(DialError::Timeout {
            addr,
            step: "TLS handshake",
            after: TLS_HANDSHAKE_TIMEOUT,
        }),
        Ok(Err(source)) => {
            let pinned_mismatch = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(is_pin_mismatch);
            if pinned_mismatch {
                tracing::warn!(%addr, "LND presented a TLS certificate that is not the pinned tls.cert");
                Err(DialError::NotPinned { addr })
            } else {
                Err(DialError::Tls { addr, source })
            }
        }
        Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
    }
}

/// Splits `host:port` (host may be a name, an IPv4 address or a bracketed IPv6
/// address) into the host without brackets and the port.
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
        .map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(invalid("port 0 is not a port LND listens on"));
    }
    let (host, bracketed) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => (inner, true),
        None => (host, false),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    if host.contains(':') && (!bracketed || host.parse::<IpAddr>().is_err()) {
        return Err(invalid(
            "an IPv6 address must be written in brackets, e.g. [::1]:10009",
        ));
    }
    Ok((host.to_owned(), port))
}

/// The SNI / server name for `host`: an IP server name for IP literals (no SNI
/// is sent then), a DNS name otherwise. With pinning it is not used for
/// verification.
fn server_name_for(host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` is not a valid host name: {e}"))
}

/// Reads every certificate in the PEM file `path`.
fn load_pinned_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let cert_err = |reason: String| ConnectError::CertFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| cert_err(e.to_string()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        certs.push(cert.map_err(|e| cert_err(format!("invalid PEM: {e}")))?);
    }
    if certs.is_empty() {
        return Err(cert_err(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_owned(),
        ));
    }
    Ok(certs)
}

/// Reads the macaroon file and prepares its metadata value.
fn load_macaroon(path: &Path) -> Result<MacaroonInterceptor, ConnectError> {
    let mac_err = |reason: String| ConnectError::MacaroonFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| mac_err(e.to_string()))?;
    if bytes.is_empty() {
        return Err(mac_err("the file is empty".to_owned()));
    }
    let macaroon_hex = MetadataValue::try_from(hex::encode(&bytes))
        .map_err(|e| mac_err(format!("cannot be sent as metadata: {e}")))?;
    Ok(MacaroonInterceptor { macaroon_hex })
}

/// A rustls client configuration (ring, TLS 1.2 + 1.3, ALPN `h2`) that trusts
/// exactly the `pinned` certificates.
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

/// Marker error: the server's certificate is not one of the pinned certificates.
#[derive(Debug)]
struct NotPinned;

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server certificate is not the pinned LND tls.cert")
    }
}

impl StdError for NotPinned {}

/// Accepts a server only if its end-entity certificate is byte-for-byte one of
/// the pinned certificates, and checks the handshake signatures with that
/// certificate's key, so a server that merely copied the public certificate
/// cannot pass.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    /// The certificates from `tls.cert` (DER).
    pinned: Vec<CertificateDer<'static>>,
    /// The provider's signature algorithms, used for the handshake signatures.
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// A verifier that trusts exactly `pinned`, checking signatures with
    /// `provider`'s algorithms.
    pub fn new(pinned: Vec<CertificateDer<'static>>, provider: &CryptoProvider) -> Self {
        PinnedCertVerifier {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Exact DER equality with a certificate the operator gave us is the whole
        // trust decision: names, expiry and CA flags do not matter for a pin, and
        // the signature checks below prove the server holds the private key.
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NotPinned)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Exponential backoff with "equal jitter" between reconnect attempts.
///
/// Attempt `n` (from 0) has a ceiling of `min(30 s, 1 s * 2^n)`; the delay is half
/// the ceiling plus a random amount up to the other half, and never below 1 s. So
/// the delays are 1 s, 1-2 s, 2-4 s, 4-8 s, 8-16 s, then 15-30 s for ever: up to
/// the cap each delay is at least the previous one, and the random half keeps
/// many clients that lost the same LND from reconnecting in lockstep. Call
/// [`Backoff::reset`] once a stream has been up for a while.
#[derive(Debug)]
pub struct Backoff {
    /// Attempts since the last reset.
    attempt: u32,
    /// Smallest delay.
    min: Duration,
    /// Largest delay.
    max: Duration,
    /// Source of the jitter.
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// A backoff from 1 s to 30 s.
    pub fn new() -> Self {
        Backoff {
            attempt: 0,
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
            rng: fastrand::Rng::new(),
        }
    }

    /// The delay before the next attempt; each call counts one attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.min.saturating_mul(1u32 << exp).min(self.max);
        let half = ceiling / 2;
        let jitter_ms = self.rng.u64(0..=half.as_millis() as u64);
        (half + Duration::from_millis(jitter_ms)).clamp(self.min, self.max)
    }

    /// Starts over from the smallest delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lnd_like_cert() -> (CertificateDer<'static>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), key)
    }

    fn verifier_for(pinned: Vec<CertificateDer<'static>>) -> PinnedCertVerifier {
        PinnedCertVerifier::new(pinned, &rustls::crypto::ring::default_provider())
    }

    fn verify(
        v: &PinnedCertVerifier,
        cert: &CertificateDer<'_>,
    ) -> Result<ServerCertVerified, rustls::Error> {
        v.verify_server_cert(
            cert,
            &[],
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    fn endpoint() -> LndEndpoint {
        LndEndpoint {
            rpcserver: "127.0.0.1:10009".to_owned(),
            tls_cert_path: PathBuf::from("/lnd/tls.cert"),
            macaroon_path: PathBuf::from("/lnd/admin.macaroon"),
        }
    }

    #[test]
    fn pinned_certificate_is_accepted() {
        let (cert, _) = lnd_like_cert();
        let (other, _) = lnd_like_cert();
        let v = verifier_for(vec![other, cert.clone()]);
        assert!(verify(&v, &cert).is_ok());
    }

    #[test]
    fn another_self_signed_certificate_is_rejected_as_not_pinned() {
        let (cert, _) = lnd_like_cert();
        let (other, _) = lnd_like_cert();
        let v = verifier_for(vec![cert]);
        let err = verify(&v, &other).unwrap_err();
        assert!(is_pin_mismatch(&err), "{err:?}");
    }

    /// A server certificate resolver that always presents one certified key.
    #[derive(Debug)]
    struct FixedCert(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for FixedCert {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// Runs a TLS handshake over an in-memory pipe between our pinned client
    /// configuration and a server presenting `cert` but signing with `key`.
    async fn handshake(
        pinned: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key: &rcgen::KeyPair,
        tls13: bool,
    ) -> Result<(), io::Error> {
        let pkcs8 = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signing_key = rustls::crypto::ring::sign::any_ecdsa_type(&pkcs8).unwrap();
        // `CertifiedKey::new` does not check that the key matches the certificate:
        // exactly the impostor we want to simulate.
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signing_key));
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS12]
        };
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
        server.alpn_protocols = vec![b"h2".to_vec()];
        let client = TlsConnector::from(Arc::new(pinned_client_config(vec![pinned])));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let (client_result, _server_result) =
            tokio::join!(client.connect(name, client_io), acceptor.accept(server_io));
        let stream = client_result?;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Ok(())
    }

    #[tokio::test]
    async fn handshake_with_the_pinned_certificate_and_its_key_succeeds() {
        let (cert, key) = lnd_like_cert();
        for tls13 in [true, false] {
            handshake(cert.clone(), cert.clone(), &key, tls13)
                .await
                .unwrap_or_else(|e| panic!("tls13={tls13}: {e}"));
        }
    }

    #[tokio::test]
    async fn handshake_signature_must_come_from_the_pinned_key() {
        let (cert, _key) = lnd_like_cert();
        let (_, impostor_key) = lnd_like_cert();
        for tls13 in [true, false] {
            let err = handshake(cert.clone(), cert.clone(), &impostor_key, tls13)
                .await
                .expect_err("a server without the pinned key must fail");
            let tls = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .unwrap_or_else(|| panic!("tls13={tls13}: not a rustls error: {err}"));
            assert!(
                !is_pin_mismatch(tls),
                "the certificate itself is pinned: {tls:?}"
            );
        }
    }

    #[tokio::test]
    async fn handshake_with_another_certificate_fails_as_not_pinned() {
        let (cert, _) = lnd_like_cert();
        let (other, other_key) = lnd_like_cert();
        let err = handshake(cert, other, &other_key, true).await.unwrap_err();
        let tls = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(tls.is_some_and(is_pin_mismatch), "{err:?}");
    }

    #[test]
    fn cert_file_without_a_certificate_is_a_cert_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.cert");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(
            load_pinned_certs(&path),
            Err(ConnectError::CertFile { .. })
        ));
        let missing = dir.path().join("missing.cert");
        let err = load_pinned_certs(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.cert"), "{err}");
    }

    #[test]
    fn empty_macaroon_file_is_a_macaroon_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.macaroon");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            load_macaroon(&path),
            Err(ConnectError::MacaroonFile { .. })
        ));
    }

    #[test]
    fn macaroon_is_sent_as_lowercase_hex() {
        use tonic::service::Interceptor;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.macaroon");
        std::fs::write(&path, [0xAB, 0x01, 0xFF]).unwrap();
        let mut interceptor = load_macaroon(&path).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("macaroon").unwrap(), "ab01ff");
    }

    #[test]
    fn macaroon_failures_are_classified_as_macaroon_rejected() {
        let ep = endpoint();
        for message in [
            "verification failed: signature mismatch after caveat verification",
            "cannot get macaroon: root key with id 0 doesn't exist",
            "permission denied",
            "expected 1 macaroon, got 0",
            "invalid macaroon",
            "encoding/hex: invalid byte: U+0067 'g'",
        ] {
            let err = classify_status(&tonic::Status::unknown(message), &ep);
            match err {
                ConnectError::MacaroonRejected {
                    message: m,
                    macaroon_path,
                    ..
                } => {
                    assert_eq!(m, message);
                    assert_eq!(macaroon_path, ep.macaroon_path);
                }
                other => panic!("{message}: {other:?}"),
            }
        }
    }

    #[test]
    fn second_interceptor_is_classified_as_interceptor_already_exists() {
        let err = classify_status(
            &tonic::Status::unknown("interceptor already exists"),
            &endpoint(),
        );
        assert!(
            matches!(err, ConnectError::InterceptorAlreadyExists { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("only one is allowed"));
    }

    #[test]
    fn rule_violations_are_classified_as_stream_ended() {
        for status in [
            tonic::Status::unknown("forward does not exist: (Chan ID=1:2:3, HTLC ID=4)"),
            tonic::Status::invalid_argument("unsupported failure code: FEE_INSUFFICIENT"),
            tonic::Status::unknown("cannot resume held htlc in the on-chain flow"),
        ] {
            let err = classify_status(&status, &endpoint());
            assert!(
                matches!(err, ConnectError::StreamEnded { ref message } if message == status.message()),
                "{err:?}"
            );
        }
    }

    #[test]
    fn transport_failures_are_classified_as_unreachable() {
        let err = classify_status(
            &tonic::Status::unavailable("error trying to connect: tcp connect error"),
            &endpoint(),
        );
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
        let err = classify_status(&tonic::Status::unknown("transport error"), &endpoint());
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    }

    #[test]
    fn a_dial_error_inside_a_status_keeps_its_meaning() {
        let ep = endpoint();
        let status = tonic::Status::from_error(Box::new(DialError::NotPinned {
            addr: ep.rpcserver.clone(),
        }));
        assert!(matches!(
            classify_status(&status, &ep),
            ConnectError::CertificateMismatch { .. }
        ));
        let status = tonic::Status::from_error(Box::new(DialError::Tcp {
            addr: ep.rpcserver.clone(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        }));
        assert!(matches!(
            classify_status(&status, &ep),
            ConnectError::Unreachable { .. }
        ));
    }

    #[test]
    fn other_codes_are_kept_as_rpc_errors() {
        let err = classify_status(
            &tonic::Status::unimplemented("unknown service routerrpc.Router"),
            &endpoint(),
        );
        assert!(
            matches!(err, ConnectError::Rpc(ref s) if s.code() == tonic::Code::Unimplemented),
            "{err:?}"
        );
    }

    #[test]
    fn addresses_are_split_into_host_and_port() {
        assert_eq!(
            split_host_port("localhost:10009").unwrap(),
            ("localhost".to_owned(), 10009)
        );
        assert_eq!(
            split_host_port("[::1]:10009").unwrap(),
            ("::1".to_owned(), 10009)
        );
        assert_eq!(
            split_host_port("10.0.0.2:1").unwrap(),
            ("10.0.0.2".to_owned(), 1)
        );
        for bad in ["localhost", ":10009", "host:port", "::1:10009", "host:0"] {
            assert!(
                matches!(
                    split_host_port(bad),
                    Err(ConnectError::InvalidAddress { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            server_name_for("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name_for("localhost"),
            Ok(ServerName::DnsName(_))
        ));
    }

    #[test]
    fn default_paths_follow_lnd_layout() {
        let (cert, mac) = default_paths("testnet");
        assert!(cert.ends_with(".lnd/tls.cert"), "{}", cert.display());
        assert!(
            mac.ends_with(".lnd/data/chain/bitcoin/testnet/admin.macaroon"),
            "{}",
            mac.display()
        );
    }

    #[test]
    fn backoff_delays_stay_between_one_and_thirty_seconds() {
        for _ in 0..50 {
            let mut backoff = Backoff::new();
            for _ in 0..40 {
                let d = backoff.next_delay();
                assert!(
                    d >= Duration::from_secs(1) && d <= Duration::from_secs(30),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn backoff_delays_grow_until_the_cap_and_reset_starts_over() {
        for _ in 0..50 {
            let mut backoff = Backoff::new();
            let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
            assert_eq!(delays[0], Duration::from_secs(1));
            // Until the cap each range starts where the previous one ends.
            for pair in delays[..5].windows(2) {
                assert!(pair[1] >= pair[0], "{delays:?}");
            }
            assert!(delays[5] >= Duration::from_secs(15), "{delays:?}");
            for _ in 0..20 {
                assert!(backoff.next_delay() >= Duration::from_secs(15));
            }
            backoff.reset();
            assert_eq!(backoff.next_delay(), Duration::from_secs(1));
        }
    }
}
