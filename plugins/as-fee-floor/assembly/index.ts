// as-fee-floor: the fee-floor policy in AssemblyScript. It fails forwards that
// pay this node less than base_msat + ppm * outgoing / 1_000_000 (rounded down)
// with TEMPORARY_CHANNEL_FAILURE and says next to everything else, exactly like
// the Rust plugins/fee-floor (tests/cross_language.rs checks 1,000 HTLCs).
//
// Config (both optional, default 0): base_msat, ppm.

import { Config, Decider, Htlc, Verdict, debug, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

class FeeFloor extends Decider {
  constructor(
    /** Fixed part of the minimum fee, msat. */
    private baseMsat: u64,
    /** Proportional part, parts per million of the outgoing amount. */
    private ppm: u64,
  ) {
    super();
  }

  /**
   * Whether forwarding `outgoing` for `incoming` pays at least the floor, exact
   * for every u64: ppm * outgoing is a 128-bit product divided in two steps,
   * and a floor of 2^64 or more is above any fee.
   */
  paysEnough(incoming: u64, outgoing: u64): bool {
    if (incoming < outgoing) return false; // a negative fee never pays
    const fee = incoming - outgoing;
    // 128-bit ppm * outgoing as hi:lo from 32-bit halves.
    const aLo = this.ppm & 0xffffffff, aHi = this.ppm >> 32;
    const bLo = outgoing & 0xffffffff, bHi = outgoing >> 32;
    const ll = aLo * bLo, lh = aLo * bHi, hl = aHi * bLo, hh = aHi * bHi;
    const mid = (ll >> 32) + (lh & 0xffffffff) + (hl & 0xffffffff);
    const lo = (ll & 0xffffffff) | (mid << 32);
    const hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    // (hi:lo) / 10^6: the high word first, then the remainder with the low
    // word, 32 bits at a time (each step's dividend stays below 2^52).
    const d: u64 = 1_000_000;
    if (hi / d != 0) return false;
    let rem = hi % d;
    const n1 = (rem << 32) | (lo >> 32);
    const q1 = n1 / d;
    rem = n1 % d;
    const n0 = (rem << 32) | (lo & 0xffffffff);
    const q0 = n0 / d;
    const quotient = (q1 << 32) + q0;
    const floor = this.baseMsat + quotient;
    if (floor < this.baseMsat) return false; // the floor overflows u64
    return fee >= floor;
  }

  decide(htlc: Htlc): Verdict {
    // A payment to this node earns no forwarding fee: not ours to judge.
    if (htlc.isFinalHop()) return Verdict.next();
    if (this.paysEnough(htlc.incomingAmountMsat, htlc.outgoingAmountMsat)) return Verdict.next();
    debug(htlc.key.toString() + ": fee below floor for " + htlc.outgoingAmountMsat.toString() + " msat out");
    // Failing a forward is always safe for funds: the HTLC goes back to the
    // sender and this node only forgoes the (too small) fee.
    return Verdict.failTemporary();
  }
}

function init(config: Config): Decider {
  config.denyUnknown(["base_msat", "ppm"]);
  return new FeeFloor(config.u64Or("base_msat", 0), config.u64Or("ppm", 0));
}

register(init);
