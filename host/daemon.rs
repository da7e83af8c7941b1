//! `htlcgate run`: load and check everything, then hold LND's interceptor stream
//! until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::chain::Chain;
use crate::config::{expand_home, Config};
use crate::gate::{Gate, GateOptions};
use crate::health::Health;
use crate::journal::Journal;
use crate::lnd::connect::LndEndpoint;
use crate::lnd::events::{spawn_outcomes, OutcomeEvent};
use crate::lnd::feature::Features;
use crate::lnd::node::{NodeContext, NodeOptions};
use crate::wasm::engine::Sandbox;

/// Command-line overrides of `[lnd]` (flags win over the file).
#[derive(Clone, Debug, Default)]
pub struct LndFlags {
    /// `--lnd.rpcserver`.
    pub rpcserver: Option<String>,
    /// `--lnd.tlscertpath`.
    pub tlscertpath: Option<PathBuf>,
    /// `--lnd.macaroonpath`.
    pub macaroonpath: Option<PathBuf>,
    /// `--network`.
    pub network: Option<String>,
}

/// Command-line flags for observability (flags win over the file).
#[derive(Clone, Debug, Default)]
pub struct ObserveFlags {
    /// `--metrics.listen`: serve `/metrics` and `/healthz` on this `HOST:PORT`.
    pub metrics_listen: Option<String>,
}

/// Resolves the LND endpoint from flags, then the config file, then LND's defaults.
pub fn endpoint(cfg: &Config, flags: &LndFlags) -> anyhow::Result<LndEndpoint> {
    let network = flags
        .network
        .clone()
        .or_else(|| cfg.lnd.network.clone())
        .unwrap_or_else(|| "mainnet".into());
    if !crate::config::NETWORKS.contains(&network.as_str()) {
        anyhow::bail!(
            "--network {network}: unknown network; use one of {}",
            crate::config::NETWORKS.join(", ")
        );
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let lnd_dir = home.join(".lnd");
    let tls = flags
        .tlscertpath
        .clone()
        .or_else(|| cfg.lnd.tlscertpath.clone())
        .map(|p| expand_home(&p))
        .unwrap_or_else(|| lnd_dir.join("tls.cert"));
    let mac = flags
        .macaroonpath
        .clone()
        .or_else(|| cfg.lnd.macaroonpath.clone())
        .map(|p| expand_home(&p))
        .unwrap_or_else(|| {
            lnd_dir
                .join("data/chain/bitcoin")
                .join(&network)
                .join("admin.macaroon")
        });
    Ok(LndEndpoint {
        rpcserver: flags
            .rpcserver
            .clone()
            .or_else(|| cfg.lnd.rpcserver.clone())
            .unwrap_or_else(|| "localhost:10009".into()),
        tls_cert_path: tls,
        macaroon_path: mac,
    })
}

/// Loads the config and the chain (every error before any connection to LND), then
/// serves the stream until a signal.
pub async fn run(config_path: PathBuf, flags: LndFlags) -> anyhow::Result<()> {
    run_with(config_path, flags, ObserveFlags::default()).await
}

/// As [`run`], with the observability flags.
pub async fn run_with(
    config_path: PathBuf,
    flags: LndFlags,
    observe: ObserveFlags,
) -> anyhow::Result<()> {
    let cfg = Config::load(&config_path)?;
    // Watched from here on: a plugin replaced while the chain compiles (seconds on
    // a cold start) is reloaded once the daemon runs, not missed.
    let reload_watch = crate::reload::Watch::arm(&cfg);
    let endpoint = endpoint(&cfg, &flags)?;
    // The metrics listener first: a port in use is reported before anything else,
    // and /healthz says "not loaded" while the chain compiles.
    let health = Arc::new(Health::new());
    let listen = observe
        .metrics_listen
        .or_else(|| cfg.metrics.listen.clone());
    let metrics = match &listen {
        Some(addr) => {
            crate::config::check_listen(addr)
                .map_err(|m| anyhow::anyhow!("--metrics.listen: {m}"))?;
            let listener = crate::http::bind(addr).await?;
            let metrics = Arc::new(crate::metrics::Metrics::new());
            crate::http::spawn(listener, Some(metrics.clone()), health.clone());
            Some(metrics)
        }
        None => None,
    };
    // The journal first: plugins' key-value state lives in its file.
    let journal = Journal::open(&cfg.journal.path, cfg.journal.retention)?;
    tracing::info!(path = %cfg.journal.path.display(), entries = journal.len().unwrap_or(0), "verdict journal open");
    let (stop_tx, stop_rx) = watch::channel(false);
    // Turned on once the interceptor stream is closed, after the shutdown drain:
    // HTLC events must keep coming while htlcgate answers what it decides (an HTLC
    // LND fails itself meanwhile must not be answered: that would end the stream
    // and lose the answers queued after it), and plugins deciding meanwhile still
    // see the node context.
    let (closed_tx, closed_rx) = watch::channel(false);
    // The node context (channels, block height) fills in the background while the
    // chain compiles; plugin calls never wait for it. A permission the macaroon
    // lacks turns off only its feature, logged once (README, Macaroon
    // permissions).
    let features = Features::new();
    let node = NodeContext::spawn(
        endpoint.clone(),
        NodeOptions::default(),
        features.clone(),
        closed_rx.clone(),
    );
    let sandbox = Sandbox::new(&cfg.sandbox)
        .context("starting the wasm engine")?
        .with_kv(journal.kv())
        .with_node(node.clone());
    // Compiling may take seconds: let this worker's other tasks (/healthz) move.
    let chain = tokio::task::block_in_place(|| {
        Chain::load(&sandbox, &cfg.plugins, cfg.chain.default_verdict.verdict())
    })?;
    tracing::info!(
        plugins = ?chain.names().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        default = %cfg.chain.default_verdict.verdict(),
        "chain loaded"
    );
    let audit = match &cfg.audit {
        Some(a) => {
            let log = crate::audit::AuditLog::open(a, metrics.clone())?;
            tracing::info!(path = %a.path.display(), max_bytes = a.max_bytes, keep = a.keep, "decision audit log open");
            Some(log)
        }
        None => None,
    };
    let gate = Gate::with_options(
        chain,
        cfg.chain.clone(),
        journal.clone(),
        GateOptions {
            observer: None,
            metrics,
            health: Some(health),
            audit: audit.clone(),
            node: Some(node),
        },
    );
    deliver_outcomes(endpoint.clone(), features, gate.clone(), closed_rx);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: taking no new HTLCs, answering those in flight");
        let _ = stop_tx.send(true);
    });
    let (hup_tx, hup_rx) = tokio::sync::mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = hup_tx.send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(hup_tx);
    tokio::spawn(reload_watch.run(cfg, sandbox, gate.clone(), hup_rx, stop_rx.clone()));
    // On a runtime worker, not on `block_on`'s thread: the task that reads the
    // stream then runs where the connection's I/O is polled, and the HTLC tasks it
    // spawns start on that same worker, instead of each request crossing to the
    // main thread and back (two thread wake-ups per HTLC).
    let interceptor = tokio::spawn(crate::lnd::stream::run(endpoint, gate, stop_rx));
    if let Err(e) = interceptor.await {
        // The loop itself never panics by design; if it does, shutting down loudly
        // beats running without an interceptor (LND forwards without one).
        anyhow::bail!("the interceptor stream task ended abnormally: {e}");
    }
    let _ = closed_tx.send(true);
    if let Some(a) = audit {
        let flushed = tokio::task::spawn_blocking(move || a.flush(Duration::from_secs(5)))
            .await
            .unwrap_or(false);
        if !flushed {
            tracing::warn!("the audit log was not fully written at shutdown");
        }
    }
    // Plugin state written since the last verdict (init, late decisions).
    if let Err(e) = journal.sync().await {
        tracing::error!("plugin state not saved at shutdown: {e}");
    }
    // Everything into the journal file, so that the log holds nothing it lacks
    // (what a downgrade needs; the next start has nothing to recover).
    match tokio::time::timeout(Duration::from_secs(10), journal.checkpoint()).await {
        Ok(Ok(true)) => tracing::info!(
            "verdict journal: every record is in the journal file (a clean stop)"
        ),
        Ok(Ok(false)) => tracing::warn!(
            "verdict journal: the write-ahead log still holds records the journal file lacks; the next start moves them in (keep both log files)"
        ),
        Ok(Err(e)) => tracing::warn!("verdict journal: final checkpoint: {e}"),
        Err(_) => tracing::warn!(
            "verdict journal: the final checkpoint took over 10 s; the next start finishes it (keep both log files)"
        ),
    }
    Ok(())
}

/// Subscribes to LND's HTLC events and hands the outcome of every HTLC the gate
/// decided or holds to its plugins (see [`Gate::on_outcome`]), until `stop`.
/// Without `offchain:read` the feature goes off (logged once) and nothing else
/// changes.
pub fn deliver_outcomes(
    endpoint: LndEndpoint,
    features: Features,
    gate: Arc<Gate>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (mut outcomes, _subscription) = spawn_outcomes(endpoint, features, stop);
    tokio::spawn(async move {
        // Drained always (the subscription stops reading LND when this queue is
        // full); each outcome is a lookup and a queue push, never a plugin call.
        while let Some(ev) = outcomes.recv().await {
            match ev {
                OutcomeEvent::Outcome(o) => {
                    gate.on_outcome(&o);
                }
                OutcomeEvent::Subscribed { resubscribed: true } => tracing::warn!(
                    "HTLC events subscribed again: outcomes while the subscription was down were not delivered (LND does not replay them)"
                ),
                OutcomeEvent::Subscribed { resubscribed: false } => {}
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
