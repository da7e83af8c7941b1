//! The observability listener (`--metrics.listen ADDR` or `[metrics] listen`, off by
//! default): `GET /metrics` (Prometheus, OpenMetrics text) and `GET /healthz` (200
//! `ok` only while the chain is loaded and LND's stream is up; 503 with the reason
//! otherwise), on one plain-HTTP/1.1 port.
//!
//! Suggested address: `127.0.0.1:10088`. LND uses 9735 (p2p), 10009 (gRPC), 8080
//! (REST) and 8989 (its own Prometheus listener); Prometheus' exporter range
//! 9100-9999 is fully allocated, so a port there would clash with some exporter.
//! Bind to loopback unless a scraper on another host needs it: the metrics name
//! channels and plugins.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::health::Health;
use crate::metrics::{Metrics, CONTENT_TYPE};

/// The address the docs suggest for `--metrics.listen`.
pub const SUGGESTED_LISTEN: &str = "127.0.0.1:10088";

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding failed (port in use, not allowed, not an address).
    #[error("cannot listen on {addr} for /metrics and /healthz (--metrics.listen or [metrics] listen): {reason}; {fix}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        reason: String,
        /// What to do.
        fix: &'static str,
    },
}

/// Binds the listener (before anything else starts, so a port in use is reported
/// at once).
pub async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AddrInUse => "another program listens there (LND uses 9735, 10009, 8080 and 8989); pick a free port, e.g. 127.0.0.1:10088",
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; use a port above 1024, e.g. 127.0.0.1:10088",
            std::io::ErrorKind::AddrNotAvailable => "that IP address is not on this machine; use 127.0.0.1 or one of its addresses",
            _ => "give HOST:PORT, e.g. 127.0.0.1:10088",
        };
        ListenError::Bind {
            addr: addr.to_owned(),
            reason: e.to_string(),
            fix,
        }
    })
}

/// What one client may take of the listener: a client that opens connections
/// and sends nothing, or never reads, must not hold tasks and file descriptors
/// the daemon needs for LND's stream, the journal and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time to send a request's headers (the first, and each on a kept-alive
    /// connection).
    pub header_timeout: std::time::Duration,
    /// Longest a connection is kept, kept-alive or not (a scraper reconnects).
    pub lifetime: std::time::Duration,
}

/// The listener's limits: a scrape takes milliseconds, and Prometheus keeps one
/// connection per target.
pub const LIMITS: Limits = Limits {
    max_connections: 64,
    header_timeout: std::time::Duration::from_secs(10),
    lifetime: std::time::Duration::from_secs(60),
};

/// Serves `/metrics` (when `metrics` is given) and `/healthz` on `listener` until
/// the task is aborted or the runtime stops, within [`LIMITS`].
pub fn spawn(
    listener: TcpListener,
    metrics: Option<Arc<Metrics>>,
    health: Arc<Health>,
) -> JoinHandle<()> {
    spawn_with(listener, metrics, health, LIMITS)
}

/// [`spawn`] with other limits (tests use short ones).
pub fn spawn_with(
    listener: TcpListener,
    metrics: Option<Arc<Metrics>>,
    health: Arc<Health>,
    limits: Limits,
) -> JoinHandle<()> {
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        tracing::info!(%addr, "serving /metrics and /healthz");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, max = limits.max_connections, "metrics listener: too many connections; closed");
                drop(stream);
                continue;
            };
            let metrics = metrics.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = respond(req.method(), req.uri().path(), metrics.as_deref(), &health);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(limits.lifetime, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "metrics listener: connection ended: {e}")
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "metrics listener: connection closed after its lifetime")
                    }
                }
            });
        }
    })
}

/// The local address of a listener, for tests that bind port 0.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn respond(
    method: &Method,
    path: &str,
    metrics: Option<&Metrics>,
    health: &Health,
) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "use GET\n".to_owned(),
        );
    }
    match path {
        "/metrics" => match metrics {
            Some(m) => text(StatusCode::OK, CONTENT_TYPE, m.encode()),
            None => text(
                StatusCode::NOT_FOUND,
                PLAIN,
                "metrics are not collected by this process\n".to_owned(),
            ),
        },
        "/healthz" => match health.check() {
            Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".to_owned()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found; try /metrics or /healthz\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const TEST_LIMITS: Limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(300),
        lifetime: Duration::from_secs(5),
    };

    async fn serve(limits: Limits) -> SocketAddr {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = local_addr(&listener).unwrap();
        let health = Arc::new(Health::new());
        spawn_with(listener, None, health, limits);
        addr
    }

    /// Whether the server closed `s` within `within` (a read sees the end or a
    /// reset), rather than keeping it open.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // A 408 or similar before the close.
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Found in review: hyper's header timeout needs a timer, which was not set,
    /// and nothing capped connections: a client that opens connections and
    /// sends nothing kept a task and a file descriptor each for ever, until
    /// the process could not open LND's stream, the journal or the audit log.
    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_is_dropped() {
        let addr = serve(TEST_LIMITS).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_scrapes_resume() {
        let addr = serve(Limits {
            header_timeout: Duration::from_secs(2),
            ..TEST_LIMITS
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..TEST_LIMITS.max_connections {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the server take them all before the one over the cap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_secs(1)).await);
        // The idle ones run out of time; then a scrape is served.
        for s in &mut idle {
            assert!(closed_within(s, Duration::from_secs(10)).await);
        }
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    }

    #[tokio::test]
    async fn a_keep_alive_connection_ends_after_its_lifetime() {
        let addr = serve(Limits {
            lifetime: Duration::from_millis(500),
            header_timeout: Duration::from_secs(30),
            ..TEST_LIMITS
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn a_port_in_use_is_named_with_the_fix() {
        let taken = bind("127.0.0.1:0").await.unwrap();
        let addr = local_addr(&taken).unwrap().to_string();
        let err = bind(&addr).await.unwrap_err().to_string();
        assert!(err.contains(&addr), "{err}");
        assert!(err.contains("--metrics.listen"), "{err}");
        assert!(err.contains("pick a free port"), "{err}");
    }

    #[tokio::test]
    async fn routes_answer_with_status_and_reason() {
        let health = Health::new();
        let metrics = Metrics::new();
        let r = respond(&Method::GET, "/healthz", Some(&metrics), &health);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("chain not loaded"));
        health.set_chain_loaded(true);
        health.set_stream_up(true);
        let r = respond(&Method::GET, "/healthz", None, &health);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "ok\n");
        let r = respond(&Method::GET, "/metrics", Some(&metrics), &health);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert!(body(r).await.contains("htlcgate_htlcs_seen_total 0"));
        let r = respond(&Method::GET, "/metrics", None, &health);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = respond(&Method::POST, "/metrics", Some(&metrics), &health);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = respond(&Method::GET, "/", Some(&metrics), &health);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
