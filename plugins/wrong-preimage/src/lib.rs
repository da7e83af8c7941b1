//! Fault fixture `wrong-preimage`: settles every HTLC with a preimage that does
//! not match its payment hash.
//!
//! It makes the classic mistake of sending the payment hash itself as the
//! preimage (32 bytes, whose sha256 is never the hash; 32 zero bytes if the hash
//! is not 32 bytes long). LND would accept such a settle and the forwarded
//! amount would be lost, so tests load this fixture to prove the host checks
//! sha256(preimage) == payment hash and treats a mismatch as a plugin fault. Not
//! a policy: do not put it in a real chain.
//!
//! Config: none.

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Settles with the wrong bytes.
pub struct WrongPreimage;

impl Plugin for WrongPreimage {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(WrongPreimage)
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        let preimage = <[u8; 32]>::try_from(htlc.payment_hash()).unwrap_or([0; 32]);
        Verdict::settle(preimage)
    }
}

export_plugin!(WrongPreimage);
