//! `max-htlc`: fails HTLCs larger than a maximum amount.
//!
//! An HTLC whose outgoing amount is above `max_msat` is failed with
//! TEMPORARY_CHANNEL_FAILURE, whether it is a forward or a payment to this node;
//! every other HTLC gets `next`, so later plugins still decide.
//!
//! Config:
//! - `max_msat` (required, >= 1): the largest outgoing amount let through, msat.
//!   0 refuses the load (it would fail every HTLC).
//!
//! ```toml
//! [[plugin]]
//! name = "max-htlc"
//! path = "target/wasm-plugins/max-htlc.wasm"
//! config = { max_msat = "100000000" }
//! ```

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// The configured maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxHtlc {
    /// Largest outgoing amount that gets `next`, msat.
    max_msat: u64,
}

impl MaxHtlc {
    /// True when `outgoing_msat` is within the maximum.
    pub fn allows(&self, outgoing_msat: u64) -> bool {
        outgoing_msat <= self.max_msat
    }
}

impl Plugin for MaxHtlc {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["max_msat"])?;
        let max_msat = config.require("max_msat")?;
        if max_msat == 0 {
            return Err("config key `max_msat` is 0, so every HTLC would fail; set it to the largest outgoing amount to let through, in msat (to fail every HTLC, use fixed-verdict with verdict = \"fail\")".into());
        }
        Ok(MaxHtlc { max_msat })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let outgoing = htlc.outgoing_amount_msat();
        if self.allows(outgoing) {
            return Verdict::next();
        }
        htlcgate_sdk::debug!(
            "{}: {} msat out is above max_msat {}",
            htlc.circuit_key(),
            outgoing,
            self.max_msat
        );
        // Failing back is always safe for funds: the sender gets the HTLC back.
        Verdict::fail_temporary()
    }
}

export_plugin!(MaxHtlc);

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(max_msat: u64, outgoing: u64) -> Verdict {
        let htlc = Htlc::builder()
            .amounts_msat(outgoing.saturating_add(1_000), outgoing)
            .build();
        MaxHtlc { max_msat }.decide(&htlc)
    }

    #[test]
    fn amount_at_the_maximum_passes_and_one_more_fails() {
        assert_eq!(decide(1_000_000, 1_000_000), Verdict::next());
        assert_eq!(decide(1_000_000, 1_000_001), Verdict::fail_temporary());
        assert_eq!(decide(1_000_000, 999_999), Verdict::next());
    }

    #[test]
    fn extreme_amounts() {
        assert_eq!(decide(0, 0), Verdict::next());
        assert_eq!(decide(0, 1), Verdict::fail_temporary());
        assert_eq!(decide(1, 1), Verdict::next());
        assert_eq!(decide(u64::MAX, u64::MAX), Verdict::next());
        assert_eq!(decide(u64::MAX - 1, u64::MAX), Verdict::fail_temporary());
        assert_eq!(decide(0, u64::MAX), Verdict::fail_temporary());
    }

    #[test]
    fn payments_to_this_node_are_limited_too() {
        let receive = Htlc::builder()
            .amounts_msat(2_000, 2_000)
            .final_hop()
            .build();
        assert_eq!(
            MaxHtlc { max_msat: 1_000 }.decide(&receive),
            Verdict::fail_temporary()
        );
    }

    #[test]
    fn init_refuses_max_msat_0() {
        let err = MaxHtlc::init(&Config::from_pairs([("max_msat", "0")])).unwrap_err();
        assert!(err.contains("`max_msat`"), "{err}");
        assert!(err.contains("every HTLC would fail"), "{err}");
    }

    #[test]
    fn init_requires_max_msat() {
        assert_eq!(
            MaxHtlc::init(&Config::default()),
            Err("config key `max_msat` is required: set it to an unsigned integer".into())
        );
        let config = Config::from_pairs([("max_msat", "5000")]);
        assert_eq!(MaxHtlc::init(&config), Ok(MaxHtlc { max_msat: 5_000 }));
        let bad = Config::from_pairs([("max_msat", "5k")]);
        assert_eq!(
            MaxHtlc::init(&bad),
            Err("config key `max_msat`: expected an unsigned integer, got `5k`".into())
        );
    }
}
