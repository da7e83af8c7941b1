//! `fixed-verdict`: answers every HTLC with the same configured verdict.
//!
//! For tests and the demo: it makes the chain's behaviour predictable and can
//! send verdicts the host must check (any preimage, any wire record key), so it
//! validates only what it needs to build the verdict.
//!
//! Config:
//! - `verdict` (required): `next`, `resume`, `fail`, `settle-config` or
//!   `resume-modified`.
//! - for `fail`: `failure_code` (optional): `temporary-channel-failure`
//!   (default), `invalid-onion-hmac`, `invalid-onion-key` or
//!   `invalid-onion-version`.
//! - for `settle-config`: `preimage` (required), hex. Sent as given, whatever
//!   its length, so a test can prove the host refuses a bad one.
//! - for `resume-modified`: `out_amount_msat`, `in_amount_msat` (optional),
//!   `record_key` and `record_value_hex` (optional, together): one wire record.
//!
//! Keys that do not belong to the chosen verdict refuse the load, so a typo in
//! `verdict` cannot silently drop the settings meant for it.
//!
//! ```toml
//! [[plugin]]
//! name = "always-resume"
//! path = "target/wasm-plugins/fixed-verdict.wasm"
//! config = { verdict = "resume" }
//! ```

use htlcgate_sdk::{export_plugin, Config, FailureCode, Htlc, Plugin, Verdict};

/// The verdict every HTLC gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedVerdict {
    /// Cloned for each HTLC.
    verdict: Verdict,
}

/// Reads `failure_code`; TEMPORARY_CHANNEL_FAILURE when absent.
fn failure_code(config: &Config) -> Result<FailureCode, String> {
    match config.get("failure_code").map(str::trim) {
        None | Some("temporary-channel-failure") => Ok(FailureCode::TemporaryChannelFailure),
        Some("invalid-onion-hmac") => Ok(FailureCode::InvalidOnionHmac),
        Some("invalid-onion-key") => Ok(FailureCode::InvalidOnionKey),
        Some("invalid-onion-version") => Ok(FailureCode::InvalidOnionVersion),
        Some(other) => Err(format!(
            "config key `failure_code`: expected temporary-channel-failure, invalid-onion-hmac, \
             invalid-onion-key or invalid-onion-version, got `{other}`"
        )),
    }
}

/// Reads the settings of `resume-modified`.
fn modification(config: &Config) -> Result<Verdict, String> {
    let mut modified = Verdict::resume_modified();
    if let Some(msat) = config.parse("out_amount_msat")? {
        modified = modified.out_amount_msat(msat);
    }
    if let Some(msat) = config.parse("in_amount_msat")? {
        modified = modified.in_amount_msat(msat);
    }
    match (
        config.parse::<u64>("record_key")?,
        config.hex("record_value_hex")?,
    ) {
        (Some(key), Some(value)) => modified = modified.wire_record(key, value),
        (None, None) => {}
        (Some(_), None) => {
            return Err(
                "config key `record_key` needs `record_value_hex` (hex bytes, may be empty)".into(),
            )
        }
        (None, Some(_)) => return Err("config key `record_value_hex` needs `record_key`".into()),
    }
    Ok(modified.into())
}

impl Plugin for FixedVerdict {
    fn init(config: &Config) -> Result<Self, String> {
        let name: String = config.require("verdict")?;
        let (verdict, keys): (Verdict, &[&str]) = match name.as_str() {
            "next" => (Verdict::next(), &[]),
            "resume" => (Verdict::resume(), &[]),
            "fail" => (Verdict::fail(failure_code(config)?), &["failure_code"]),
            "settle-config" => {
                let preimage = config
                    .hex("preimage")?
                    .ok_or("config key `preimage` is required with verdict `settle-config`: set it to the hex preimage")?;
                (Verdict::settle_bytes(preimage), &["preimage"])
            }
            "resume-modified" => (
                modification(config)?,
                &["out_amount_msat", "in_amount_msat", "record_key", "record_value_hex"],
            ),
            other => {
                return Err(format!(
                    "config key `verdict`: expected next, resume, fail, settle-config or resume-modified, got `{other}`"
                ))
            }
        };
        let mut known = vec!["verdict"];
        known.extend_from_slice(keys);
        config.deny_unknown(&known)?;
        Ok(FixedVerdict { verdict })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        self.verdict.clone()
    }
}

export_plugin!(FixedVerdict);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(pairs: &[(&str, &str)]) -> Result<Verdict, String> {
        FixedVerdict::init(&Config::from_pairs(pairs.iter().copied())).map(|p| p.verdict)
    }

    #[test]
    fn simple_verdicts() {
        assert_eq!(init(&[("verdict", "next")]), Ok(Verdict::next()));
        assert_eq!(init(&[("verdict", "resume")]), Ok(Verdict::resume()));
        assert_eq!(init(&[("verdict", "fail")]), Ok(Verdict::fail_temporary()));
        assert_eq!(
            init(&[("verdict", "fail"), ("failure_code", "invalid-onion-key")]),
            Ok(Verdict::fail(FailureCode::InvalidOnionKey))
        );
    }

    #[test]
    fn settle_sends_the_configured_bytes() {
        assert_eq!(
            init(&[("verdict", "settle-config"), ("preimage", &"ab".repeat(32))]),
            Ok(Verdict::settle([0xab; 32]))
        );
        // Not 32 bytes: sent anyway, for the host to refuse.
        assert_eq!(
            init(&[("verdict", "settle-config"), ("preimage", "00")]),
            Ok(Verdict::settle_bytes(vec![0]))
        );
        assert!(init(&[("verdict", "settle-config")])
            .unwrap_err()
            .contains("`preimage` is required"));
        assert!(init(&[("verdict", "settle-config"), ("preimage", "xyz")])
            .unwrap_err()
            .contains("config key `preimage`"));
    }

    #[test]
    fn resume_modified_reads_amounts_and_record() {
        assert_eq!(
            init(&[
                ("verdict", "resume-modified"),
                ("out_amount_msat", "999"),
                ("record_key", "65537"),
                ("record_value_hex", "beef"),
            ]),
            Ok(Verdict::resume_modified()
                .out_amount_msat(999)
                .wire_record(65_537, vec![0xbe, 0xef])
                .into())
        );
        assert_eq!(
            init(&[("verdict", "resume-modified")]),
            Ok(Verdict::resume_modified().into())
        );
        assert!(
            init(&[("verdict", "resume-modified"), ("record_key", "65537")])
                .unwrap_err()
                .contains("needs `record_value_hex`")
        );
    }

    #[test]
    fn unknown_verdict_or_stray_key_refuses_init() {
        assert_eq!(
            init(&[("verdict", "settle")]),
            Err("config key `verdict`: expected next, resume, fail, settle-config or resume-modified, got `settle`".into())
        );
        assert!(init(&[]).unwrap_err().contains("`verdict` is required"));
        assert!(init(&[("verdict", "resume"), ("preimage", "00")])
            .unwrap_err()
            .contains("`preimage` is not known"));
        assert!(
            init(&[("verdict", "fail"), ("failure_code", "fee-insufficient")])
                .unwrap_err()
                .contains("got `fee-insufficient`")
        );
    }

    #[test]
    fn every_htlc_gets_the_same_verdict() {
        let mut plugin = FixedVerdict {
            verdict: Verdict::resume(),
        };
        for amount in [0, 1, u64::MAX] {
            let htlc = Htlc::builder().amounts_msat(amount, amount).build();
            assert_eq!(plugin.decide(&htlc), Verdict::resume());
        }
    }
}
