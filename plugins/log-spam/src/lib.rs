//! Fault fixture `log-spam`: floods the log in `decide`.
//!
//! Each call writes `lines` lines of `line_bytes` bytes (100 KB by default) through
//! the `log` import, through stdout (`println!`) and through stderr
//! (`eprintln!`), then answers `next`. With the defaults it never gets that far:
//! fuel or the deadline cuts it off. Tests load it to prove that the host's log
//! rate limit holds (the operator's log gets at most the burst, however much the
//! plugin writes), that the call still ends within its limits, and that the HTLC
//! is answered. Not a policy: do not put it in a real chain.
//!
//! Config:
//! - `lines` (optional, default 1000000): lines per channel per call.
//! - `line_bytes` (optional, default 102400): length of each line.
//! - `via` (optional, default `all`): `log`, `stdout`, `stderr` or `all`.

use htlcgate_sdk::{export_plugin, info, Config, Htlc, Plugin, Verdict};

/// Where the lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The `log` import only.
    Log,
    /// stdout only.
    Stdout,
    /// stderr only.
    Stderr,
    /// All three, one line each per iteration.
    All,
}

/// Writes `lines` long lines per call.
pub struct LogSpam {
    /// Lines per channel per call.
    lines: u64,
    /// The payload of every line, built once.
    line: String,
    /// Where the lines go.
    via: Via,
    /// Calls of `decide` on this instance, to tell the lines of calls apart.
    calls: u64,
}

impl Plugin for LogSpam {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["lines", "line_bytes", "via"])?;
        let lines = config.parse_or("lines", 1_000_000u64)?;
        let line_bytes = config.parse_or("line_bytes", 100 * 1024usize)?;
        let via = match config.get("via").map(str::trim) {
            None | Some("all") => Via::All,
            Some("log") => Via::Log,
            Some("stdout") => Via::Stdout,
            Some("stderr") => Via::Stderr,
            Some(other) => {
                return Err(format!(
                    "config key `via`: expected log, stdout, stderr or all, got `{other}`"
                ))
            }
        };
        Ok(LogSpam {
            lines,
            line: "x".repeat(line_bytes),
            via,
            calls: 0,
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        self.calls += 1;
        let key = htlc.circuit_key();
        for i in 0..self.lines {
            if matches!(self.via, Via::Log | Via::All) {
                info!("spam call {} line {i} ({key}): {}", self.calls, self.line);
            }
            if matches!(self.via, Via::Stdout | Via::All) {
                println!("spam stdout call {} line {i}: {}", self.calls, self.line);
            }
            if matches!(self.via, Via::Stderr | Via::All) {
                eprintln!("spam stderr call {} line {i}: {}", self.calls, self.line);
            }
        }
        Verdict::next()
    }
}

export_plugin!(LogSpam);
