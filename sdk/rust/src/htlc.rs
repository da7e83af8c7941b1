//! The HTLC being decided, as typed accessors over the record the host sends.
//!
//! [`Htlc`] owns the generated WIT record and hands out borrows: reading a field
//! never copies a list, so a policy that looks at two amounts costs no
//! allocation beyond the ones the canonical ABI already made. The onion blob is
//! not in the record (most policies never read it); [`Htlc::onion_blob`] asks the
//! host for it the first time and keeps it.

use core::cell::OnceCell;
use core::fmt;

use crate::bindings;
use crate::Scid;

/// One TLV record: `key` is the TLV type, `value` its raw bytes.
///
/// Custom records use types >= 65536.
pub use bindings::CustomRecord;

/// Identifies one HTLC at this node: the incoming channel and the HTLC's index in
/// it (LND's `routerrpc.CircuitKey`). Unique per HTLC; a replayed HTLC has the
/// same key, so it is the key to remember decisions by (not the payment hash).
///
/// `Display` writes `chan_id:htlc_id` with the numeric channel id, as htlcgate's
/// logs do.
pub use bindings::CircuitKey;

impl CircuitKey {
    /// The key of HTLC `htlc_id` in channel `chan`.
    pub const fn new(chan: Scid, htlc_id: u64) -> CircuitKey {
        CircuitKey {
            chan_id: chan.0,
            htlc_id,
        }
    }

    /// The channel (for an incoming key, the incoming channel).
    pub fn chan(&self) -> Scid {
        Scid(self.chan_id)
    }
}

impl fmt::Display for CircuitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.chan_id, self.htlc_id)
    }
}

/// The HTLC LND holds and asks about (LND's `ForwardHtlcInterceptRequest`).
///
/// Amounts are in millisatoshi, expiries are absolute block heights. Build one
/// for unit tests with [`Htlc::builder`].
pub struct Htlc {
    /// The record as the host sent it.
    raw: bindings::Htlc,
    /// The onion blob, fetched from the host on first use.
    onion: OnceCell<Vec<u8>>,
}

impl Htlc {
    /// Wraps the record the host passed to `decide`.
    pub(crate) fn from_raw(raw: bindings::Htlc) -> Htlc {
        Htlc {
            raw,
            onion: OnceCell::new(),
        }
    }

    /// The record, for tests of the export glue.
    #[cfg(test)]
    pub(crate) fn raw_for_tests(self) -> bindings::Htlc {
        self.raw
    }

    /// Starts a hand-made HTLC for tests; see [`HtlcBuilder`] for the defaults.
    pub fn builder() -> HtlcBuilder {
        HtlcBuilder::default()
    }

    /// The incoming channel and HTLC index: the HTLC's identity.
    pub fn circuit_key(&self) -> CircuitKey {
        self.raw.incoming_circuit_key
    }

    /// The channel the HTLC arrived on.
    pub fn incoming_chan(&self) -> Scid {
        Scid(self.raw.incoming_circuit_key.chan_id)
    }

    /// The channel the sender asked to forward over.
    ///
    /// [`Scid::FINAL_HOP`] (0) when the HTLC is for this node (see
    /// [`is_final_hop`](Self::is_final_hop)); [`Scid::NODE_ADDRESSED`] (all ones)
    /// when the sender named a node instead (see
    /// [`outgoing_node_id`](Self::outgoing_node_id)).
    pub fn outgoing_chan(&self) -> Scid {
        Scid(self.raw.outgoing_requested_chan_id)
    }

    /// The 33-byte public key of the node the sender asked to forward to, set
    /// only for node-addressed (blinded) forwards.
    pub fn outgoing_node_id(&self) -> Option<&[u8]> {
        self.raw.outgoing_requested_node_id.as_deref()
    }

    /// True when the HTLC is for this node rather than a forward: outgoing
    /// channel 0 and no outgoing node id.
    pub fn is_final_hop(&self) -> bool {
        self.raw.outgoing_requested_chan_id == 0 && self.raw.outgoing_requested_node_id.is_none()
    }

    /// Amount of the incoming HTLC, in msat.
    pub fn incoming_amount_msat(&self) -> u64 {
        self.raw.incoming_amount_msat
    }

    /// Amount to forward, in msat.
    pub fn outgoing_amount_msat(&self) -> u64 {
        self.raw.outgoing_amount_msat
    }

    /// The fee this node earns by forwarding: incoming minus outgoing amount, in
    /// msat.
    ///
    /// An `i128` so that it is exact for every pair of u64 amounts: it is 0 when
    /// the amounts are equal and negative when the sender asks to forward more
    /// than it pays in (LND normally rejects that before asking, but a policy
    /// should not assume it).
    pub fn fee_msat(&self) -> i128 {
        i128::from(self.raw.incoming_amount_msat) - i128::from(self.raw.outgoing_amount_msat)
    }

    /// Block height at which the incoming HTLC expires.
    pub fn incoming_expiry(&self) -> u32 {
        self.raw.incoming_expiry
    }

    /// Block height at which the outgoing HTLC expires.
    pub fn outgoing_expiry(&self) -> u32 {
        self.raw.outgoing_expiry
    }

    /// The CLTV delta this node gets: incoming expiry minus outgoing expiry, in
    /// blocks. Signed, since nothing in the request forces it to be positive.
    pub fn cltv_delta(&self) -> i64 {
        i64::from(self.raw.incoming_expiry) - i64::from(self.raw.outgoing_expiry)
    }

    /// Block height at which LND fails the HTLC back by itself so that the
    /// channel is not force-closed.
    pub fn auto_fail_height(&self) -> i32 {
        self.raw.auto_fail_height
    }

    /// The payment hash (32 bytes). Not unique per HTLC: MPP parts and probes
    /// share it.
    pub fn payment_hash(&self) -> &[u8] {
        &self.raw.payment_hash
    }

    /// TLV records from the onion payload meant for this hop, in the order the
    /// host sent them.
    pub fn custom_records(&self) -> &[CustomRecord] {
        &self.raw.custom_records
    }

    /// The value of onion TLV record `key`, if present.
    pub fn custom_record(&self, key: u64) -> Option<&[u8]> {
        find_record(&self.raw.custom_records, key)
    }

    /// TLV records of the peer's incoming `update_add_htlc` wire message.
    pub fn in_wire_custom_records(&self) -> &[CustomRecord] {
        &self.raw.in_wire_custom_records
    }

    /// The value of incoming wire TLV record `key`, if present.
    pub fn in_wire_custom_record(&self, key: u64) -> Option<&[u8]> {
        find_record(&self.raw.in_wire_custom_records, key)
    }

    /// Size in bytes of the onion blob for the next hop, without fetching it.
    pub fn onion_blob_size(&self) -> u32 {
        self.raw.onion_blob_size
    }

    /// How many times the chain has asked about this HTLC: 1 the first time,
    /// n + 1 after n [`Verdict::Hold`](crate::Verdict::Hold)s. After a hold
    /// the chain goes on from the plugin that held (those before it are not
    /// asked again). A replay after a restart of htlcgate starts again at 1, so
    /// a plugin that queues HTLCs should recognise one it already holds by its
    /// [`circuit_key`](Self::circuit_key), not by the attempt.
    pub fn attempt(&self) -> u32 {
        self.raw.attempt
    }

    /// The onion blob for the next hop (normally 1366 bytes).
    ///
    /// The first call copies it from the host (an import call and an
    /// allocation); later calls return the same bytes. Outside WebAssembly (unit
    /// tests) it is what [`HtlcBuilder::onion_blob`] set, else empty.
    pub fn onion_blob(&self) -> &[u8] {
        self.onion.get_or_init(crate::imports::onion_blob)
    }
}

impl fmt::Debug for Htlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htlc")
            .field("circuit_key", &format_args!("{}", self.circuit_key()))
            .field("incoming_chan", &self.incoming_chan())
            .field("outgoing_chan", &self.outgoing_chan())
            .field("incoming_amount_msat", &self.incoming_amount_msat())
            .field("outgoing_amount_msat", &self.outgoing_amount_msat())
            .field("incoming_expiry", &self.incoming_expiry())
            .field("outgoing_expiry", &self.outgoing_expiry())
            .field("auto_fail_height", &self.auto_fail_height())
            .field("attempt", &self.attempt())
            .field("raw", &self.raw)
            .finish()
    }
}

/// Looks up a TLV record by type; records are few, so a linear scan is cheapest.
fn find_record(records: &[CustomRecord], key: u64) -> Option<&[u8]> {
    records
        .iter()
        .find(|record| record.key == key)
        .map(|record| record.value.as_slice())
}

/// Builds an [`Htlc`] by hand, for unit tests of a policy on the host.
///
/// The defaults describe an ordinary forward: incoming channel `800000x1x0`
/// HTLC 0, 1_001_000 msat in, 1_000_000 msat out over `800001x2x1`, expiries
/// 800_144 / 800_104 (delta 40), auto-fail height 800_134, payment hash of 32
/// zero bytes, no records, no onion blob, attempt 1.
///
/// ```
/// use htlcgate_sdk::{Htlc, Scid};
/// let htlc = Htlc::builder().amounts_msat(10_500, 10_000).build();
/// assert_eq!(htlc.fee_msat(), 500);
/// let receive = Htlc::builder().final_hop().build();
/// assert!(receive.is_final_hop());
/// ```
#[derive(Clone, Debug)]
pub struct HtlcBuilder {
    /// The record being built.
    raw: bindings::Htlc,
    /// The onion blob `Htlc::onion_blob` returns, if set.
    onion: Option<Vec<u8>>,
}

impl Default for HtlcBuilder {
    fn default() -> HtlcBuilder {
        HtlcBuilder {
            raw: bindings::Htlc {
                incoming_circuit_key: CircuitKey {
                    chan_id: Scid::from_parts(800_000, 1, 0).map_or(0, Scid::as_u64),
                    htlc_id: 0,
                },
                incoming_amount_msat: 1_001_000,
                incoming_expiry: 800_144,
                payment_hash: vec![0; 32],
                outgoing_requested_chan_id: Scid::from_parts(800_001, 2, 1).map_or(0, Scid::as_u64),
                outgoing_amount_msat: 1_000_000,
                outgoing_expiry: 800_104,
                custom_records: Vec::new(),
                onion_blob_size: 0,
                auto_fail_height: 800_134,
                in_wire_custom_records: Vec::new(),
                outgoing_requested_node_id: None,
                attempt: 1,
            },
            onion: None,
        }
    }
}

impl HtlcBuilder {
    /// Sets the incoming channel.
    pub fn incoming_chan(mut self, chan: Scid) -> Self {
        self.raw.incoming_circuit_key.chan_id = chan.0;
        self
    }

    /// Sets the HTLC's index in the incoming channel.
    pub fn htlc_id(mut self, htlc_id: u64) -> Self {
        self.raw.incoming_circuit_key.htlc_id = htlc_id;
        self
    }

    /// Sets the incoming amount in msat.
    pub fn incoming_amount_msat(mut self, msat: u64) -> Self {
        self.raw.incoming_amount_msat = msat;
        self
    }

    /// Sets the outgoing amount in msat.
    pub fn outgoing_amount_msat(mut self, msat: u64) -> Self {
        self.raw.outgoing_amount_msat = msat;
        self
    }

    /// Sets both amounts in msat: what comes in and what goes out.
    pub fn amounts_msat(self, incoming: u64, outgoing: u64) -> Self {
        self.incoming_amount_msat(incoming)
            .outgoing_amount_msat(outgoing)
    }

    /// Sets both expiries (absolute block heights).
    pub fn expiries(mut self, incoming: u32, outgoing: u32) -> Self {
        self.raw.incoming_expiry = incoming;
        self.raw.outgoing_expiry = outgoing;
        self
    }

    /// Sets the auto-fail height.
    pub fn auto_fail_height(mut self, height: i32) -> Self {
        self.raw.auto_fail_height = height;
        self
    }

    /// Sets the attempt number (1 the first time the chain asks, n + 1 after n
    /// holds).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.raw.attempt = attempt;
        self
    }

    /// Sets the payment hash.
    pub fn payment_hash(mut self, hash: [u8; 32]) -> Self {
        self.raw.payment_hash = hash.to_vec();
        self
    }

    /// Makes it a forward over `chan` (clears any outgoing node id).
    pub fn outgoing_chan(mut self, chan: Scid) -> Self {
        self.raw.outgoing_requested_chan_id = chan.0;
        self.raw.outgoing_requested_node_id = None;
        self
    }

    /// Makes it a node-addressed forward to `node_id` (outgoing channel all
    /// ones, as LND sends it).
    pub fn outgoing_node_id(mut self, node_id: [u8; 33]) -> Self {
        self.raw.outgoing_requested_chan_id = Scid::NODE_ADDRESSED.0;
        self.raw.outgoing_requested_node_id = Some(node_id.to_vec());
        self
    }

    /// Makes it an HTLC for this node: outgoing channel 0, no node id.
    pub fn final_hop(self) -> Self {
        self.outgoing_chan(Scid::FINAL_HOP)
    }

    /// Adds an onion TLV record.
    pub fn custom_record(mut self, key: u64, value: impl Into<Vec<u8>>) -> Self {
        self.raw.custom_records.push(CustomRecord {
            key,
            value: value.into(),
        });
        self
    }

    /// Adds an incoming wire TLV record.
    pub fn in_wire_custom_record(mut self, key: u64, value: impl Into<Vec<u8>>) -> Self {
        self.raw.in_wire_custom_records.push(CustomRecord {
            key,
            value: value.into(),
        });
        self
    }

    /// Sets the onion blob (and its size).
    pub fn onion_blob(mut self, blob: impl Into<Vec<u8>>) -> Self {
        let blob = blob.into();
        self.raw.onion_blob_size = u32::try_from(blob.len()).unwrap_or(u32::MAX);
        self.onion = Some(blob);
        self
    }

    /// Finishes the HTLC.
    pub fn build(self) -> Htlc {
        let htlc = Htlc::from_raw(self.raw);
        if let Some(blob) = self.onion {
            // A fresh cell: setting it cannot fail.
            let _ = htlc.onion.set(blob);
        }
        htlc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_is_incoming_minus_outgoing() {
        let htlc = Htlc::builder().amounts_msat(1_000_500, 1_000_000).build();
        assert_eq!(htlc.fee_msat(), 500);
    }

    #[test]
    fn fee_is_exact_at_the_extremes() {
        let fee = |i, o| Htlc::builder().amounts_msat(i, o).build().fee_msat();
        assert_eq!(fee(0, 0), 0);
        assert_eq!(fee(1, 1), 0);
        assert_eq!(fee(0, 1), -1);
        assert_eq!(fee(u64::MAX, 0), i128::from(u64::MAX));
        assert_eq!(fee(0, u64::MAX), -i128::from(u64::MAX));
        assert_eq!(fee(u64::MAX, u64::MAX), 0);
    }

    #[test]
    fn cltv_delta_may_be_negative() {
        let delta = |i, o| Htlc::builder().expiries(i, o).build().cltv_delta();
        assert_eq!(delta(800_144, 800_104), 40);
        assert_eq!(delta(100, 140), -40);
        assert_eq!(delta(u32::MAX, 0), i64::from(u32::MAX));
    }

    #[test]
    fn final_hop_means_chan_zero_and_no_node_id() {
        assert!(Htlc::builder().final_hop().build().is_final_hop());
        let forward = Htlc::builder().outgoing_chan(Scid(42)).build();
        assert!(!forward.is_final_hop());
        let blinded = Htlc::builder().outgoing_node_id([2; 33]).build();
        assert!(!blinded.is_final_hop());
        assert_eq!(blinded.outgoing_chan(), Scid::NODE_ADDRESSED);
        assert_eq!(blinded.outgoing_node_id(), Some(&[2u8; 33][..]));
    }

    #[test]
    fn circuit_key_displays_numeric_chan_and_htlc_index() {
        let htlc = Htlc::builder().incoming_chan(Scid(123)).htlc_id(7).build();
        assert_eq!(htlc.circuit_key().to_string(), "123:7");
        assert_eq!(htlc.circuit_key().chan(), Scid(123));
        assert_eq!(htlc.incoming_chan(), Scid(123));
    }

    #[test]
    fn attempt_defaults_to_one_and_is_settable() {
        assert_eq!(Htlc::builder().build().attempt(), 1);
        assert_eq!(Htlc::builder().attempt(4).build().attempt(), 4);
        assert_eq!(
            CircuitKey::new(Scid(9), 2),
            CircuitKey {
                chan_id: 9,
                htlc_id: 2
            }
        );
    }

    #[test]
    fn records_are_found_by_key() {
        let htlc = Htlc::builder()
            .custom_record(65_537, b"a".to_vec())
            .in_wire_custom_record(65_539, b"bc".to_vec())
            .build();
        assert_eq!(htlc.custom_record(65_537), Some(&b"a"[..]));
        assert_eq!(htlc.custom_record(65_539), None);
        assert_eq!(htlc.in_wire_custom_record(65_539), Some(&b"bc"[..]));
        assert_eq!(htlc.custom_records().len(), 1);
        assert_eq!(htlc.in_wire_custom_records()[0].key, 65_539);
    }

    #[test]
    fn onion_blob_comes_from_the_builder_on_the_host() {
        let htlc = Htlc::builder().onion_blob(vec![7; 1366]).build();
        assert_eq!(htlc.onion_blob_size(), 1366);
        assert_eq!(htlc.onion_blob().len(), 1366);
        assert!(Htlc::builder().build().onion_blob().is_empty());
    }
}
