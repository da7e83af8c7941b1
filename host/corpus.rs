//! `htlcgate corpus --count N [--seed S]`: realistic intercepted HTLCs as JSON lines
//! (the `htlc` field of the audit log format), deterministic for a seed, for
//! `htlcgate replay`, benchmarks and tests.
//!
//! The node has three dozen channels opened at realistic heights, each with its own
//! fee policy (base 0 to 1,000 msat, 0 to a few thousand ppm) and CLTV delta (18 to
//! 144). Amounts are spread evenly over the decades from 1 sat to 0.1 BTC; each
//! forward pays the outgoing channel's fee (sometimes a little more); expiries
//! follow the channel's CLTV delta and `auto_fail_height` is 10 blocks before the
//! incoming expiry (LND's default `cltv-intercept-delta`). Some payments arrive as
//! 2-4 MPP parts sharing a payment hash, most forwards carry the experimental
//! endorsement record in the wire message, a few are keysend-like payments to this
//! node (the preimage in record 5482373484, sometimes a message in 34349334).

use std::io::Write;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::circuit::Scid;
use crate::record::{Hex, HtlcRecord};

/// Arguments of `htlcgate corpus`.
#[derive(clap::Args, Debug, Clone)]
pub struct CorpusArgs {
    /// Number of HTLCs to print.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Seed: the same seed prints the same HTLCs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One line of `htlcgate corpus`: the HTLC, with its key and SCIDs for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusLine {
    /// Circuit key, `chan:htlc`.
    pub key: String,
    /// Incoming channel, `BLOCKxTXxOUT`.
    pub scid_in: String,
    /// Requested outgoing channel, `BLOCKxTXxOUT` (`0x0x0`: a payment to this node).
    pub scid_out: String,
    /// The HTLC.
    pub htlc: HtlcRecord,
}

impl CorpusLine {
    /// The line for an HTLC.
    pub fn new(htlc: HtlcRecord) -> CorpusLine {
        CorpusLine {
            key: htlc.key().to_string(),
            scid_in: htlc.scid_in().to_string(),
            scid_out: htlc.scid_out().to_string(),
            htlc,
        }
    }
}

/// Keysend's preimage record (bLIP-3).
pub const KEYSEND_RECORD: u64 = 5_482_373_484;
/// The keysend chat message record used by several wallets.
pub const MESSAGE_RECORD: u64 = 34_349_334;
/// The experimental HTLC endorsement record in `update_add_htlc`.
pub const ENDORSEMENT_RECORD: u64 = 106_823;
/// LND's default `cltv-intercept-delta`: blocks before the incoming expiry at which
/// LND fails a held HTLC back by itself.
pub const INTERCEPT_DELTA: u32 = 10;
/// Channels of the generated node.
pub const CHANNELS: usize = 36;

/// One channel of the generated node.
#[derive(Clone, Debug)]
struct Channel {
    scid: u64,
    base_msat: u64,
    ppm: u64,
    cltv_delta: u32,
    next_htlc: u64,
}

/// The generator: a node's channels and the chain tip; [`Corpus::next_payment`]
/// yields one payment's HTLCs (several for an MPP payment).
pub struct Corpus {
    rng: fastrand::Rng,
    tip: u32,
    channels: Vec<Channel>,
}

/// An amount spread evenly over the decades 1 sat .. 0.1 BTC (integer arithmetic
/// only, so the output is the same on every platform).
fn amount_msat(rng: &mut fastrand::Rng) -> u64 {
    // 10^3 .. 10^10 msat: pick the decade, then a point in it.
    let decade = 10u64.pow(rng.u32(3..10));
    let v = decade + rng.u64(0..decade * 9);
    if rng.u8(0..10) < 6 {
        // Most payments are whole satoshis.
        (v / 1000).max(1) * 1000
    } else {
        v
    }
}

fn bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    std::iter::repeat_with(|| rng.u8(..)).take(n).collect()
}

impl Corpus {
    /// A node for `seed`.
    pub fn new(seed: u64) -> Corpus {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tip = 880_000 + rng.u32(0..20_000);
        let mut channels: Vec<Channel> = Vec::with_capacity(CHANNELS);
        while channels.len() < CHANNELS {
            let block = u64::from(rng.u32(600_000..tip - 6));
            let tx = rng.u64(0..3_500);
            let out = if rng.bool() { 0 } else { rng.u64(1..4) };
            let scid = (block << 40) | (tx << 16) | out;
            if channels.iter().any(|c| c.scid == scid) {
                continue;
            }
            let base_msat = [0, 0, 0, 1, 100, 1000, 1000][rng.usize(0..7)];
            let ppm = match rng.u8(0..10) {
                0 => 0,
                1..=3 => rng.u64(1..100),
                4..=7 => rng.u64(100..1_000),
                _ => rng.u64(1_000..3_500),
            };
            let cltv_delta = match rng.u8(0..4) {
                0 => 18,
                1 => 40,
                2 => 80,
                _ => rng.u32(18..=144),
            };
            channels.push(Channel {
                scid,
                base_msat,
                ppm,
                cltv_delta,
                next_htlc: rng.u64(0..50_000),
            });
        }
        Corpus { rng, tip, channels }
    }

    /// The HTLCs of the next payment reaching this node, in arrival order.
    pub fn next_payment(&mut self) -> Vec<HtlcRecord> {
        let rng = &mut self.rng;
        // The tip moves on now and then.
        if rng.u8(0..50) == 0 {
            self.tip += 1;
        }
        let to_us = rng.u8(0..100) < 3;
        let parts = if !to_us && rng.u8(0..100) < 8 {
            rng.usize(2..=4)
        } else {
            1
        };
        let (payment_hash, keysend) = if to_us && rng.bool() {
            let preimage = bytes(rng, 32);
            (Sha256::digest(&preimage).to_vec(), Some(preimage))
        } else {
            (bytes(rng, 32), None)
        };
        let total = amount_msat(rng);
        let out_chan = rng.usize(0..self.channels.len());
        let remaining_cltv = rng.u32(40..=1_500);
        let endorsed = rng.u8(0..10) < 7;
        let mut htlcs = Vec::with_capacity(parts);
        let mut left = total;
        for part in 0..parts {
            let out = if part + 1 == parts {
                left
            } else {
                let share = (left / (parts - part) as u64).max(1);
                share / 2 + rng.u64(0..=share)
            }
            .clamp(1, left.max(1));
            left = left.saturating_sub(out);
            let mut in_chan = rng.usize(0..self.channels.len());
            if !to_us && in_chan == out_chan {
                in_chan = (in_chan + 1) % self.channels.len();
            }
            let (outgoing, fee, delta) = if to_us {
                (0, 0, 0)
            } else {
                let c = &self.channels[out_chan];
                let fee = c.base_msat
                    + u64::try_from(u128::from(out) * u128::from(c.ppm) / 1_000_000)
                        .unwrap_or(u64::MAX);
                // A route sometimes leaves a little slack.
                let slack = if rng.u8(0..10) == 0 {
                    rng.u64(0..=fee / 10 + 1)
                } else {
                    0
                };
                (c.scid, fee + slack, c.cltv_delta)
            };
            let outgoing_expiry = self.tip + remaining_cltv;
            let incoming_expiry = outgoing_expiry + delta;
            let c = &mut self.channels[in_chan];
            let htlc_id = c.next_htlc;
            c.next_htlc += 1;
            let mut custom_records = std::collections::BTreeMap::new();
            if let Some(pre) = &keysend {
                custom_records.insert(KEYSEND_RECORD, Hex(pre.clone()));
                if rng.u8(0..3) == 0 {
                    custom_records.insert(MESSAGE_RECORD, Hex(b"thanks for the coffee".to_vec()));
                }
            }
            let mut in_wire_custom_records = std::collections::BTreeMap::new();
            if endorsed {
                in_wire_custom_records.insert(ENDORSEMENT_RECORD, Hex(vec![rng.u8(0..2)]));
            }
            htlcs.push(HtlcRecord {
                chan_id: c.scid,
                htlc_id,
                incoming_amount_msat: out + fee,
                incoming_expiry,
                outgoing_requested_chan_id: outgoing,
                outgoing_amount_msat: out,
                outgoing_expiry: if to_us {
                    incoming_expiry
                } else {
                    outgoing_expiry
                },
                auto_fail_height: (incoming_expiry - INTERCEPT_DELTA) as i32,
                payment_hash: Hex(payment_hash.clone()),
                onion_blob_size: 1366,
                custom_records,
                in_wire_custom_records,
                outgoing_requested_node_id: None,
            });
            if left == 0 {
                break;
            }
        }
        htlcs
    }
}

/// `count` HTLCs for `seed`.
pub fn generate(count: usize, seed: u64) -> Vec<HtlcRecord> {
    let mut corpus = Corpus::new(seed);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        out.extend(corpus.next_payment());
    }
    out.truncate(count);
    out
}

/// Runs `htlcgate corpus`: prints the lines to stdout.
pub fn run(args: CorpusArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut corpus = Corpus::new(args.seed);
    let mut written = 0;
    while written < args.count {
        for htlc in corpus.next_payment() {
            if written == args.count {
                break;
            }
            let line = serde_json::to_string(&CorpusLine::new(htlc))?;
            if let Err(e) = writeln!(out, "{line}") {
                // `htlcgate corpus | head`: the reader is gone, which is fine.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e).context("writing the corpus to stdout");
            }
            written += 1;
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the corpus to stdout")
        }
        _ => Ok(()),
    }
}

/// The SCIDs of the channels a seed's node has (for tests and docs).
pub fn channels(seed: u64) -> Vec<Scid> {
    Corpus::new(seed)
        .channels
        .iter()
        .map(|c| Scid(c.scid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn the_same_seed_gives_the_same_htlcs_and_another_seed_others() {
        assert_eq!(generate(500, 7), generate(500, 7));
        assert_ne!(generate(50, 7), generate(50, 8));
        assert_eq!(generate(123, 1).len(), 123);
    }

    #[test]
    fn keys_are_unique_and_ids_count_up_per_channel() {
        let htlcs = generate(5_000, 3);
        let keys: HashSet<_> = htlcs.iter().map(|h| h.key()).collect();
        assert_eq!(keys.len(), htlcs.len());
        let mut last: HashMap<u64, u64> = HashMap::new();
        for h in &htlcs {
            if let Some(prev) = last.insert(h.chan_id, h.htlc_id) {
                assert_eq!(h.htlc_id, prev + 1);
            }
        }
        assert!(last.len() > CHANNELS / 2, "traffic on most channels");
    }

    #[test]
    fn channels_amounts_fees_and_expiries_are_realistic() {
        let htlcs = generate(5_000, 11);
        let chans: HashSet<u64> = channels(11).iter().map(|s| s.0).collect();
        assert_eq!(chans.len(), CHANNELS);
        let mut decades = HashSet::new();
        let mut fee_free = 0;
        let mut high_ppm = 0;
        for h in &htlcs {
            assert!(chans.contains(&h.chan_id));
            let block = Scid(h.chan_id).block();
            assert!((600_000..900_000).contains(&block), "{block}");
            // MPP parts of a small payment may be below 1 sat; none is above
            // 0.1 BTC.
            assert!(
                (1..=10_000_000_000).contains(&h.outgoing_amount_msat),
                "{h:?}"
            );
            decades.insert(h.outgoing_amount_msat.max(1).ilog10());
            assert!(h.incoming_amount_msat >= h.outgoing_amount_msat);
            assert_eq!(
                h.auto_fail_height as u32,
                h.incoming_expiry - INTERCEPT_DELTA
            );
            assert!(h.outgoing_expiry > 880_000);
            if h.outgoing_requested_chan_id != 0 {
                assert!(chans.contains(&h.outgoing_requested_chan_id));
                assert_ne!(h.outgoing_requested_chan_id, h.chan_id);
                let delta = h.incoming_expiry - h.outgoing_expiry;
                assert!((18..=144).contains(&delta), "cltv delta {delta}");
                let fee = h.incoming_amount_msat - h.outgoing_amount_msat;
                if fee == 0 {
                    fee_free += 1;
                }
                let ppm = u128::from(fee) * 1_000_000 / u128::from(h.outgoing_amount_msat);
                if ppm >= 1_000 {
                    high_ppm += 1;
                }
            }
            assert_eq!(h.onion_blob_size, 1366);
            assert_eq!(h.payment_hash.0.len(), 32);
        }
        // Amounts reach from 1 sat (10^3 msat) to 0.1 BTC (10^10 msat).
        assert!(decades.contains(&3) && decades.contains(&9), "{decades:?}");
        assert!(fee_free > 0 && high_ppm > 0, "{fee_free} {high_ppm}");
    }

    #[test]
    fn some_payments_are_mpp_keysend_or_carry_records() {
        let htlcs = generate(5_000, 5);
        let mut by_hash: HashMap<&[u8], usize> = HashMap::new();
        for h in &htlcs {
            *by_hash.entry(&h.payment_hash.0).or_default() += 1;
        }
        assert!(by_hash.values().any(|n| *n >= 2), "MPP parts share a hash");
        let keysend: Vec<_> = htlcs
            .iter()
            .filter(|h| h.custom_records.contains_key(&KEYSEND_RECORD))
            .collect();
        assert!(!keysend.is_empty());
        for h in keysend {
            assert_eq!(h.outgoing_requested_chan_id, 0, "keysend pays this node");
            let pre = &h.custom_records[&KEYSEND_RECORD].0;
            assert_eq!(Sha256::digest(pre).as_slice(), h.payment_hash.0.as_slice());
        }
        assert!(htlcs
            .iter()
            .any(|h| h.in_wire_custom_records.contains_key(&ENDORSEMENT_RECORD)));
    }

    #[test]
    fn a_line_reads_back_as_the_same_htlc() {
        for h in generate(50, 2) {
            let line = serde_json::to_string(&CorpusLine::new(h.clone())).unwrap();
            let back: CorpusLine = serde_json::from_str(&line).unwrap();
            assert_eq!(back.htlc, h);
            assert_eq!(back.key, format!("{}:{}", h.chan_id, h.htlc_id));
            assert_eq!(back.scid_in, Scid(h.chan_id).to_string());
        }
    }
}
