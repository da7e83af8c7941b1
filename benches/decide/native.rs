//! The example policies as plain Rust functions over htlcgate's HTLC record: what
//! the same decision costs with no sandbox at all. Same rules as the plugins in
//! `plugins/fee-floor`, `plugins/max-htlc` and `plugins/channel-filter`.

use htlcgate::wasm::bindings::Htlc;

/// What a native policy says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Says {
    /// No opinion.
    Next,
    /// Fail back.
    Fail,
}

/// `fee-floor`: fee at least `base_msat + ppm * out / 1e6`.
pub struct FeeFloor {
    /// Fixed part, msat.
    pub base_msat: u64,
    /// Proportional part, ppm.
    pub ppm: u64,
}

impl FeeFloor {
    /// Decides `h`.
    pub fn decide(&self, h: &Htlc) -> Says {
        if h.outgoing_requested_chan_id == 0 && h.outgoing_requested_node_id.is_none() {
            return Says::Next;
        }
        let floor = u128::from(self.base_msat)
            + u128::from(self.ppm) * u128::from(h.outgoing_amount_msat) / 1_000_000;
        match h.incoming_amount_msat.checked_sub(h.outgoing_amount_msat) {
            Some(fee) if u128::from(fee) >= floor => Says::Next,
            _ => Says::Fail,
        }
    }
}

/// `max-htlc`: outgoing amount at most `max_msat`.
pub struct MaxHtlc {
    /// The maximum, msat.
    pub max_msat: u64,
}

impl MaxHtlc {
    /// Decides `h`.
    pub fn decide(&self, h: &Htlc) -> Says {
        if h.outgoing_amount_msat <= self.max_msat {
            Says::Next
        } else {
            Says::Fail
        }
    }
}

/// `channel-filter` with a `deny_in` list (sorted, binary search, as the plugin).
pub struct ChannelFilter {
    /// Denied incoming channels, sorted.
    pub deny_in: Vec<u64>,
}

impl ChannelFilter {
    /// Decides `h`.
    pub fn decide(&self, h: &Htlc) -> Says {
        if self
            .deny_in
            .binary_search(&h.incoming_circuit_key.chan_id)
            .is_ok()
        {
            Says::Fail
        } else {
            Says::Next
        }
    }
}

/// The benchmark chain, natively: channel-filter, max-htlc, fee-floor.
pub struct Chain {
    /// First.
    pub filter: ChannelFilter,
    /// Second.
    pub max: MaxHtlc,
    /// Third.
    pub fee: FeeFloor,
}

impl Chain {
    /// Decides `h`: the first `Fail`, else `Next` (the default verdict).
    pub fn decide(&self, h: &Htlc) -> Says {
        for says in [
            self.filter.decide(h),
            self.max.decide(h),
            self.fee.decide(h),
        ] {
            if says == Says::Fail {
                return says;
            }
        }
        Says::Next
    }
}
