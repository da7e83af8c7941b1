//! The node context as plugins see it: the `channel` import (grant `node`) and
//! `block-height` (no grant). Both are answered from the node context's memory
//! ([`NodeContext`]): they never wait on LND.

use crate::circuit::Scid;
use crate::lnd::channels::ChannelInfo;
use crate::lnd::node::NodeContext;
use crate::wasm::bindings;

/// The WIT `channel-info` for what the cache knows about a channel.
pub fn channel_to_wit(info: &ChannelInfo) -> bindings::ChannelInfo {
    bindings::ChannelInfo {
        chan_id: info.scid.0,
        peer: info.peer.to_vec(),
        capacity_sat: info.capacity_sat,
        local_balance_sat: info.local_balance_sat,
        remote_balance_sat: info.remote_balance_sat,
        unsettled_balance_sat: info.unsettled_balance_sat,
        active: info.active,
        private: info.private,
        initiator: info.initiator,
    }
}

/// The `channel` import: the open channel known by `chan_id` (its id or an
/// alias), `None` without a node context or for a channel the cache does not
/// know.
pub fn channel(node: Option<&NodeContext>, chan_id: u64) -> Option<bindings::ChannelInfo> {
    node?.channel(Scid(chan_id)).map(|c| channel_to_wit(&c))
}

/// The `block-height` import: `None` without a node context or until known.
pub fn block_height(node: Option<&NodeContext>) -> Option<u32> {
    node?.height()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::channels::ChanPoint;

    #[test]
    fn every_channel_field_is_mapped() {
        let info = ChannelInfo {
            scid: Scid(812_345 << 40 | 7 << 16 | 1),
            aliases: vec![Scid(16_000_000 << 40)],
            peer: [3; 33],
            capacity_sat: 5_000_000,
            local_balance_sat: 2_000_000,
            remote_balance_sat: 2_900_000,
            unsettled_balance_sat: 100_000,
            active: true,
            private: false,
            initiator: true,
            chan_point: ChanPoint {
                txid: [9; 32],
                output_index: 1,
            },
        };
        let w = channel_to_wit(&info);
        assert_eq!(w.chan_id, 812_345 << 40 | 7 << 16 | 1);
        assert_eq!(w.peer, vec![3; 33]);
        assert_eq!(w.capacity_sat, 5_000_000);
        assert_eq!(w.local_balance_sat, 2_000_000);
        assert_eq!(w.remote_balance_sat, 2_900_000);
        assert_eq!(w.unsettled_balance_sat, 100_000);
        assert!(w.active && !w.private && w.initiator);
        let w = channel_to_wit(&ChannelInfo {
            active: false,
            private: true,
            initiator: false,
            ..info
        });
        assert!(!w.active && w.private && !w.initiator);
    }

    #[test]
    fn without_a_node_context_nothing_is_known() {
        assert!(channel(None, 1).is_none());
        assert_eq!(block_height(None), None);
    }
}
