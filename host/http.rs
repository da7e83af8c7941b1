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
use hyper_util::rt::TokioIo;
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

/// Serves `/metrics` (when `metrics` is given) and `/healthz` on `listener` until
/// the task is aborted or the runtime stops.
pub fn spawn(
    listener: TcpListener,
    metrics: Option<Arc<Metrics>>,
    health: Arc<Health>,
) -> JoinHandle<()> {
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        tracing::info!(%addr, "serving /metrics and /healthz");
    }
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
            let metrics = metrics.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = respond(req.method(), req.uri().path(), metrics.as_deref(), &health);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, "metrics listener: connection ended: {e}");
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
