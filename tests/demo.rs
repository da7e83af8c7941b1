//! `htlcgate demo` through the built binary: a count of zero is refused at once,
//! and the summary tells what happened to the broken plugin.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the demo starts a mock LND over TLS and loads five plugins.
const PATIENCE: Duration = Duration::from_secs(120);

/// Runs `htlcgate demo ARGS` with the built plugins, killing it after
/// [`PATIENCE`]: (success, stdout, stderr).
fn demo(args: &[&str]) -> (bool, String, String) {
    let plugins = common::plugins_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .arg("demo")
        .arg("--plugins")
        .arg(&plugins)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "htlcgate demo {args:?} still running after {PATIENCE:?}; stdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn a_count_of_zero_is_refused_with_the_way_out() {
    let (ok, _, err) = demo(&["--count", "0"]);
    assert!(!ok);
    assert!(err.contains("--count") && err.contains('1'), "{err}");
}

/// The summary's line for spin-forever.
fn spin_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.trim_start().starts_with("spin-forever:"))
        .unwrap_or_else(|| panic!("no spin-forever line: {out}"))
}

/// The summary's line for spin-forever (`on_fault = "skip"`, quarantined after 3
/// faults in a row) says what happened: with 2 HTLCs it faults at most twice and
/// is not quarantined; with 12, three faults quarantine it.
#[test]
fn the_summary_tells_whether_the_broken_plugin_was_quarantined() {
    let (ok, out, err) = demo(&["--count", "2"]);
    assert!(ok, "{out}\n{err}");
    let line = spin_line(&out);
    let faults: u32 = line
        .trim_start()
        .strip_prefix("spin-forever: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fault count: {line}"));
    assert!(faults <= 2, "{line}");
    assert!(line.contains("not quarantined"), "{line}");

    let (ok, out, err) = demo(&["--count", "12"]);
    assert!(ok, "{out}\n{err}");
    let line = spin_line(&out);
    assert!(line.contains("3 faults ("), "{line}");
    assert!(line.contains("then quarantined"), "{line}");
}
