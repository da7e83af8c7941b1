//! The example policies with no sandbox at all: what the same decision costs
//! natively.
//!
//! - `fee-floor`, `max-htlc`, `channel-filter`: plain Rust functions over
//!   htlcgate's HTLC record, same rules as the plugins in `plugins/fee-floor`,
//!   `plugins/max-htlc` and `plugins/channel-filter`.
//! - `rate-limit`, `circuitbreaker`: the plugin crates themselves
//!   (`plugins/rate-limit`, `plugins/circuitbreaker`, linked as rlibs), compiled
//!   for the host. Their `kv`, `node` and clock calls go to the SDK's native
//!   stand-ins (`sdk/rust/src/kv.rs`, `node.rs`, `clock.rs`): an in-memory
//!   `BTreeMap` per thread, channels and height set here, the system clock. So
//!   the row runs exactly the plugin's code (encode, decode, list and bucket
//!   updates), with a store as cheap as a map lookup and a copy. The stand-ins
//!   are per thread: these policies must be set up and called on one thread (the
//!   benchmark's main thread).

use htlcgate::wasm::bindings::Htlc;
use htlcgate_sdk::Plugin as _;

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

/// The benchmark HTLC as the SDK's `Htlc` (what a plugin's `decide` gets): every
/// field the record has, except the onion (these plugins never read it).
pub fn sdk_htlc(h: &Htlc) -> htlcgate_sdk::Htlc {
    let mut hash = [0; 32];
    hash.copy_from_slice(&h.payment_hash);
    htlcgate_sdk::Htlc::builder()
        .incoming_chan(htlcgate_sdk::Scid(h.incoming_circuit_key.chan_id))
        .htlc_id(h.incoming_circuit_key.htlc_id)
        .amounts_msat(h.incoming_amount_msat, h.outgoing_amount_msat)
        .expiries(h.incoming_expiry, h.outgoing_expiry)
        .auto_fail_height(h.auto_fail_height)
        .payment_hash(hash)
        .outgoing_chan(htlcgate_sdk::Scid(h.outgoing_requested_chan_id))
        .attempt(h.attempt)
        .build()
}

/// What an SDK verdict says here: `next` or anything else (the benchmark HTLC
/// must always get `next`; setup checks it).
fn says(v: &htlcgate_sdk::Verdict) -> Says {
    if *v == htlcgate_sdk::Verdict::next() {
        Says::Next
    } else {
        Says::Fail
    }
}

/// `config` as the SDK's `Config`.
fn sdk_config(config: &[(&str, &str)]) -> htlcgate_sdk::Config {
    htlcgate_sdk::Config::from_pairs(config.iter().copied())
}

/// `rate-limit`: the plugin crate's own code, over the SDK's in-memory `kv`.
pub struct RateLimit {
    /// The plugin, as its `init` built it.
    plugin: rate_limit::RateLimit,
}

impl RateLimit {
    /// Empties this thread's stand-in store and `init`s the plugin with `config`
    /// (build every native plugin before calling any: each empties the store).
    pub fn new(config: &[(&str, &str)]) -> anyhow::Result<RateLimit> {
        htlcgate_sdk::kv::clear();
        let plugin = rate_limit::RateLimit::init(&sdk_config(config))
            .map_err(|e| anyhow::anyhow!("native rate-limit init: {e}"))?;
        Ok(RateLimit { plugin })
    }

    /// Decides `h` (reads and writes the channel's counters).
    pub fn decide(&mut self, h: &htlcgate_sdk::Htlc) -> Says {
        says(&self.plugin.decide(h))
    }
}

/// `circuitbreaker`: the plugin crate's own code, over the SDK's in-memory `kv`
/// and a node stand-in that knows the benchmark's incoming channel.
pub struct CircuitBreaker {
    /// The plugin, as its `init` built it.
    plugin: circuitbreaker::CircuitBreaker,
}

impl CircuitBreaker {
    /// Empties this thread's stand-ins, makes `chan` a channel with `peer` opened
    /// by this node (as the mock LND's `sample_channel`), sets the block height,
    /// keeps this thread's SDK log lines off stderr and `init`s the plugin with
    /// `config` (build every native plugin before calling any: each empties the
    /// store).
    pub fn new(
        config: &[(&str, &str)],
        chan: u64,
        peer: htlcgate_sdk::NodeId,
        height: u32,
    ) -> anyhow::Result<CircuitBreaker> {
        htlcgate_sdk::kv::clear();
        htlcgate_sdk::node::clear();
        htlcgate_sdk::node::set_channel(htlcgate_sdk::ChannelInfo::new(
            htlcgate_sdk::Scid(chan),
            peer,
        ));
        htlcgate_sdk::node::set_block_height(Some(height));
        // Its debug line on each resolution is formatted (as in the sandbox, where
        // the host rate-limits it away) but not written to stderr: a write(2) per
        // iteration would dominate this row and flood the benchmark's output.
        htlcgate_sdk::log::set_stderr(false);
        let plugin = circuitbreaker::CircuitBreaker::init(&sdk_config(config))
            .map_err(|e| anyhow::anyhow!("native circuitbreaker init: {e}"))?;
        Ok(CircuitBreaker { plugin })
    }

    /// Decides `h` (counts it in flight, takes a token).
    pub fn decide(&mut self, h: &htlcgate_sdk::Htlc) -> Says {
        says(&self.plugin.decide(h))
    }

    /// Takes `outcome` into account (a resolution ends the HTLC's entry): the
    /// plugin's own `outcome_at`.
    pub fn outcome(
        &mut self,
        outcome: &htlcgate_sdk::Outcome,
    ) -> Result<(), htlcgate_sdk::kv::KvError> {
        self.plugin.outcome_at(outcome)
    }
}
