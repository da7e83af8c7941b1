//! Fault fixture `huge-records`: answers resume-modified with a huge list of
//! outgoing wire records.
//!
//! Every call builds `count` records with distinct custom-range keys
//! (`key_start`, `key_start + 1`, ...) and values of `value_bytes` bytes, and
//! returns them as RESUME_MODIFIED. Each record is valid on its own (key >=
//! 65536, no duplicates): only the size is hostile. Tests load it to prove that
//! the host never sends LND a response it would reject or could not forward, and
//! that a small list still goes out. Not a policy: do not put it in a real chain.
//!
//! Config:
//! - `count` (optional, default 100000): records per answer.
//! - `value_bytes` (optional, default 0): bytes in each record's value.
//! - `key_start` (optional, default 65536): the first key.

use htlcgate_sdk::{export_plugin, Config, CustomRecord, Htlc, Modification, Plugin, Verdict};

/// Answers with `count` records of `value_bytes` bytes.
pub struct HugeRecords {
    /// Records per answer.
    count: u64,
    /// Bytes per value.
    value_bytes: usize,
    /// The first key.
    key_start: u64,
}

impl Plugin for HugeRecords {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["count", "value_bytes", "key_start"])?;
        let count = config.parse_or("count", 100_000u64)?;
        let value_bytes = config.parse_or("value_bytes", 0usize)?;
        let key_start = config.parse_or("key_start", 65_536u64)?;
        if key_start.checked_add(count).is_none() {
            return Err("config keys `key_start` + `count` overflow u64".into());
        }
        Ok(HugeRecords {
            count,
            value_bytes,
            key_start,
        })
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        let records = (0..self.count)
            .map(|i| CustomRecord {
                key: self.key_start + i,
                value: vec![0xAB; self.value_bytes],
            })
            .collect();
        Verdict::ResumeModified(Modification {
            in_amount_msat: None,
            out_amount_msat: None,
            out_wire_custom_records: records,
        })
    }
}

export_plugin!(HugeRecords);
