//! The interceptor loop: connect to LND, read HTLCs, hand them to the gate, write the
//! answers; reconnect forever with backoff; on shutdown take no new HTLCs, answer the
//! ones in flight, then close the stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::gate::{ClosedStream, Gate};
use crate::lnd::connect::{classify_status, connect, Backoff, ConnectError, LndEndpoint};

/// How a stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// We were asked to stop; in-flight HTLCs were answered (or the drain limit
    /// passed, leaving this many unanswered: LND keeps them held or resumes them).
    Shutdown {
        /// Requests still unanswered when the stream was closed.
        unanswered: usize,
    },
    /// LND closed the stream without an error.
    ClosedByLnd,
}

/// A stream that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);

/// A stream call still open this long without an error is taken as accepted by
/// LND: LND refuses an interceptor at once (macaroon, "interceptor already
/// exists"), but sends the response headers only with the first HTLC.
pub const ACCEPT_GRACE: Duration = Duration::from_millis(500);

/// Runs until `shutdown` turns true: connects, serves the stream, reconnects with
/// exponential backoff and jitter (1 s .. 30 s), logging every failure in plain words.
pub async fn run(endpoint: LndEndpoint, gate: Arc<Gate>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        let result = serve_once(&endpoint, &gate, &mut shutdown).await;
        match result {
            Ok(StreamEnd::Shutdown { unanswered }) => {
                tracing::info!(unanswered, "interceptor stream closed for shutdown");
                return;
            }
            Ok(StreamEnd::ClosedByLnd) => {
                tracing::warn!(addr = %endpoint.rpcserver, "LND closed the interceptor stream; reconnecting");
                gate.stream_failed(format!("LND at {} closed the stream", endpoint.rpcserver));
            }
            Err(e) => {
                tracing::warn!(addr = %endpoint.rpcserver, "{e}");
                gate.stream_failed(e.to_string());
            }
        }
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::info!(
            retry_in_ms = delay.as_millis() as u64,
            "reconnecting to LND"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One connection: returns how it ended, or why it failed.
pub async fn serve_once(
    endpoint: &LndEndpoint,
    gate: &Arc<Gate>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<StreamEnd, ConnectError> {
    let mut client = connect(endpoint).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let gen = gate.open_stream(tx);
    // LND may send the response headers only with the first HTLC, so this await can
    // last until then; shutdown still wins.
    let call = client.htlc_interceptor(UnboundedReceiverStream::new(rx));
    tokio::pin!(call);
    let grace = tokio::time::sleep(ACCEPT_GRACE);
    tokio::pin!(grace);
    let mut waiting = true;
    let response = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = &mut grace, if waiting => {
                waiting = false;
                gate.stream_accepted(gen);
            }
            _ = shutdown.changed() => {
                gate.close_stream(gen);
                return Ok(StreamEnd::Shutdown { unanswered: 0 });
            }
        }
    };
    let mut inbound = match response {
        Ok(r) => {
            gate.stream_accepted(gen);
            r.into_inner()
        }
        Err(status) => {
            gate.close_stream(gen);
            return Err(classify_status(&status, endpoint));
        }
    };
    tracing::info!(addr = %endpoint.rpcserver, stream = gen, "interceptor stream open: deciding HTLCs");
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => gate.on_request(gen, req),
                Ok(None) => {
                    gate.close_stream(gen);
                    return Ok(StreamEnd::ClosedByLnd);
                }
                Err(status) => {
                    let closed = gate.close_stream(gen);
                    on_stream_error(gate, &status, &closed);
                    return Err(classify_status(&status, endpoint));
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    // Shutdown: read no more requests (new HTLCs stay with LND), end the holds
    // (each gets its holder's on_hold_expiry verdict), answer those in flight,
    // then end our half of the stream.
    gate.end_holds();
    let unanswered = gate.drain(gen, gate_drain_limit(gate)).await;
    // Dropping the gate's sender ends our half of the stream after the queued
    // answers; LND then ends its half. Wait for that (briefly) so that the answers
    // are on the wire before the connection is dropped. Requests read meanwhile are
    // new HTLCs: not taken, LND keeps holding or resumes them.
    gate.close_stream(gen);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    Ok(StreamEnd::Shutdown { unanswered })
}

/// LND's messages when it refuses a resume or fail for an HTLC held on-chain.
const ON_CHAIN_MESSAGES: [&str; 2] = [
    "cannot resume held htlc in the on-chain flow",
    "cannot fail held htlc in the on-chain flow",
];

/// Logs LND's reason with the key involved, and remembers on-chain keys.
fn on_stream_error(gate: &Gate, status: &tonic::Status, closed: &ClosedStream) {
    let message = status.message();
    let last = closed.last_answered.map(|k| k.to_string());
    tracing::warn!(
        message,
        code = ?status.code(),
        last_answered = last.as_deref().unwrap_or("none"),
        "LND ended the interceptor stream"
    );
    if ON_CHAIN_MESSAGES.iter().any(|m| message.contains(m)) {
        // LND does not name the key; it is among the resume/fail answers sent just
        // before (it handles responses in order, within milliseconds).
        let keys: Vec<_> = if closed.recent.is_empty() {
            closed.last_answered.into_iter().collect()
        } else {
            closed.recent.clone()
        };
        let marked = gate.mark_on_chain_suspects(&keys);
        let list: Vec<String> = marked.iter().map(|k| k.to_string()).collect();
        tracing::warn!(
            keys = %list.join(","),
            "LND holds one of these HTLCs in the on-chain flow: from now on they are answered only with a settle, or not at all"
        );
    }
}

fn gate_drain_limit(gate: &Gate) -> Duration {
    // Every decision ends within its chain's budget (the longest since start: a
    // reload may have shortened it while older decisions run); slack for the send.
    gate.longest_budget() + Duration::from_millis(500)
}
