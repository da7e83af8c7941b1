//! The harness's own floor: a minimal Rust interceptor (this benchmark's executable
//! re-run with `HTLCGATE_BENCH_ROLE=resume-all`) that answers RESUME to every
//! request the moment it arrives, over the same TLS + macaroon transport and tonic
//! stack as htlcgate, with no chain, journal or bookkeeping. Its latency is what the
//! mock LND, loopback TLS and the machine's scheduler cost by themselves, so
//! htlcgate's own share is the difference.

use anyhow::Context;
use htlcgate::lnd::connect::{connect, LndEndpoint};
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptResponse, ResolveHoldForwardAction};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The role's environment variable value.
pub const ROLE: &str = "resume-all";

/// Runs the floor interceptor against the endpoint in argv (rpcserver, cert,
/// macaroon) until the stream ends.
pub fn main_role() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [rpcserver, cert, macaroon] = a.as_slice() else {
        anyhow::bail!("resume-all: expected RPCSERVER TLS_CERT MACAROON, got {a:?}");
    };
    let ep = LndEndpoint {
        rpcserver: rpcserver.clone(),
        tls_cert_path: cert.into(),
        macaroon_path: macaroon.into(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // On a worker, as htlcgate runs its stream loop: not on block_on's thread.
    rt.block_on(rt.spawn(async move {
        let mut client = connect(&ep).await.context("resume-all: connecting")?;
        let (tx, rx) = mpsc::channel::<ForwardHtlcInterceptResponse>(4096);
        let mut inbound = client
            .htlc_interceptor(ReceiverStream::new(rx))
            .await
            .context("resume-all: opening the stream")?
            .into_inner();
        while let Some(req) = inbound.message().await.context("resume-all: reading")? {
            let answer = ForwardHtlcInterceptResponse {
                incoming_circuit_key: req.incoming_circuit_key,
                action: ResolveHoldForwardAction::Resume as i32,
                ..Default::default()
            };
            if tx.send(answer).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    }))?
}
