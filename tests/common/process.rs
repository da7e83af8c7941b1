//! The real `htlcgate` binary as a child process, for tests that kill it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Starts `htlcgate --config CFG` with `RUST_LOG=level`, stdout and stderr into
/// `log`; killed when dropped.
pub fn spawn(cfg: &Path, log: &Path, level: &str) -> tokio::process::Child {
    let file = std::fs::File::create(log).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .arg("--config")
        .arg(cfg)
        .env("RUST_LOG", level)
        // Logs go to stdout (or stderr for some commands): keep both.
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The log's text without ANSI colour codes.
pub fn read_log(log: &Path) -> String {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until `log` (colour codes removed) contains `needle`; panics after 30 s
/// with the log.
pub async fn wait_for_line(log: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read_log(log);
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
