//! `hold-fixture` (a test fixture): holds each HTLC `holds` times for `hold_ms`
//! each, then answers `next`; counts its `decide` calls and the outcomes it is
//! told in its key-value namespace (grant `kv`), as decimal strings:
//! `decides`, `outcomes`, and `outcome:<kind>` per kind (`forwarded`, `settled`,
//! `forward-failed`, `link-failed`, `final`). The host's tests read the counters
//! to see how often it was asked and what it was told.
//!
//! Config: `holds` (default 1; `4294967295` holds until the host's cap),
//! `hold_ms` (default 20).

use htlcgate_sdk::{export_plugin, kv, Config, Htlc, Outcome, OutcomeKind, Plugin, Verdict};

/// The fixture's settings.
pub struct HoldFixture {
    /// Holds before passing.
    holds: u32,
    /// Length of each hold, ms.
    hold_ms: u32,
}

/// Adds one to the decimal counter `key`. A refused write is ignored: the
/// counters only inform tests.
fn bump(key: &str) {
    let n = kv::get(key.as_bytes())
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = kv::set(key.as_bytes(), (n + 1).to_string().as_bytes());
}

impl Plugin for HoldFixture {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["holds", "hold_ms"])?;
        Ok(HoldFixture {
            holds: config.parse_or("holds", 1)?,
            hold_ms: config.parse_or("hold_ms", 20)?,
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        bump("decides");
        if htlc.attempt() <= self.holds {
            Verdict::hold_ms(self.hold_ms)
        } else {
            Verdict::next()
        }
    }

    fn outcome(&mut self, outcome: &Outcome) {
        bump("outcomes");
        let kind = match outcome.kind {
            OutcomeKind::Forwarded(_) => "forwarded",
            OutcomeKind::Settled(_) => "settled",
            OutcomeKind::ForwardFailed => "forward-failed",
            OutcomeKind::LinkFailed { .. } => "link-failed",
            OutcomeKind::Final { .. } => "final",
        };
        bump(&format!("outcome:{kind}"));
    }
}

export_plugin!(HoldFixture);
