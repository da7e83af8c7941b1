//! `fee-floor`: fails forwards that pay this node less than a minimum fee.
//!
//! The floor for a forward of `outgoing` msat is
//! `base_msat + ppm * outgoing / 1_000_000` (rounded down, like LND's own fee
//! schedule); a forward whose fee (incoming - outgoing) is below it is failed
//! with TEMPORARY_CHANNEL_FAILURE. Everything else, and every HTLC for this node
//! (final hop), gets `next`: this plugin only ever says no, so later plugins of
//! the chain still decide what passes.
//!
//! Config (both optional, default 0):
//! - `base_msat`: fixed part of the floor, msat.
//! - `ppm`: proportional part, parts per million of the outgoing amount.
//!
//! ```toml
//! [[plugin]]
//! name = "fee-floor"
//! path = "target/wasm-plugins/fee-floor.wasm"
//! config = { base_msat = "1000", ppm = "100" }
//! ```

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// The configured floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeFloor {
    /// Fixed part of the minimum fee, msat.
    base_msat: u64,
    /// Proportional part, parts per million of the outgoing amount.
    ppm: u64,
}

impl FeeFloor {
    /// The minimum fee for forwarding `outgoing_msat`, in msat.
    ///
    /// In u128: `ppm * outgoing` is below 2^128 and adding `base_msat` after the
    /// division cannot overflow either, so every u64 config and amount is exact.
    pub fn floor_msat(&self, outgoing_msat: u64) -> u128 {
        u128::from(self.base_msat) + u128::from(self.ppm) * u128::from(outgoing_msat) / 1_000_000
    }

    /// True when forwarding `outgoing_msat` for `incoming_msat` pays at least
    /// the floor. A negative fee (outgoing above incoming) never does.
    pub fn pays_enough(&self, incoming_msat: u64, outgoing_msat: u64) -> bool {
        match incoming_msat.checked_sub(outgoing_msat) {
            Some(fee) => u128::from(fee) >= self.floor_msat(outgoing_msat),
            None => false,
        }
    }
}

impl Plugin for FeeFloor {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["base_msat", "ppm"])?;
        Ok(FeeFloor {
            base_msat: config.parse_or("base_msat", 0)?,
            ppm: config.parse_or("ppm", 0)?,
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        // A payment to this node earns no forwarding fee: not ours to judge.
        if htlc.is_final_hop() {
            return Verdict::next();
        }
        let (incoming, outgoing) = (htlc.incoming_amount_msat(), htlc.outgoing_amount_msat());
        if self.pays_enough(incoming, outgoing) {
            return Verdict::next();
        }
        htlcgate_sdk::debug!(
            "{}: fee {} msat below floor {} msat for {} msat out",
            htlc.circuit_key(),
            htlc.fee_msat(),
            self.floor_msat(outgoing),
            outgoing
        );
        // Failing a forward is always safe for funds: the HTLC goes back to
        // the sender and this node only forgoes the (too small) fee.
        Verdict::fail_temporary()
    }
}

export_plugin!(FeeFloor);

#[cfg(test)]
mod tests {
    use super::*;
    use htlcgate_sdk::Scid;

    fn floor(base_msat: u64, ppm: u64) -> FeeFloor {
        FeeFloor { base_msat, ppm }
    }

    fn decide(plugin: &mut FeeFloor, incoming: u64, outgoing: u64) -> Verdict {
        plugin.decide(&Htlc::builder().amounts_msat(incoming, outgoing).build())
    }

    #[test]
    fn floor_is_base_plus_proportional_rounded_down() {
        let f = floor(1_000, 100);
        assert_eq!(f.floor_msat(0), 1_000);
        assert_eq!(f.floor_msat(1), 1_000);
        assert_eq!(f.floor_msat(9_999), 1_000);
        assert_eq!(f.floor_msat(10_000), 1_001);
        assert_eq!(f.floor_msat(1_000_000), 1_100);
    }

    #[test]
    fn floor_does_not_overflow_at_u64_max() {
        let f = floor(u64::MAX, u64::MAX);
        let expected =
            u128::from(u64::MAX) + u128::from(u64::MAX) * u128::from(u64::MAX) / 1_000_000;
        assert_eq!(f.floor_msat(u64::MAX), expected);
        // Floor for 0 out is exactly u64::MAX; for 1 out it is above any u64 fee.
        assert!(f.pays_enough(u64::MAX, 0));
        assert!(!f.pays_enough(u64::MAX, 1));
    }

    #[test]
    fn fee_exactly_at_the_floor_passes() {
        let mut f = floor(1_000, 100);
        // Floor for 1_000_000 out is 1_100.
        assert_eq!(decide(&mut f, 1_001_100, 1_000_000), Verdict::next());
        assert_eq!(
            decide(&mut f, 1_001_099, 1_000_000),
            Verdict::fail_temporary()
        );
    }

    #[test]
    fn zero_config_passes_zero_fee_and_fails_negative_fee() {
        let mut f = floor(0, 0);
        assert_eq!(decide(&mut f, 0, 0), Verdict::next());
        assert_eq!(decide(&mut f, 1, 1), Verdict::next());
        assert_eq!(decide(&mut f, 1, 0), Verdict::next());
        assert_eq!(decide(&mut f, 0, 1), Verdict::fail_temporary());
        assert_eq!(
            decide(&mut f, u64::MAX - 1, u64::MAX),
            Verdict::fail_temporary()
        );
    }

    #[test]
    fn extreme_amounts() {
        let mut f = floor(1, 0);
        assert_eq!(
            decide(&mut f, u64::MAX, u64::MAX),
            Verdict::fail_temporary()
        );
        assert_eq!(decide(&mut f, u64::MAX, u64::MAX - 1), Verdict::next());
        assert_eq!(decide(&mut f, u64::MAX, 0), Verdict::next());
        assert_eq!(decide(&mut f, 0, 0), Verdict::fail_temporary());
        assert_eq!(decide(&mut f, 1, 0), Verdict::next());
        // With 1 ppm and u64::MAX in, the largest outgoing amount that still
        // pays the floor leaves a fee exactly equal to it.
        let mut f = floor(0, 1);
        let out = 18_446_725_626_983_924_632;
        assert_eq!(f.floor_msat(out), 18_446_725_626_983);
        assert_eq!(u64::MAX - out, 18_446_725_626_983);
        assert_eq!(decide(&mut f, u64::MAX, out), Verdict::next());
        assert_eq!(decide(&mut f, u64::MAX, out + 1), Verdict::fail_temporary());
    }

    #[test]
    fn payments_to_this_node_get_next() {
        let mut f = floor(1_000_000, 1_000_000);
        let receive = Htlc::builder().amounts_msat(5, 5).final_hop().build();
        assert_eq!(f.decide(&receive), Verdict::next());
        // A node-addressed forward is still a forward.
        let blinded = Htlc::builder()
            .amounts_msat(5, 5)
            .outgoing_node_id([2; 33])
            .build();
        assert_eq!(f.decide(&blinded), Verdict::fail_temporary());
        let forward = Htlc::builder()
            .amounts_msat(5, 5)
            .outgoing_chan(Scid(7))
            .build();
        assert_eq!(f.decide(&forward), Verdict::fail_temporary());
    }

    #[test]
    fn init_reads_defaults_and_refuses_bad_values() {
        assert_eq!(FeeFloor::init(&Config::default()), Ok(floor(0, 0)));
        let config = Config::from_pairs([("base_msat", "1000"), ("ppm", "250")]);
        assert_eq!(FeeFloor::init(&config), Ok(floor(1_000, 250)));
        let bad = Config::from_pairs([("base_msat", "abc")]);
        assert_eq!(
            FeeFloor::init(&bad).unwrap_err(),
            "config key `base_msat`: expected an unsigned integer, got `abc`"
        );
        let typo = Config::from_pairs([("base_sat", "1")]);
        assert!(FeeFloor::init(&typo)
            .unwrap_err()
            .contains("`base_sat` is not known"));
    }
}
