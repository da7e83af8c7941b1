#![allow(dead_code)]
//! A live htlcgate for integration tests: the mock LND over real TLS gRPC on
//! loopback (interceptor, HTLC events, channels, block height) and the gate with
//! its node context and outcome delivery wired as `htlcgate run` wires them,
//! journaling to a file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use htlcgate::chain::Chain;
use htlcgate::config::{ChainConfig, KvLimits, PluginConfig, SandboxConfig};
use htlcgate::gate::{DecisionEvent, Gate, GateOptions};
use htlcgate::journal::{Journal, Retention};
use htlcgate::lnd::feature::{Feature, Features};
use htlcgate::lnd::node::{NodeContext, NodeOptions};
use htlcgate::lnd::proto::routerrpc::ForwardHtlcInterceptResponse;
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::wasm::engine::Sandbox;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Generous: a loaded CI machine with 2 cores must never time out.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

pub struct Harness {
    pub mock: MockLnd,
    pub gate: Arc<Gate>,
    pub journal: Journal,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
    pub events: mpsc::UnboundedReceiver<DecisionEvent>,
    pub features: Features,
    pub dir: tempfile::TempDir,
}

/// Opens the test's journal file; retries while a previous gate over it (a
/// "restart") is still letting go of the file.
pub async fn open_journal(dir: &std::path::Path) -> Journal {
    let path = dir.join("journal.redb");
    let deadline = Instant::now() + WAIT;
    loop {
        match Journal::open(&path, Retention::default()) {
            Ok(j) => return j,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("journal not free yet: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Starts a mock LND (unless given one) and htlcgate's gate over `plugins`, with
/// the node context and outcome delivery, journaling to a file in the test dir.
pub async fn start(
    plugins: Vec<PluginConfig>,
    chain: ChainConfig,
    mock: Option<(MockLnd, tempfile::TempDir)>,
) -> Harness {
    init_tracing();
    let (mock, dir) = match mock {
        Some(m) => m,
        None => {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = MockOptions::new(dir.path());
            opts.require_interceptor = true;
            (MockLnd::start(opts).await.unwrap(), dir)
        }
    };
    let journal = open_journal(dir.path()).await;
    let (stop, stop_rx) = watch::channel(false);
    let features = Features::new();
    let node = NodeContext::spawn(
        mock.endpoint(),
        NodeOptions::default(),
        features.clone(),
        stop_rx.clone(),
    );
    let sandbox = Sandbox::new(&SandboxConfig::default())
        .unwrap()
        .with_kv(journal.kv())
        .with_node(node.clone());
    let loaded = Chain::load(&sandbox, &plugins, chain.default_verdict.verdict())
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, events) = mpsc::unbounded_channel();
    let gate = Gate::with_options(
        loaded,
        chain,
        journal.clone(),
        GateOptions {
            observer: Some(tx),
            node: Some(node),
            ..GateOptions::default()
        },
    );
    htlcgate::daemon::deliver_outcomes(
        mock.endpoint(),
        features.clone(),
        gate.clone(),
        stop_rx.clone(),
    );
    let task = tokio::spawn(htlcgate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        stop_rx,
    ));
    mock.wait_connected(WAIT).await.unwrap();
    Harness {
        mock,
        gate,
        journal,
        stop,
        task,
        events,
        features,
        dir,
    }
}

impl Harness {
    /// Responses accepted by the mock, by key; panics on a key answered twice.
    pub fn answers(&self) -> HashMap<(u64, u64), ForwardHtlcInterceptResponse> {
        super::answers(&self.mock)
    }

    pub fn assert_no_violation(&self) {
        assert!(
            self.mock.violations().is_empty(),
            "LND rules broken: {:?}",
            self.mock.violations()
        );
    }

    /// The decimal counter `key` in plugin `name`'s namespace (0 when absent).
    pub fn counter(&self, name: &str, key: &str) -> u64 {
        let ns = self.journal.kv().namespace(name).unwrap();
        ns.get(key.as_bytes(), &KvLimits::default())
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(0)
    }

    /// The next decision the gate made.
    pub async fn next_decision(&mut self) -> DecisionEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("a decision in time")
            .expect("gate alive")
    }

    pub async fn wait_outcomes_on(&self) {
        let on = tokio::time::timeout(
            WAIT,
            self.features.wait_for(|s| {
                s.get(&Feature::HtlcOutcomes).is_some_and(|st| st.is_on())
                    && s.get(&Feature::ChannelCache).is_some_and(|st| st.is_on())
            }),
        )
        .await;
        assert!(
            on.is_ok(),
            "features not on: {:?}",
            self.features.snapshot()
        );
    }

    pub async fn shutdown(self) -> (MockLnd, tempfile::TempDir) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("shutdown finished")
            .unwrap();
        (self.mock, self.dir)
    }
}

/// Polls `done` every 10 ms until it holds; panics after [`WAIT`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
