//! How htlcgate names an HTLC and a channel in logs and maps: the circuit key
//! (`chan:htlc`) and the short channel id (`BLOCKxTXxOUT`).
//!
//! LND keys every intercepted HTLC by its incoming circuit key; the payment hash is not
//! unique (MPP parts and probes share it), so everything in htlcgate is keyed by
//! [`CircuitKey`].

use std::fmt;

/// The incoming channel and HTLC index that identify one HTLC at this node
/// (LND's `routerrpc.CircuitKey`). A replayed HTLC has the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitKey {
    /// Short channel id of the incoming channel.
    pub chan_id: u64,
    /// Index of the HTLC within the incoming channel.
    pub htlc_id: u64,
}

impl fmt::Display for CircuitKey {
    /// `chan:htlc` with the numeric channel id, the form used in every log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.chan_id, self.htlc_id)
    }
}

/// A short channel id: block height (3 bytes) | tx index (3 bytes) | output (2 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scid(pub u64);

impl Scid {
    /// Block height of the funding transaction.
    pub fn block(self) -> u64 {
        self.0 >> 40
    }
    /// Index of the funding transaction within its block.
    pub fn tx_index(self) -> u64 {
        (self.0 >> 16) & 0xFF_FFFF
    }
    /// Output index of the funding output.
    pub fn output(self) -> u64 {
        self.0 & 0xFFFF
    }
}

impl fmt::Display for Scid {
    /// `BLOCKxTXxOUT`, as LND shows it (for example `800000x1x0`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.block(), self.tx_index(), self.output())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scid_is_shown_as_block_tx_out() {
        let scid = Scid((800_000u64 << 40) | (1 << 16));
        assert_eq!(scid.to_string(), "800000x1x0");
        assert_eq!(Scid(u64::MAX).to_string(), "16777215x16777215x65535");
        assert_eq!(Scid(0).to_string(), "0x0x0");
    }

    #[test]
    fn circuit_key_is_shown_as_chan_colon_htlc() {
        let key = CircuitKey {
            chan_id: 123,
            htlc_id: 7,
        };
        assert_eq!(key.to_string(), "123:7");
    }
}
