//! What htlcgate knows about this node: its open channels and the block height.
//!
//! The host keeps both current in memory from LND (`ListChannels`,
//! `SubscribeChannelEvents`, `GetInfo`, block notifications), so a read never
//! waits on LND. [`channel`] needs the `node` grant in the plugin's `[[plugin]]`
//! entry; [`block_height`] needs none:
//!
//! ```toml
//! [[plugin]]
//! name = "circuitbreaker"
//! path = "target/wasm-plugins/circuitbreaker.wasm"
//! grants = ["kv", "node"]
//! ```
//!
//! A component imports only what its code calls: a plugin that never calls
//! [`channel`] does not need the grant.
//!
//! Outside WebAssembly (unit tests) both read a per-thread stand-in that the
//! test fills with [`set_channel`] and [`set_block_height`]; it starts empty
//! (no channel known, height unknown), like a host whose node context is not
//! loaded yet.
//!
//! ```
//! use htlcgate_sdk::node::{self, ChannelInfo, NodeId};
//! use htlcgate_sdk::Scid;
//!
//! let peer: NodeId = "02".repeat(33).parse().unwrap();
//! node::set_channel(ChannelInfo { initiator: false, ..ChannelInfo::new(Scid(7), peer) });
//! node::set_block_height(Some(800_000));
//!
//! let info = node::channel(Scid(7)).unwrap();
//! assert!(info.peer_initiated());
//! assert_eq!(node::block_height(), Some(800_000));
//! assert_eq!(node::channel(Scid(8)), None);
//! ```

use core::fmt;
use core::str::FromStr;

use crate::config::decode_hex;
use crate::Scid;

/// A node's public key: 33 bytes, compressed secp256k1 (LND's `remote_pubkey`).
///
/// `Display` writes the 66 lower-case hex digits LND shows; `FromStr` reads
/// them (either case) and checks the length and the 02/03 prefix, so a config
/// key like `peer.<pubkey>.mode` can be parsed with it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 33]);

impl NodeId {
    /// The key from raw bytes; `None` unless there are exactly 33.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        <[u8; 33]>::try_from(bytes).ok().map(NodeId)
    }

    /// The 33 bytes.
    pub const fn as_bytes(&self) -> &[u8; 33] {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Why a string is not a node public key; its `Display` is the reason as a
/// phrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseNodeIdError {
    /// What is wrong, as a phrase.
    reason: &'static str,
}

impl fmt::Display for ParseNodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseNodeIdError {}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Reads 66 hex digits (33 bytes) starting with 02 or 03.
    fn from_str(s: &str) -> Result<NodeId, ParseNodeIdError> {
        let err = |reason| Err(ParseNodeIdError { reason });
        if s.len() != 66 {
            return err("a node public key is 66 hex digits (33 bytes)");
        }
        let Some(bytes) = decode_hex(s) else {
            return err("a node public key is hex digits only (0-9, a-f)");
        };
        if bytes[0] != 2 && bytes[0] != 3 {
            return err("a compressed node public key starts with 02 or 03");
        }
        NodeId::from_slice(&bytes).map_or_else(|| err("not 33 bytes"), Ok)
    }
}

/// One of this node's open channels, as the host knows it (LND's
/// `lnrpc.Channel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's short channel id (LND's `chan_id`).
    pub chan: Scid,
    /// The peer's node public key (`remote_pubkey`).
    pub peer: NodeId,
    /// Channel capacity in satoshis.
    pub capacity_sat: u64,
    /// This node's balance in satoshis, without in-flight HTLCs
    /// (`local_balance`). Refreshed on channel events and at least every minute.
    pub local_balance_sat: u64,
    /// The peer's balance in satoshis (`remote_balance`).
    pub remote_balance_sat: u64,
    /// Sum of in-flight HTLCs in satoshis (`unsettled_balance`).
    pub unsettled_balance_sat: u64,
    /// The channel is active (peer online, link up).
    pub active: bool,
    /// The channel is private (not announced).
    pub private: bool,
    /// This node opened the channel (`initiator`); false: the peer opened it.
    pub initiator: bool,
}

impl ChannelInfo {
    /// A channel for tests: `chan` with `peer`, 1,000,000 sat capacity split
    /// evenly, nothing in flight, active, public, opened by this node. Change
    /// fields with struct update syntax:
    /// `ChannelInfo { initiator: false, ..ChannelInfo::new(chan, peer) }`.
    pub fn new(chan: Scid, peer: NodeId) -> ChannelInfo {
        ChannelInfo {
            chan,
            peer,
            capacity_sat: 1_000_000,
            local_balance_sat: 500_000,
            remote_balance_sat: 500_000,
            unsettled_balance_sat: 0,
            active: true,
            private: false,
            initiator: true,
        }
    }

    /// True when the peer opened the channel (`!initiator`).
    pub fn peer_initiated(&self) -> bool {
        !self.initiator
    }
}

/// The open channel with short channel id `chan` (or one of its aliases), if
/// the host knows it. Needs the `node` grant.
///
/// `None` for an unknown or closed channel, and while the host's channel cache
/// is not loaded (LND unreachable since start, or the macaroon lacks
/// `offchain:read`): a policy should then fall back to something that does not
/// stop forwarding. Also `None` if the host sent a peer key that is not 33
/// bytes (it never should).
pub fn channel(chan: Scid) -> Option<ChannelInfo> {
    let raw = imp::channel(chan.0)?;
    Some(ChannelInfo {
        chan: Scid(raw.chan_id),
        peer: NodeId::from_slice(&raw.peer)?,
        capacity_sat: raw.capacity_sat,
        local_balance_sat: raw.local_balance_sat,
        remote_balance_sat: raw.remote_balance_sat,
        unsettled_balance_sat: raw.unsettled_balance_sat,
        active: raw.active,
        private: raw.private,
        initiator: raw.initiator,
    })
}

/// The node's current block height; `None` until the host knows it (the
/// macaroon lacks `info:read`, or LND has been unreachable since start). Needs
/// no grant.
pub fn block_height() -> Option<u32> {
    imp::block_height()
}

/// Makes [`channel`] return `info` for `info.chan` on this thread (host builds
/// only: unit tests). Replaces an earlier channel with the same id.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_channel(info: ChannelInfo) {
    imp::CHANNELS.with(|c| c.borrow_mut().insert(info.chan.0, info));
}

/// Makes [`channel`] return `None` for `chan` on this thread, as for a closed
/// channel (host builds only: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn remove_channel(chan: Scid) {
    imp::CHANNELS.with(|c| c.borrow_mut().remove(&chan.0));
}

/// Sets what [`block_height`] returns on this thread (host builds only: unit
/// tests); `None` is "not known yet".
#[cfg(not(target_arch = "wasm32"))]
pub fn set_block_height(height: Option<u32>) {
    imp::HEIGHT.with(|h| h.set(height));
}

/// Empties this thread's stand-in: no channel known, height unknown (host
/// builds only: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn clear() {
    imp::CHANNELS.with(|c| c.borrow_mut().clear());
    imp::HEIGHT.with(|h| h.set(None));
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings;

    pub(super) fn channel(chan_id: u64) -> Option<bindings::ChannelInfo> {
        bindings::channel(chan_id)
    }

    pub(super) fn block_height() -> Option<u32> {
        bindings::block_height()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use core::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use super::ChannelInfo;
    use crate::bindings;

    thread_local! {
        /// The channels `set_channel` made known, by numeric id.
        pub(super) static CHANNELS: RefCell<BTreeMap<u64, ChannelInfo>> =
            const { RefCell::new(BTreeMap::new()) };
        /// What `set_block_height` set.
        pub(super) static HEIGHT: Cell<Option<u32>> = const { Cell::new(None) };
    }

    /// The stand-in's channel as the host would send it.
    pub(super) fn channel(chan_id: u64) -> Option<bindings::ChannelInfo> {
        CHANNELS.with(|c| {
            c.borrow().get(&chan_id).map(|info| bindings::ChannelInfo {
                chan_id: info.chan.0,
                peer: info.peer.0.to_vec(),
                capacity_sat: info.capacity_sat,
                local_balance_sat: info.local_balance_sat,
                remote_balance_sat: info.remote_balance_sat,
                unsettled_balance_sat: info.unsettled_balance_sat,
                active: info.active,
                private: info.private,
                initiator: info.initiator,
            })
        })
    }

    pub(super) fn block_height() -> Option<u32> {
        HEIGHT.with(Cell::get)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn peer(byte: u8) -> NodeId {
        let mut key = [byte; 33];
        key[0] = 3;
        NodeId(key)
    }

    #[test]
    fn node_id_round_trips_through_hex() {
        let id = peer(0xab);
        let text = id.to_string();
        assert_eq!(text.len(), 66);
        assert!(text.starts_with("03abab"));
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<NodeId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("NodeId({text})"));
    }

    #[test]
    fn node_id_parse_says_what_is_wrong() {
        let reason = |s: &str| s.parse::<NodeId>().unwrap_err().to_string();
        assert!(reason("02ab").contains("66 hex digits"));
        assert!(reason(&"0g".repeat(33)).contains("hex digits only"));
        assert!(reason(&"04".repeat(33)).contains("02 or 03"));
        assert_eq!(NodeId::from_slice(&[2; 32]), None);
        assert_eq!(NodeId::from_slice(&[2; 33]), Some(NodeId([2; 33])));
    }

    #[test]
    fn the_stand_in_answers_what_the_test_set() {
        clear();
        assert_eq!(channel(Scid(1)), None);
        assert_eq!(block_height(), None);
        let info = ChannelInfo {
            initiator: false,
            capacity_sat: 7,
            ..ChannelInfo::new(Scid(1), peer(1))
        };
        set_channel(info.clone());
        set_block_height(Some(900_000));
        assert_eq!(channel(Scid(1)), Some(info));
        assert!(channel(Scid(1)).unwrap().peer_initiated());
        assert_eq!(block_height(), Some(900_000));
        remove_channel(Scid(1));
        assert_eq!(channel(Scid(1)), None);
        set_channel(ChannelInfo::new(Scid(2), peer(2)));
        assert!(!channel(Scid(2)).unwrap().peer_initiated());
        clear();
        assert_eq!(channel(Scid(2)), None);
        assert_eq!(block_height(), None);
    }
}
