//! Observability against the mock LND over real TLS gRPC: Prometheus metrics
//! scraped over HTTP while HTLCs stream, `/healthz` following the chain and the
//! stream (LND going away and coming back), and the audit log: every line parses
//! and matches the verdict LND received, and it rotates at `max_bytes`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{forward, plugin_with};
use htlcgate::audit::{AuditConfig, AuditLine, AuditLog};
use htlcgate::chain::Chain;
use htlcgate::circuit::Scid;
use htlcgate::config::{ChainConfig, Config, OnFault, PluginConfig, SandboxConfig};
use htlcgate::gate::{Gate, GateOptions};
use htlcgate::health::Health;
use htlcgate::journal::Journal;
use htlcgate::lnd::proto::routerrpc::{ForwardHtlcInterceptRequest, ResolveHoldForwardAction};
use htlcgate::metrics::Metrics;
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::record::HtlcRecord;
use htlcgate::wasm::engine::Sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Long enough for anything on a loaded 2-core machine; a wait, never a timing
/// assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

/// `GET path` over plain HTTP/1.1: (status, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The samples of a Prometheus/OpenMetrics text exposition: (name, labels) -> value.
fn parse(text: &str) -> HashMap<(String, BTreeMap<String, String>), f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let labels = rest
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        out.insert((name, labels), value.parse().expect("a number"));
    }
    out
}

/// One sample's value (0 when the series is absent).
fn value(
    m: &HashMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.get(&(name.to_owned(), labels)).copied().unwrap_or(0.0)
}

/// Sum over every series of a name.
fn total(m: &HashMap<(String, BTreeMap<String, String>), f64>, name: &str) -> f64 {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| *v)
        .sum()
}

/// Scrapes `/metrics` until `done` holds (or panics with the last scrape).
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&HashMap<(String, BTreeMap<String, String>), f64>) -> bool,
) -> HashMap<(String, BTreeMap<String, String>), f64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, _, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let m = parse(&body);
        if done(&m) {
            return m;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("metrics never showed {what}:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/healthz` until it answers `status` (or panics with the last answer).
async fn health_until(addr: SocketAddr, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (s, _, body) = get(addr, "/healthz").await;
        if s == status {
            return body;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("/healthz stayed {s} ({body:?}), expected {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gate over `plugins` with `opts`, streaming from a fresh mock LND.
struct Running {
    mock: MockLnd,
    gate: Arc<Gate>,
    sandbox: Sandbox,
    stop: watch::Sender<bool>,
    dir: tempfile::TempDir,
}

async fn running(plugins: &[PluginConfig], opts: GateOptions) -> Running {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let chain = Chain::load(&sandbox, plugins, htlcgate::verdict::Verdict::Resume)
        .unwrap_or_else(|e| panic!("{e}"));
    let gate = Gate::with_options(chain, ChainConfig::default(), Journal::in_memory(), opts);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(htlcgate::lnd::stream::run(
        mock.endpoint(),
        gate.clone(),
        stop_rx,
    ));
    mock.wait_connected(PATIENCE).await.unwrap();
    Running {
        mock,
        gate,
        sandbox,
        stop,
        dir,
    }
}

/// The listener for /metrics and /healthz on a free loopback port.
async fn listener(metrics: Option<Arc<Metrics>>, health: Arc<Health>) -> SocketAddr {
    let l = htlcgate::http::bind("127.0.0.1:0").await.unwrap();
    let addr = htlcgate::http::local_addr(&l).unwrap();
    htlcgate::http::spawn(l, metrics, health);
    addr
}

fn example_chain() -> Vec<PluginConfig> {
    vec![
        plugin_with("max-htlc", &[("max_msat", "5000000000")]),
        plugin_with("fee-floor", &[("base_msat", "1000"), ("ppm", "100")]),
    ]
}

/// Who decides `(out, fee)` in [`example_chain`] and what: the policy in plain Rust.
fn expected(out: u64, fee: u64) -> (&'static str, &'static str) {
    if out > 5_000_000_000 {
        ("max-htlc", "fail")
    } else if u128::from(fee) < 1000 + u128::from(out) * 100 / 1_000_000 {
        ("fee-floor", "fail")
    } else {
        ("default", "resume")
    }
}

/// A mix of forwards: above max-htlc, below and above the fee floor.
fn mixed(id: u64) -> (u64, u64) {
    let out = match id % 5 {
        0 => 6_000_000_000,
        1 => 1_000_000,
        2 => 250_000_000,
        3 => 10_000,
        _ => 5_000_000_000,
    };
    let floor = 1000 + out / 10_000;
    let fee = if id.is_multiple_of(3) {
        floor - 1
    } else {
        floor + id
    };
    (out, fee)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed_over_http_and_move_under_a_stream() {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let addr = listener(Some(metrics.clone()), health.clone()).await;
    // Traps on every third call; skipped, never quarantined.
    let mut flaky = plugin_with("trap", &[("every", "3")]);
    flaky.name = "flaky".into();
    flaky.max_faults = 1_000;
    // Traps on every call: quarantined after 2 faults.
    let mut broken = plugin_with("trap", &[("every", "1")]);
    broken.name = "broken".into();
    broken.max_faults = 2;
    broken.on_fault = OnFault::Skip;
    let mut plugins = vec![flaky, broken];
    plugins.extend(example_chain());
    let r = running(
        &plugins,
        GateOptions {
            metrics: Some(metrics.clone()),
            health: Some(health),
            ..GateOptions::default()
        },
    )
    .await;

    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let before = parse(&body);
    assert_eq!(value(&before, "htlcgate_htlcs_seen_total", &[]), 0.0);
    assert_eq!(value(&before, "htlcgate_chain_plugins", &[]), 4.0);

    let n = 30u64;
    let mut want: HashMap<(&str, &str), f64> = HashMap::new();
    let mut over_max = 0.0;
    for id in 0..n {
        let (out, fee) = mixed(id);
        r.mock.send_htlc(forward(id, out, fee));
        *want.entry(expected(out, fee)).or_default() += 1.0;
        if out > 5_000_000_000 {
            over_max += 1.0;
        }
    }
    r.mock.wait_resolved(n as usize, PATIENCE).await.unwrap();
    // Metrics are recorded just after each answer is queued: wait until all are.
    let m = scrape_until(addr, "every decision", |m| {
        total(m, "htlcgate_verdicts_total") == n as f64
            && value(m, "htlcgate_decision_seconds_count", &[]) == n as f64
    })
    .await;
    assert_eq!(value(&m, "htlcgate_htlcs_seen_total", &[]), n as f64);
    for ((by, kind), count) in &want {
        let (plugin, source) = match *by {
            "default" => ("", "default"),
            p => (p, "plugin"),
        };
        assert_eq!(
            value(
                &m,
                "htlcgate_verdicts_total",
                &[("plugin", plugin), ("kind", kind), ("source", source)]
            ),
            *count,
            "{by} {kind}"
        );
    }
    // Every third call of `flaky` trapped; `broken` trapped twice, then was
    // quarantined and no longer called.
    assert_eq!(
        value(
            &m,
            "htlcgate_plugin_faults_total",
            &[("plugin", "flaky"), ("reason", "trap")]
        ),
        (n / 3) as f64
    );
    assert_eq!(
        value(
            &m,
            "htlcgate_plugin_faults_total",
            &[("plugin", "broken"), ("reason", "trap")]
        ),
        2.0
    );
    assert_eq!(
        value(&m, "htlcgate_plugin_quarantined", &[("plugin", "broken")]),
        1.0
    );
    assert_eq!(
        value(&m, "htlcgate_plugin_quarantined", &[("plugin", "flaky")]),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "htlcgate_plugin_quarantines_total",
            &[("plugin", "broken")]
        ),
        1.0
    );
    assert_eq!(value(&m, "htlcgate_plugins_quarantined", &[]), 1.0);
    // Fuel and time per call: one observation per call made.
    assert_eq!(
        value(&m, "htlcgate_plugin_fuel_count", &[("plugin", "flaky")]),
        n as f64
    );
    assert_eq!(
        value(&m, "htlcgate_plugin_fuel_count", &[("plugin", "broken")]),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "htlcgate_plugin_call_seconds_count",
            &[("plugin", "max-htlc")]
        ),
        n as f64
    );
    assert_eq!(
        value(&m, "htlcgate_plugin_fuel_count", &[("plugin", "fee-floor")]),
        n as f64 - over_max
    );
    assert!(value(&m, "htlcgate_plugin_fuel_sum", &[("plugin", "fee-floor")]) > 0.0);
    assert_eq!(
        value(
            &m,
            "htlcgate_plugin_fuel_bucket",
            &[("plugin", "fee-floor"), ("le", "+Inf")]
        ),
        n as f64 - over_max
    );
    assert_eq!(value(&m, "htlcgate_decision_fuel_count", &[]), n as f64);
    assert!(value(&m, "htlcgate_decision_seconds_sum", &[]) > 0.0);
    assert_eq!(value(&m, "htlcgate_stream_connects_total", &[]), 1.0);
    assert_eq!(value(&m, "htlcgate_stream_up", &[]), 1.0);

    // A reload swaps in a fresh chain: the quarantine ends, the count moves; a
    // refused reload is counted too and changes nothing else.
    let config = r.dir.path().join("htlcgate.toml");
    let text = |plugins: &[PluginConfig]| {
        plugins
            .iter()
            .map(|p| {
                let mut s = format!(
                    "[[plugin]]\nname = \"{}\"\npath = \"{}\"\nmax_faults = {}\n[plugin.config]\n",
                    p.name,
                    p.path.display(),
                    p.max_faults
                );
                for (k, v) in &p.config {
                    s.push_str(&format!("{k} = \"{v}\"\n"));
                }
                s
            })
            .collect::<String>()
    };
    std::fs::write(&config, text(&plugins[1..])).unwrap();
    let current = Config::load(&config).unwrap();
    htlcgate::reload::reload_now(&config, &r.sandbox, &r.gate, &current)
        .await
        .unwrap();
    std::fs::write(
        &config,
        "[[plugin]]\nname = \"x\"\npath = \"missing.wasm\"\n",
    )
    .unwrap();
    assert!(
        htlcgate::reload::reload_now(&config, &r.sandbox, &r.gate, &current)
            .await
            .is_err()
    );
    let (_, _, body) = get(addr, "/metrics").await;
    let m = parse(&body);
    assert_eq!(
        value(&m, "htlcgate_chain_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        value(&m, "htlcgate_chain_reloads_total", &[("result", "refused")]),
        1.0
    );
    assert_eq!(value(&m, "htlcgate_chain_plugins", &[]), 3.0);
    assert_eq!(
        value(&m, "htlcgate_plugin_quarantined", &[("plugin", "broken")]),
        0.0
    );
    assert_eq!(value(&m, "htlcgate_plugins_quarantined", &[]), 0.0);
    // The fresh `broken` faults again on the next HTLC.
    r.mock.send_htlc(forward(1_000, 1_000, 5_000));
    scrape_until(addr, "the fresh plugin's fault", |m| {
        value(
            m,
            "htlcgate_plugin_faults_total",
            &[("plugin", "broken"), ("reason", "trap")],
        ) == 3.0
            && value(m, "htlcgate_htlcs_seen_total", &[]) == n as f64 + 1.0
    })
    .await;
    assert!(r.mock.violations().is_empty(), "{:?}", r.mock.violations());
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok_only_while_the_chain_is_loaded_and_lnd_is_connected() {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let addr = listener(Some(metrics.clone()), health.clone()).await;
    // Before the chain is loaded (the daemon serves /healthz while it compiles).
    let (status, content_type, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(body.contains("chain not loaded"), "{body}");

    let mut r = running(
        &example_chain(),
        GateOptions {
            metrics: Some(metrics.clone()),
            health: Some(health.clone()),
            ..GateOptions::default()
        },
    )
    .await;
    assert_eq!(health_until(addr, 200).await, "ok\n");

    // LND goes away: unhealthy, saying why.
    r.mock.stop().await;
    let body = health_until(addr, 503).await;
    assert!(body.contains("LND interceptor stream down"), "{body}");
    let m = parse(&get(addr, "/metrics").await.2);
    assert_eq!(value(&m, "htlcgate_stream_up", &[]), 0.0);
    assert!(value(&m, "htlcgate_stream_disconnects_total", &[]) >= 1.0);

    // And comes back: healthy again once htlcgate has reconnected.
    r.mock.restart().await.unwrap();
    assert_eq!(health_until(addr, 200).await, "ok\n");
    r.mock.wait_connected(PATIENCE).await.unwrap();
    let m = scrape_until(addr, "the stream up", |m| {
        value(m, "htlcgate_stream_up", &[]) == 1.0
    })
    .await;
    let connects = value(&m, "htlcgate_stream_connects_total", &[]);
    let disconnects = value(&m, "htlcgate_stream_disconnects_total", &[]);
    assert!(connects >= 2.0, "{connects}");
    assert_eq!(
        connects,
        disconnects + 1.0,
        "up now: one more connect than disconnects"
    );
    // Deciding still works after the flip.
    r.mock.send_htlc(forward(1, 1_000_000, 5_000));
    r.mock.wait_resolved(1, PATIENCE).await.unwrap();

    // Unknown paths say where to look.
    let (status, _, body) = get(addr, "/nope").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("/metrics") && body.contains("/healthz"),
        "{body}"
    );
    let _ = r.stop.send(true);
}

fn audit_config(dir: &Path, max_bytes: u64, keep: u32) -> AuditConfig {
    AuditConfig {
        path: dir.join("audit.jsonl"),
        max_bytes,
        keep,
        queue: 4096,
    }
}

fn read_lines(p: &Path) -> Vec<AuditLine> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}: {l}", p.display(), i + 1))
        })
        .collect()
}

async fn flush(log: &AuditLog) {
    let log = log.clone();
    assert!(tokio::task::spawn_blocking(move || log.flush(PATIENCE))
        .await
        .unwrap());
}

/// A forward with the fields a plugin might look at all set: records, node id.
fn rich(id: u64) -> ForwardHtlcInterceptRequest {
    let (out, fee) = mixed(id);
    let mut req = forward(id, out, fee);
    req.incoming_circuit_key.as_mut().unwrap().chan_id = (812_345 << 40) | (1_204 << 16);
    if id.is_multiple_of(4) {
        req.custom_records = [(65_537, vec![id as u8, 0xff])].into();
        req.in_wire_custom_records = [(106_823, vec![1])].into();
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_parse_and_match_the_verdicts_lnd_received() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&audit_config(dir.path(), 1 << 20, 2), None).unwrap();
    let r = running(
        &example_chain(),
        GateOptions {
            audit: Some(log.clone()),
            ..GateOptions::default()
        },
    )
    .await;
    let n = 40u64;
    let mut sent = HashMap::new();
    for id in 0..n {
        let req = rich(id);
        let key = req.incoming_circuit_key.unwrap();
        sent.insert(format!("{}:{}", key.chan_id, key.htlc_id), req.clone());
        r.mock.send_htlc(req);
    }
    r.mock.wait_resolved(n as usize, PATIENCE).await.unwrap();
    let answers: HashMap<String, ResolveHoldForwardAction> = r
        .mock
        .resolutions()
        .into_iter()
        .map(|res| {
            (
                format!("{}:{}", res.key.0, res.key.1),
                res.response.action(),
            )
        })
        .collect();
    // Lines are queued just after each answer: wait for the writer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let lines = loop {
        flush(&log).await;
        let lines = read_lines(log.path());
        if lines.len() as u64 >= n || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lines.len() as u64, n, "one line per HTLC");
    for line in &lines {
        let req = &sent[&line.key];
        let action = answers[&line.key];
        let want = match action {
            ResolveHoldForwardAction::Resume => "resume",
            ResolveHoldForwardAction::Fail => "fail",
            other => panic!("unexpected answer {other:?}"),
        };
        assert_eq!(
            line.verdict, want,
            "{}: the line says what LND got",
            line.key
        );
        let (by, kind) = expected(
            req.outgoing_amount_msat,
            req.incoming_amount_msat - req.outgoing_amount_msat,
        );
        assert_eq!(
            (line.decided_by.as_str(), line.verdict.as_str()),
            (by, kind),
            "{}",
            line.key
        );
        // Everything of the request but the onion (replaced by its size).
        assert_eq!(line.htlc, HtlcRecord::from_request(req), "{}", line.key);
        assert_eq!(line.htlc.onion_blob_size, 1366);
        assert_eq!(line.scid_in, "812345x1204x0");
        assert_eq!(
            line.scid_out,
            Scid(req.outgoing_requested_chan_id).to_string()
        );
        // Per-plugin steps, in chain order, with their fuel.
        let names: Vec<&str> = line.plugins.iter().map(|p| p.plugin.as_str()).collect();
        if by == "max-htlc" {
            assert_eq!(names, ["max-htlc"]);
        } else {
            assert_eq!(names, ["max-htlc", "fee-floor"]);
        }
        assert!(line.plugins.iter().all(|p| p.fuel > 0));
        assert_eq!(line.fuel, line.plugins.iter().map(|p| p.fuel).sum::<u64>());
        assert!(
            line.time.ends_with('Z') && line.time.len() == 27,
            "{}",
            line.time
        );
    }
    assert_eq!(log.dropped(), 0);
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_rotates_at_max_bytes_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = audit_config(dir.path(), 4096, 2);
    let metrics = Arc::new(Metrics::new());
    let log = AuditLog::open(&cfg, Some(metrics.clone())).unwrap();
    let r = running(
        &example_chain(),
        GateOptions {
            audit: Some(log.clone()),
            metrics: Some(metrics.clone()),
            ..GateOptions::default()
        },
    )
    .await;
    let n = 40u64;
    for id in 0..n {
        r.mock.send_htlc(rich(id));
    }
    r.mock.wait_resolved(n as usize, PATIENCE).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !metrics
        .encode()
        .contains(&format!("htlcgate_audit_lines_total {n}\n"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flush(&log).await;
    let rotated = |k: u32| PathBuf::from(format!("{}.{k}", cfg.path.display()));
    let files = [cfg.path.clone(), rotated(1), rotated(2)];
    let mut keys = std::collections::HashSet::new();
    let mut kept = 0;
    for f in &files {
        let size = std::fs::metadata(f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .len();
        assert!(size <= cfg.max_bytes, "{} is {size} bytes", f.display());
        for line in read_lines(f) {
            assert!(keys.insert(line.key.clone()), "{} twice", line.key);
            kept += 1;
        }
    }
    assert!(!rotated(3).exists(), "only `keep` rotated files are kept");
    assert!(
        kept > 0 && kept < n,
        "older lines rotated away: kept {kept} of {n}"
    );
    let text = metrics.encode();
    let rotations: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("htlcgate_audit_rotations_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rotations >= 2, "{text}");
    let _ = r.stop.send(true);
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_metrics_and_healthz_and_flushes_its_audit_log_on_sigterm() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lnd]\nrpcserver = \"{}\"\ntlscertpath = \"{}\"\nmacaroonpath = \"{}\"\n\n\
             [audit]\npath = \"audit.jsonl\"\n\n\
             [[plugin]]\nname = \"fee-floor\"\npath = \"{}\"\n[plugin.config]\nbase_msat = 1000\n",
            mock.addr(),
            mock.cert_path().display(),
            mock.macaroon_path().display(),
            common::plugins_dir().join("fee-floor.wasm").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--metrics.listen", &listen])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    mock.wait_connected(PATIENCE).await.unwrap();
    let addr: SocketAddr = listen.parse().unwrap();
    assert_eq!(health_until(addr, 200).await, "ok\n");
    mock.send_htlc(forward(1, 100_000, 2_000));
    mock.send_htlc(forward(2, 100_000, 10));
    mock.wait_resolved(2, PATIENCE).await.unwrap();
    let m = scrape_until(addr, "two verdicts", |m| {
        total(m, "htlcgate_verdicts_total") == 2.0
    })
    .await;
    assert_eq!(
        value(
            &m,
            "htlcgate_verdicts_total",
            &[
                ("plugin", "fee-floor"),
                ("kind", "fail"),
                ("source", "plugin")
            ]
        ),
        1.0
    );
    let pid = child.id().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    // Everything decided is in the audit log once the daemon has exited.
    let lines = read_lines(&dir.path().join("audit.jsonl"));
    let verdicts: BTreeMap<String, String> = lines
        .iter()
        .map(|l| (l.key.clone(), l.verdict.clone()))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([
            ("1:1".to_owned(), "resume".to_owned()),
            ("1:2".to_owned(), "fail".to_owned())
        ])
    );
}

#[test]
fn a_metrics_port_in_use_is_refused_before_connecting_naming_it_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(&cfg, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["run", "--config"])
        .arg(&cfg)
        // Nothing listens there: the error must come before any connection.
        .args(["--lnd.rpcserver", "127.0.0.1:9", "--metrics.listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("pick a free port"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("TLS"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .args([
            "--lnd.rpcserver",
            "127.0.0.1:9",
            "--metrics.listen",
            "10088",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics.listen") && err.contains("HOST:PORT"),
        "{err}"
    );
}
