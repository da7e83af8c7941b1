//! The interceptors under load, each a child process connected to the mock LND
//! over TLS on loopback: the real `htlcgate run` binary, or the Python grpcio
//! baseline (`benches/python/interceptor.py`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use htlcgate::mock_lnd::{MockLnd, MockOptions};

use crate::common;

/// A running interceptor process.
pub struct Interceptor {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Its stderr, for the reason when it dies.
    log: PathBuf,
}

impl Interceptor {
    /// Starts `cmd` (stdin closed; stdout and stderr both to `log`: `htlcgate run`
    /// logs to stdout) as the interceptor called `name`.
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Interceptor> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting the {name} ({:?})", cmd.get_program()))?;
        Ok(Interceptor {
            name: name.into(),
            child,
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fails with its log if it exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until it has connected to `mock`.
    pub async fn wait_connected(&mut self, mock: &MockLnd, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if mock.wait_connected(Duration::from_millis(50)).await.is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not connect to the mock LND within {limit:?}; its log ends with:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Interceptor {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `[[plugin]]` entry of a generated config.
pub struct PluginEntry {
    /// Its name.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// `[plugin.config]` pairs.
    pub config: Vec<(String, String)>,
}

impl PluginEntry {
    /// An entry for `path` named `name` with `config`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, config: &[(&str, &str)]) -> Self {
        PluginEntry {
            name: name.into(),
            path: path.into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// How `htlcgate run` is configured.
pub struct DaemonOptions {
    /// The chain.
    pub plugins: Vec<PluginEntry>,
    /// The compiled-code cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Where the verdict journal goes.
    pub journal: PathBuf,
    /// `[metrics] listen`, when the run reads the daemon's own figures.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The example chain of the end-to-end benchmark: channel-filter, max-htlc,
/// fee-floor (every benchmark HTLC passes all three, so all three run).
pub fn example_chain() -> Vec<PluginEntry> {
    let denied = common::DENIED_CHAN.to_string();
    vec![
        PluginEntry::new(
            "channel-filter",
            common::plugin_path("channel-filter"),
            &[("deny_in", &denied)],
        ),
        PluginEntry::new(
            "max-htlc",
            common::plugin_path("max-htlc"),
            &[("max_msat", "5000000000")],
        ),
        PluginEntry::new(
            "fee-floor",
            common::plugin_path("fee-floor"),
            &[("base_msat", "1000"), ("ppm", "100")],
        ),
    ]
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// Writes `dir/htlcgate.toml` for `opts` and starts `htlcgate run` on it against
/// `mock`.
pub fn spawn_htlcgate(
    dir: &Path,
    mock: &MockLnd,
    opts: &DaemonOptions,
) -> anyhow::Result<Interceptor> {
    let mut toml = String::new();
    toml.push_str("[chain]\ndefault_verdict = \"resume\"\n\n[journal]\n");
    toml.push_str(&format!(
        "path = {}\n\n[sandbox]\n",
        toml_str(&opts.journal.to_string_lossy())
    ));
    match &opts.cache_dir {
        Some(d) => toml.push_str(&format!(
            "cache = true\ncache_dir = {}\n",
            toml_str(&d.to_string_lossy())
        )),
        None => toml.push_str("cache = false\n"),
    }
    if let Some(addr) = opts.metrics {
        toml.push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
    }
    for p in &opts.plugins {
        toml.push_str(&format!(
            "\n[[plugin]]\nname = {}\npath = {}\n",
            toml_str(&p.name),
            toml_str(&p.path.to_string_lossy())
        ));
        if !p.config.is_empty() {
            toml.push_str("[plugin.config]\n");
            for (k, v) in &p.config {
                toml.push_str(&format!("{k} = {}\n", toml_str(v)));
            }
        }
    }
    let config = dir.join("htlcgate.toml");
    std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
    let log = dir.join("htlcgate.log");
    let endpoint = mock.endpoint();
    let mut cmd = Command::new(common::htlcgate_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--lnd.rpcserver")
        .arg(&endpoint.rpcserver)
        .arg("--lnd.tlscertpath")
        .arg(&endpoint.tls_cert_path)
        .arg("--lnd.macaroonpath")
        .arg(&endpoint.macaroon_path)
        .env("RUST_LOG", "warn");
    Interceptor::spawn("htlcgate", cmd, log)
}

/// The Python baseline's virtualenv (target/bench-venv) with grpcio and
/// grpcio-tools, created and installed with pip when missing. Returns its python.
pub fn python_env() -> anyhow::Result<PathBuf> {
    let venv = common::repo().join("target/bench-venv");
    let python = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import grpc, grpc_tools"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    if !python.exists() {
        eprintln!("load: creating {} (python3 -m venv)", venv.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("python3 not found: the Python baseline needs Python 3 with venv (apt-get install python3 python3-venv)")?;
        if !status.success() {
            bail!(
                "python3 -m venv {} failed: install python3-venv (apt-get install python3-venv)",
                venv.display()
            );
        }
    }
    eprintln!(
        "load: installing grpcio and grpcio-tools into {} (pip)",
        venv.display()
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "grpcio", "grpcio-tools"])
        .status()
        .with_context(|| {
            format!(
                "{} not found: recreate the venv (rm -r {})",
                venv.join("bin/pip").display(),
                venv.display()
            )
        })?;
    if !status.success() || !ready(&python) {
        bail!("pip could not install grpcio and grpcio-tools into {}: check that PyPI is reachable, or install them there by hand", venv.display());
    }
    Ok(python)
}

/// Generates the Python stubs of `proto/` into `dir` with grpcio-tools.
pub fn python_stubs(python: &Path, dir: &Path) -> anyhow::Result<()> {
    let proto = common::repo().join("proto");
    let out = Command::new(python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto.display()))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(proto.join("lightning.proto"))
        .arg(proto.join("router.proto"))
        .output()
        .context("running grpc_tools.protoc")?;
    if !out.status.success() {
        bail!(
            "grpc_tools.protoc failed on proto/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts the harness's floor (`floor.rs`: this executable answering RESUME at
/// once) against `mock`.
pub fn spawn_floor(dir: &Path, mock: &MockLnd) -> anyhow::Result<Interceptor> {
    let log = dir.join("floor.log");
    let endpoint = mock.endpoint();
    let exe = std::env::current_exe().context("finding the benchmark executable")?;
    let mut cmd = Command::new(exe);
    cmd.env("HTLCGATE_BENCH_ROLE", crate::floor::ROLE)
        .arg(&endpoint.rpcserver)
        .arg(&endpoint.tls_cert_path)
        .arg(&endpoint.macaroon_path);
    Interceptor::spawn("resume-all floor", cmd, log)
}

/// Starts the Python grpcio interceptor against `mock`.
pub fn spawn_python(
    python: &Path,
    stubs: &Path,
    dir: &Path,
    mock: &MockLnd,
) -> anyhow::Result<Interceptor> {
    let log = dir.join("python.log");
    let endpoint = mock.endpoint();
    let mut cmd = Command::new(python);
    cmd.arg(common::repo().join("benches/python/interceptor.py"))
        .arg("--stubs")
        .arg(stubs)
        .arg("--rpcserver")
        .arg(&endpoint.rpcserver)
        .arg("--tlscert")
        .arg(&endpoint.tls_cert_path)
        .arg("--macaroon")
        .arg(&endpoint.macaroon_path);
    Interceptor::spawn("python grpcio interceptor", cmd, log)
}

/// Starts `htlcgate run` with `plugins` against a fresh mock, waits until it is
/// connected, and returns the time that took plus the running pieces.
pub async fn start_daemon(
    dir: &Path,
    plugins: Vec<PluginEntry>,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<(Duration, MockLnd, Interceptor)> {
    std::fs::create_dir_all(dir)?;
    let mock = MockLnd::start(MockOptions::new(dir.join("lnd"))).await?;
    let journal = dir.join("htlcgate.journal");
    remove_journal(&journal);
    let started = Instant::now();
    let mut proc = spawn_htlcgate(
        dir,
        &mock,
        &DaemonOptions {
            plugins,
            cache_dir,
            journal,
            metrics: None,
        },
    )?;
    proc.wait_connected(&mock, Duration::from_secs(300)).await?;
    Ok((started.elapsed(), mock, proc))
}

/// A free loopback address for the daemon's `/metrics` listener.
pub fn free_local_addr() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// The cumulative buckets `(upper bound in seconds, count)` of histogram `name`
/// on the daemon's `/metrics` at `addr` (a plain HTTP/1.0 GET).
pub fn scrape_histogram(addr: std::net::SocketAddr, name: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body).context("reading /metrics")?;
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        out.push((le, count.trim().parse::<f64>()? as u64));
    }
    anyhow::ensure!(!out.is_empty(), "no {name} histogram on /metrics at {addr}");
    Ok(out)
}

/// The bucket bound (seconds) at or below which a fraction `p` of the
/// observations between two scrapes of one histogram fall.
pub fn histogram_quantile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> f64 {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, n.saturating_sub(was))
        })
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    let want = (total as f64 * p).ceil() as u64;
    delta
        .iter()
        .find(|d| d.1 >= want)
        .map_or(f64::INFINITY, |d| d.0)
}

/// Removes a journal file and its write-ahead logs (`.wal`, `.wal.old`): a fresh
/// journal beside an old log is refused as damaged.
pub fn remove_journal(journal: &Path) {
    let _ = std::fs::remove_file(journal);
    let wal = htlcgate::wal::path_for(journal);
    let _ = std::fs::remove_file(htlcgate::wal::old_path(&wal));
    let _ = std::fs::remove_file(wal);
}
