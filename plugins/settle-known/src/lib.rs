//! `settle-known`: settles HTLCs whose preimage it was given, at this node.
//!
//! For each configured preimage it computes the payment hash (sha256) once at
//! `init`. An HTLC with one of those payment hashes is settled here with the
//! matching preimage: this node takes the incoming HTLC and never forwards it
//! (the next hop's invoice stays unpaid). Every other HTLC gets `next`, so
//! later plugins of the chain decide it.
//!
//! Used by the regtest proof (`tests/regtest/run`) to show a settle at the
//! forwarding node; in production it is a building block for a node that holds
//! preimages itself (e.g. a swap or an invoice it fronts for another node).
//!
//! Config:
//! - `preimage` (required): hex of one or more 32-byte preimages,
//!   comma-separated.
//!
//! ```toml
//! [[plugin]]
//! name = "settle-known"
//! path = "target/wasm-plugins/settle-known.wasm"
//! config = { preimage = "0101010101010101010101010101010101010101010101010101010101010101" }
//! ```

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};
use sha2::{Digest, Sha256};

/// The preimages this node may settle with, keyed by their payment hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleKnown {
    /// (payment hash, preimage) pairs; a handful, so a linear scan.
    known: Vec<([u8; 32], [u8; 32])>,
}

/// sha256 of `preimage`: the payment hash it unlocks.
pub fn payment_hash(preimage: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(preimage).into()
}

/// Decodes one hex preimage of exactly 32 bytes.
fn parse_preimage(entry: &str) -> Result<[u8; 32], String> {
    let bytes = Config::from_pairs([("preimage", entry)])
        .hex("preimage")?
        .unwrap_or_default();
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "config key `preimage`: each preimage must be 32 bytes (64 hex digits), got {} bytes in `{entry}`",
            bytes.len()
        )
    })
}

impl Plugin for SettleKnown {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["preimage"])?;
        let list: String = config.require("preimage")?;
        let known = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| parse_preimage(entry).map(|p| (payment_hash(&p), p)))
            .collect::<Result<Vec<_>, String>>()?;
        if known.is_empty() {
            return Err("config key `preimage`: give at least one 32-byte hex preimage".into());
        }
        Ok(SettleKnown { known })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        match self
            .known
            .iter()
            .find(|(hash, _)| hash.as_slice() == htlc.payment_hash())
        {
            Some((_, preimage)) => {
                htlcgate_sdk::info!("{}: settling a known payment hash here", htlc.circuit_key());
                Verdict::settle(*preimage)
            }
            None => Verdict::next(),
        }
    }
}

export_plugin!(SettleKnown);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(preimage: &str) -> Result<SettleKnown, String> {
        SettleKnown::init(&Config::from_pairs([("preimage", preimage)]))
    }

    fn htlc_with_hash(hash: [u8; 32]) -> Htlc {
        Htlc::builder()
            .payment_hash(hash)
            .amounts_msat(1_001_000, 1_000_000)
            .build()
    }

    #[test]
    fn settles_only_the_known_hash() {
        let preimage = [7u8; 32];
        let mut plugin = init(&"07".repeat(32)).unwrap();
        assert_eq!(
            plugin.decide(&htlc_with_hash(payment_hash(&preimage))),
            Verdict::settle(preimage)
        );
        assert_eq!(plugin.decide(&htlc_with_hash([0; 32])), Verdict::next());
        // The preimage itself is not its hash.
        assert_eq!(plugin.decide(&htlc_with_hash(preimage)), Verdict::next());
    }

    #[test]
    fn several_preimages() {
        let mut plugin = init(&format!("{}, {}", "01".repeat(32), "02".repeat(32))).unwrap();
        for byte in [1u8, 2] {
            let preimage = [byte; 32];
            assert_eq!(
                plugin.decide(&htlc_with_hash(payment_hash(&preimage))),
                Verdict::settle(preimage)
            );
        }
        assert_eq!(
            plugin.decide(&htlc_with_hash(payment_hash(&[3; 32]))),
            Verdict::next()
        );
    }

    #[test]
    fn known_sha256_vector() {
        // sha256 of 32 zero bytes.
        let expected = "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925";
        let hash = payment_hash(&[0; 32]);
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn bad_config_refuses_init() {
        assert!(SettleKnown::init(&Config::from_pairs::<&str, &str>([]))
            .unwrap_err()
            .contains("`preimage` is required"));
        assert!(init("abcd").unwrap_err().contains("must be 32 bytes"));
        assert!(init("zz").unwrap_err().contains("expected hex bytes"));
        assert!(init(" , ").unwrap_err().contains("at least one"));
        assert!(SettleKnown::init(&Config::from_pairs([
            ("preimage", "00".repeat(32).as_str()),
            ("extra", "1"),
        ]))
        .unwrap_err()
        .contains("`extra` is not known"));
    }
}
