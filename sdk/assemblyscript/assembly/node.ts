// What htlcgate knows about this node: its open channels (import `channel`,
// grant `node`) and the block height (import `block-height`, no grant). Both
// are answered from htlcgate's memory and never wait on LND.

import { hostBlockHeight, hostChannel } from "./host";
import { bytesAt } from "./htlc";

/** Where the host writes option<channel-info> (64 bytes, align 8). */
const CHANNEL_RET = memory.data(64, 8);
/** Where the host writes option<u32> (8 bytes, align 4). */
const HEIGHT_RET = memory.data(8, 4);

/** One of this node's open channels (balances in satoshis). */
export class ChannelInfo {
  /** LND's short channel id for the channel. */
  chanId: u64 = 0;
  /** The peer's 33-byte compressed node public key. */
  peer: Uint8Array = new Uint8Array(0);
  /** The channel's capacity. */
  capacitySat: u64 = 0;
  /** This node's balance, without in-flight HTLCs (refreshed on events and at least every minute). */
  localBalanceSat: u64 = 0;
  /** The peer's balance. */
  remoteBalanceSat: u64 = 0;
  /** Sum of in-flight HTLCs. */
  unsettledBalanceSat: u64 = 0;
  /** The peer is online and the link up. */
  active: bool = false;
  /** The channel is not announced (WIT `private`). */
  isPrivate: bool = false;
  /** This node opened the channel. */
  initiator: bool = false;
}

/** Lifts option<channel-info> at `ret` (some u8 at 0, the record at 8). */
export function channelAt(ret: usize): ChannelInfo | null {
  if (load<u8>(ret) == 0) return null;
  const c = new ChannelInfo();
  const r = ret + 8;
  c.chanId = load<u64>(r, 0);
  c.peer = bytesAt(r + 8);
  c.capacitySat = load<u64>(r, 16);
  c.localBalanceSat = load<u64>(r, 24);
  c.remoteBalanceSat = load<u64>(r, 32);
  c.unsettledBalanceSat = load<u64>(r, 40);
  c.active = load<u8>(r, 48) != 0;
  c.isPrivate = load<u8>(r, 49) != 0;
  c.initiator = load<u8>(r, 50) != 0;
  return c;
}

/**
 * The open channel with short channel id `scid` (or one of its aliases), or
 * null: for an unknown or closed channel, and while the channel cache is not
 * loaded (LND unreachable, or the macaroon lacks offchain:read). Needs the
 * `node` grant. Lives in call memory (released after the call).
 */
export function channel(scid: u64): ChannelInfo | null {
  hostChannel(scid, CHANNEL_RET);
  return channelAt(CHANNEL_RET);
}

/**
 * The node's current block height, or 0 while it is not known (the macaroon
 * lacks info:read, or LND has been unreachable since start; no live node is at
 * the genesis block). Needs no grant.
 */
export function blockHeight(): u32 {
  hostBlockHeight(HEIGHT_RET);
  return load<u8>(HEIGHT_RET) != 0 ? load<u32>(HEIGHT_RET, 4) : 0;
}
