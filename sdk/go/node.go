package htlcgate

// ChannelInfo is what htlcgate knows about one of this node's open channels,
// from LND's ListChannels and channel events (kept current in memory).
// Balances are in satoshis.
type ChannelInfo struct {
	// ChanID is LND's short channel id for the channel.
	ChanID Scid
	// Peer is the peer's 33-byte compressed node public key.
	Peer []byte
	// CapacitySat is the channel's capacity.
	CapacitySat uint64
	// LocalBalanceSat is this node's balance, without in-flight HTLCs.
	// Refreshed on channel events and at least every minute.
	LocalBalanceSat uint64
	// RemoteBalanceSat is the peer's balance.
	RemoteBalanceSat uint64
	// UnsettledBalanceSat is the sum of in-flight HTLCs.
	UnsettledBalanceSat uint64
	// Active is true when the peer is online and the link up.
	Active bool
	// Private is true for a channel that is not announced.
	Private bool
	// Initiator is true when this node opened the channel.
	Initiator bool
}

// Channel is the open channel with short channel id scid (or one of its
// aliases), and whether htlcgate knows it: not for an unknown or closed
// channel, nor while the channel cache is not loaded (LND unreachable, or the
// macaroon lacks offchain:read). Answered from memory, never waits on LND.
// Needs the `node` grant (`grants = ["node"]`): htlcgate refuses to load a
// plugin that calls it without. Outside wasip1 it answers what
// SetChannelForTest set.
func Channel(scid Scid) (ChannelInfo, bool) { return hostChannel(scid) }

// BlockHeight is the node's current block height, and whether it is known (not
// until LND answered once: the macaroon may lack info:read, or LND has been
// unreachable since start). Needs no grant. Outside wasip1 it answers what
// SetBlockHeightForTest set.
func BlockHeight() (uint32, bool) { return hostBlockHeight() }
