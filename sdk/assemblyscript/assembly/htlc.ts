// The HTLC being decided: LND's ForwardHtlcInterceptRequest, field for field.

import { hostOnionBlob } from "./host";
import { FINAL_HOP } from "./scid";

/**
 * Identifies one HTLC at this node: the incoming channel and the HTLC's index
 * in it. A replayed HTLC has the same key (the payment hash is shared by MPP
 * parts and probes).
 */
export class CircuitKey {
  constructor(
    /** The incoming channel (format it with formatScid). */
    public chanId: u64,
    /** The HTLC's index within the incoming channel. */
    public htlcId: u64,
  ) {}

  /** chan_id:htlc_id with the numeric channel id, as htlcgate's logs show. */
  toString(): string {
    return this.chanId.toString() + ":" + this.htlcId.toString();
  }
}

/** Where the host writes the onion blob's (ptr, len). */
const ONION_RET = memory.data(8, 4);

/** Copies the list<u8> whose (ptr, len) is at `at` out of call memory. */
export function bytesAt(at: usize): Uint8Array {
  const n = load<u32>(at, 4);
  const out = new Uint8Array(n);
  if (n > 0) memory.copy(out.dataStart, <usize>load<u32>(at), n);
  return out;
}

/**
 * The HTLC LND holds and asks about. Amounts are in millisatoshi, expiries are
 * absolute block heights. It lives for one decide call (see the runtime's
 * per-call reset): copy what you keep.
 */
export class Htlc {
  /** The incoming channel and HTLC index. */
  key: CircuitKey = new CircuitKey(0, 0);
  /** Amount of the incoming HTLC. */
  incomingAmountMsat: u64 = 0;
  /** Block height at which the incoming HTLC expires. */
  incomingExpiry: u32 = 0;
  /** The 32-byte payment hash. */
  paymentHash: Uint8Array = new Uint8Array(0);
  /** Channel the sender asked to forward over: FINAL_HOP for this node, NODE_ADDRESSED with outgoingNodeId. */
  outgoingChan: u64 = 0;
  /** Amount to forward. */
  outgoingAmountMsat: u64 = 0;
  /** Block height at which the outgoing HTLC expires. */
  outgoingExpiry: u32 = 0;
  /** The onion payload's TLV records for this hop, by type. */
  customRecords: Map<u64, Uint8Array> = new Map<u64, Uint8Array>();
  /** Size of the next hop's onion blob (read it with onionBlob()). */
  onionBlobSize: u32 = 0;
  /** Block height at which LND fails the HTLC back by itself. */
  autoFailHeight: i32 = 0;
  /** TLV records of the peer's update_add_htlc, by type. */
  inWireCustomRecords: Map<u64, Uint8Array> = new Map<u64, Uint8Array>();
  /** 33-byte key of the node the sender asked to forward to, or null. */
  outgoingNodeId: Uint8Array | null = null;
  /**
   * How many times the chain has been asked about this HTLC: 1 the first time,
   * n + 1 after n holds. A replay after a restart starts again at 1.
   */
  attempt: u32 = 1;
  /** The onion blob once read (or set by a test). */
  private onion: Uint8Array | null = null;

  /** True for an HTLC to this node: outgoing channel 0 and no node id. */
  isFinalHop(): bool {
    return this.outgoingChan == FINAL_HOP && this.outgoingNodeId == null;
  }

  /** True when incoming - outgoing >= floorMsat, exactly (a negative fee never is). */
  feeAtLeast(floorMsat: u64): bool {
    if (this.incomingAmountMsat < this.outgoingAmountMsat) return false;
    return this.incomingAmountMsat - this.outgoingAmountMsat >= floorMsat;
  }

  /** incoming - outgoing; exact while both amounts are below 2^63. */
  feeMsat(): i64 {
    return <i64>this.incomingAmountMsat - <i64>this.outgoingAmountMsat;
  }

  /** The CLTV delta this node gets: incoming minus outgoing expiry. */
  cltvDelta(): i64 {
    return <i64>this.incomingExpiry - <i64>this.outgoingExpiry;
  }

  /** The next hop's onion blob; asks the host the first time. */
  onionBlob(): Uint8Array {
    let blob = this.onion;
    if (blob == null) {
      hostOnionBlob(ONION_RET);
      blob = bytesAt(ONION_RET);
      this.onion = blob;
    }
    return blob;
  }

  /** A forward of outgoingMsat for incomingMsat on channel 1, first attempt (for tests). */
  static forward(incomingMsat: u64, outgoingMsat: u64): Htlc {
    const h = new Htlc();
    h.key = new CircuitKey(1, 0);
    h.incomingAmountMsat = incomingMsat;
    h.outgoingAmountMsat = outgoingMsat;
    h.outgoingChan = (1 << 40) | (1 << 16);
    h.paymentHash = new Uint8Array(32);
    return h;
  }
}
