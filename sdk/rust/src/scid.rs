//! Short channel ids: the u64 LND uses for a channel, shown as `BLOCKxTXxOUT`.
//!
//! A short channel id packs where the channel's funding output is on chain:
//! block height (3 bytes) | transaction index in the block (3 bytes) | output
//! index (2 bytes). Config files and logs use the human form (`800000x1x0`), the
//! interceptor stream uses the number; [`Scid`] converts between the two.

use core::fmt;
use core::str::FromStr;

/// A short channel id (LND's `chan_id`, BOLT 7's `short_channel_id`).
///
/// `Display` writes `BLOCKxTXxOUT`; `FromStr` reads that form or the plain
/// decimal u64 that `lncli` prints as `chan_id`.
///
/// ```
/// use htlcgate_sdk::Scid;
/// let scid: Scid = "800000x1x0".parse().unwrap();
/// assert_eq!(scid.block_height(), 800_000);
/// assert_eq!(scid, Scid(879_609_302_220_865_536));
/// assert_eq!(scid.to_string(), "800000x1x0");
/// assert_eq!("879609302220865536".parse::<Scid>().unwrap(), scid);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Scid(pub u64);

impl Scid {
    /// The id LND puts in `outgoing_requested_chan_id` when the HTLC is for this
    /// node (and no node id is set).
    pub const FINAL_HOP: Scid = Scid(0);

    /// The all-ones id LND puts in `outgoing_requested_chan_id` when the sender
    /// asked for a node rather than a channel (blinded, node-addressed forwards).
    pub const NODE_ADDRESSED: Scid = Scid(u64::MAX);

    /// Largest block height or transaction index that fits (3 bytes).
    const MAX_24: u32 = (1 << 24) - 1;

    /// Builds an id from its parts; `None` when `block_height` or `tx_index`
    /// does not fit in 3 bytes.
    pub const fn from_parts(block_height: u32, tx_index: u32, output_index: u16) -> Option<Scid> {
        if block_height > Self::MAX_24 || tx_index > Self::MAX_24 {
            return None;
        }
        Some(Scid(
            (block_height as u64) << 40 | (tx_index as u64) << 16 | output_index as u64,
        ))
    }

    /// The block height of the funding transaction (top 3 bytes).
    pub const fn block_height(self) -> u32 {
        (self.0 >> 40) as u32
    }

    /// The index of the funding transaction in its block (middle 3 bytes).
    pub const fn tx_index(self) -> u32 {
        ((self.0 >> 16) & 0xFF_FFFF) as u32
    }

    /// The index of the funding output in its transaction (low 2 bytes).
    pub const fn output_index(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }

    /// The id as LND's numeric `chan_id`.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for Scid {
    fn from(id: u64) -> Scid {
        Scid(id)
    }
}

impl From<Scid> for u64 {
    fn from(scid: Scid) -> u64 {
        scid.0
    }
}

impl fmt::Display for Scid {
    /// Writes `BLOCKxTXxOUT`, the form LND and explorers show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{}x{}",
            self.block_height(),
            self.tx_index(),
            self.output_index()
        )
    }
}

impl fmt::Debug for Scid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scid({self})")
    }
}

/// Why a string is not a short channel id; its `Display` is the reason as a
/// phrase ("block height does not fit in 3 bytes (max 16777215)").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseScidError {
    /// What is wrong, as a phrase.
    reason: &'static str,
}

impl fmt::Display for ParseScidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseScidError {}

/// Parses a run of ASCII digits (no sign, no whitespace) into a u64.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Scid {
    type Err = ParseScidError;

    /// Accepts `BLOCKxTXxOUT` (block and tx index below 2^24, output below 2^16)
    /// or a decimal u64. No surrounding whitespace.
    fn from_str(s: &str) -> Result<Scid, ParseScidError> {
        let err = |reason| Err(ParseScidError { reason });
        if !s.contains('x') {
            return match parse_digits(s) {
                Some(id) => Ok(Scid(id)),
                None if s.is_empty() => err("empty channel id"),
                None if s.bytes().all(|b| b.is_ascii_digit()) => {
                    err("decimal channel id larger than 2^64 - 1")
                }
                None => err("neither BLOCKxTXxOUT nor a decimal channel id"),
            };
        }
        let mut parts = s.split('x');
        let (Some(block), Some(tx), Some(out), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return err("a BLOCKxTXxOUT id has exactly three parts");
        };
        let (Some(block), Some(tx), Some(out)) =
            (parse_digits(block), parse_digits(tx), parse_digits(out))
        else {
            return err("each part of BLOCKxTXxOUT must be a decimal number");
        };
        if block > u64::from(Self::MAX_24) {
            return err("block height does not fit in 3 bytes (max 16777215)");
        }
        if tx > u64::from(Self::MAX_24) {
            return err("transaction index does not fit in 3 bytes (max 16777215)");
        }
        let Ok(out) = u16::try_from(out) else {
            return err("output index does not fit in 2 bytes (max 65535)");
        };
        // Both fit in 3 bytes: checked above.
        Ok(Scid::from_parts(block as u32, tx as u32, out).expect("parts checked to fit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_block_tx_out() {
        let scid = Scid::from_parts(800_000, 1, 0).unwrap();
        assert_eq!(scid.0, 800_000u64 << 40 | 1 << 16);
        assert_eq!(scid.to_string(), "800000x1x0");
        assert_eq!(Scid(0).to_string(), "0x0x0");
        assert_eq!(Scid(u64::MAX).to_string(), "16777215x16777215x65535");
        assert_eq!(format!("{:?}", scid), "Scid(800000x1x0)");
    }

    #[test]
    fn splits_into_parts() {
        let scid = Scid(0x0C_35_00_00_02_A1_00_07);
        assert_eq!(scid.block_height(), 0x0C_35_00);
        assert_eq!(scid.tx_index(), 0x00_02_A1);
        assert_eq!(scid.output_index(), 7);
    }

    #[test]
    fn parses_both_forms_to_the_same_id() {
        let human: Scid = "800000x1x0".parse().unwrap();
        let decimal: Scid = "879609302220865536".parse().unwrap();
        assert_eq!(human, decimal);
        assert_eq!("0".parse::<Scid>().unwrap(), Scid(0));
        assert_eq!(
            "18446744073709551615".parse::<Scid>().unwrap(),
            Scid(u64::MAX)
        );
        assert_eq!(
            "16777215x16777215x65535".parse::<Scid>().unwrap(),
            Scid(u64::MAX)
        );
    }

    #[test]
    fn round_trips_through_display() {
        for id in [0, 1, 65_535, 65_536, 879_609_302_220_865_536, u64::MAX] {
            let scid = Scid(id);
            assert_eq!(scid.to_string().parse::<Scid>().unwrap(), scid);
            assert_eq!(id.to_string().parse::<Scid>().unwrap(), scid);
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "x",
            "800000x1",
            "800000x1x0x0",
            "800000xx0",
            "800000x1x",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x10",
            "abc",
            "800000x-1x0",
            "16777216x0x0",
            "0x16777216x0",
            "0x0x65536",
            "18446744073709551616",
            "800000:1:0",
        ] {
            assert!(bad.parse::<Scid>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn errors_say_what_was_expected() {
        let err = "16777216x0x0".parse::<Scid>().unwrap_err().to_string();
        assert_eq!(err, "block height does not fit in 3 bytes (max 16777215)");
        let err = "12x".parse::<Scid>().unwrap_err().to_string();
        assert_eq!(err, "a BLOCKxTXxOUT id has exactly three parts");
        let err = "chan".parse::<Scid>().unwrap_err().to_string();
        assert_eq!(err, "neither BLOCKxTXxOUT nor a decimal channel id");
    }

    #[test]
    fn from_parts_rejects_oversized_parts() {
        assert_eq!(Scid::from_parts(1 << 24, 0, 0), None);
        assert_eq!(Scid::from_parts(0, 1 << 24, 0), None);
        assert_eq!(
            Scid::from_parts((1 << 24) - 1, (1 << 24) - 1, u16::MAX),
            Some(Scid(u64::MAX))
        );
    }
}
