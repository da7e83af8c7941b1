//! The `htlcgate` binary end to end: bad configurations refused before any
//! connection with a clear message; `run` against the mock LND, stopped by SIGTERM
//! after answering what it holds.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::forward;
use htlcgate::lnd::proto::routerrpc::ResolveHoldForwardAction;
use htlcgate::mock_lnd::{MockLnd, MockOptions};

fn htlcgate(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_htlcgate"));
    c.arg("--config").arg(config).env("RUST_LOG", "info");
    c
}

/// Runs `htlcgate run` on a config text; returns (success, stderr).
fn run_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = common::plugins_dir();
    let text = text.replace("PLUGINS", plugins.to_str().unwrap());
    let cfg = dir.path().join("htlcgate.toml");
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    let out = htlcgate(&cfg)
        // Nothing listens there: a config error must come before any connection.
        .args(["--lnd.rpcserver", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(text: &str, needles: &[&str]) {
    let (ok, err) = run_config(text);
    assert!(!ok, "accepted: {text}");
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
    assert!(
        !err.contains("TLS connection"),
        "connected before refusing: {err}"
    );
}

#[test]
fn a_missing_config_file_names_the_file_and_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["--config", "/nonexistent/htlcgate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/htlcgate.toml") && err.contains("--config"),
        "{err}"
    );
}

/// Found in review: `htlcgate --config X run` parsed `--config X` as the flags
/// of a bare `htlcgate`, then ran `run` with its own defaults: it read
/// ./htlcgate.toml (maybe another node's config) without a word.
#[test]
fn run_flags_before_the_run_subcommand_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .current_dir(dir.path())
        .args(["--config", "/nonexistent/x.toml", "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--config") && err.contains("run") && !err.contains("htlcgate.toml"),
        "{err}"
    );
}

#[test]
fn bad_configurations_are_refused_with_the_key_and_the_fix() {
    refused(
        "[chain]\ndefault_verdict = \"settle\"\n",
        &["default_verdict", "resume"],
    );
    refused("[lnd]\nrpcsrver = \"x\"\n", &["rpcsrver"]);
    refused(
        "[[plugin]]\nname = \"a\"\npath = \"missing.wasm\"\n",
        &["plugin[0] (a).path", "not found", "scripts/build-plugins"],
    );
    refused(
        "[[plugin]]\nname = \"a\"\npath = \"PLUGINS/fee-floor.wasm\"\n[[plugin]]\nname = \"a\"\npath = \"PLUGINS/fee-floor.wasm\"\n",
        &["duplicate plugin name `a`"],
    );
    refused(
        "[[plugin]]\nname = \"junk\"\npath = \"junk.wasm\"\n",
        &[
            "plugin `junk`",
            "junk.wasm",
            "not a valid WebAssembly component",
        ],
    );
    refused(
        "[[plugin]]\nname = \"max\"\npath = \"PLUGINS/max-htlc.wasm\"\n",
        &["plugin `max`", "init refused", "max_msat"],
    );
    refused(
        "[[plugin]]\nname = \"fee\"\npath = \"PLUGINS/fee-floor.wasm\"\nfuel = 0\n",
        &["plugin[0] (fee).fuel", "greater than 0"],
    );
    refused(
        "[[plugin]]\nname = \"fee\"\npath = \"PLUGINS/fee-floor.wasm\"\non_fault = \"panic\"\n",
        &["on_fault", "panic"],
    );
}

/// Starts `htlcgate run` against `mock` with the config `[lnd]` to it plus
/// `plugins` (TOML), written in `dir`; its log (stdout) is dropped.
fn spawn_run(mock: &MockLnd, dir: &Path, plugins: &str) -> tokio::process::Child {
    run_command(mock, dir, plugins).spawn().unwrap()
}

/// The command of [`spawn_run`].
fn run_command(mock: &MockLnd, dir: &Path, plugins: &str) -> tokio::process::Command {
    let cfg = dir.join("htlcgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[lnd]\nrpcserver = \"{}\"\ntlscertpath = \"{}\"\nmacaroonpath = \"{}\"\n\n{plugins}",
            mock.addr(),
            mock.cert_path().display(),
            mock.macaroon_path().display(),
        ),
    )
    .unwrap();
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"));
    c.arg("--config")
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_decides_htlcs_from_lnd_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let plugin = common::plugins_dir().join("fee-floor.wasm");
    let mut child = run_command(
        &mock,
        dir.path(),
        &format!(
            "[[plugin]]\nname = \"fee-floor\"\npath = \"{}\"\n[plugin.config]\nbase_msat = 1000\n",
            plugin.display()
        ),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // Its log, read as it comes (a full pipe would stop it).
    let mut out = child.stdout.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text)
            .await
            .unwrap();
        text
    });
    mock.wait_connected(Duration::from_secs(20)).await.unwrap();
    mock.send_htlc(forward(1, 100_000, 2_000));
    mock.send_htlc(forward(2, 100_000, 10));
    mock.wait_resolved(2, Duration::from_secs(10))
        .await
        .unwrap();
    let actions: std::collections::HashMap<_, _> = mock
        .resolutions()
        .into_iter()
        .map(|r| (r.key.1, r.response.action()))
        .collect();
    assert_eq!(actions[&1], ResolveHoldForwardAction::Resume);
    assert_eq!(actions[&2], ResolveHoldForwardAction::Fail);

    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(mock.violations().is_empty());
    // The journal's log moved into its file: what a downgrade's steps wait for.
    let log = log.await.unwrap();
    assert!(
        log.contains("every record is in the journal file (a clean stop)"),
        "{log}"
    );
}

/// After SIGTERM, htlcgate stops taking HTLCs but still answers those it is
/// deciding; if LND fails one of them itself meanwhile (its auto_fail_height),
/// htlcgate must still hear of it and not answer it: "forward does not exist"
/// would end the stream and lose the answers queued after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_lnd_fails_itself_during_the_shutdown_drain_is_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.path().join("lnd")))
        .await
        .unwrap();
    let plugin = common::plugins_dir().join("spin-forever.wasm");
    let mut child = spawn_run(
        &mock,
        dir.path(),
        &format!(
            "[[plugin]]\nname = \"slow\"\npath = \"{}\"\nfuel = 1000000000000\ntimeout_ms = 1500\non_fault = \"resume\"\n",
            plugin.display()
        ),
    );
    mock.wait_connected(Duration::from_secs(20)).await.unwrap();
    let subscribed = tokio::time::timeout(Duration::from_secs(20), async {
        while mock.node().htlc_subscribers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        subscribed.is_ok(),
        "htlcgate never subscribed to HTLC events"
    );
    let mut req = forward(1, 100_000, 2_000);
    req.auto_fail_height = (mock.node().height() + 1) as i32;
    mock.send_htlc(req);
    // The plugin spins for 1.5 s; stop htlcgate while it decides.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.mine(1), vec![(1, 1)], "LND failed it itself");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        mock.resolutions().is_empty(),
        "answered an HTLC LND had failed: {:?}",
        mock.resolutions()
    );
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
}
