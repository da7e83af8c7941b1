// What happened to an HTLC after the verdict: the world's `htlc-outcome`, one
// per LND event. A Decider that wants them extends Observer (plugin.ts) and
// the entry file re-exports the optional `outcome` export:
//
//   export * from "htlcgate-sdk/assembly/outcome-glue";

import { CircuitKey } from "./htlc";

/**
 * What happened (the WIT `outcome-kind` case). A forward goes Forwarded ->
 * Settled or ForwardFailed -> Final; a refused one LinkFailed -> Final; one
 * that htlcgate failed or settled ForwardFailed / Settled -> Final.
 */
export enum OutcomeKind {
  /** Added to the outgoing channel (not final); `amounts` is set. */
  Forwarded = 0,
  /** Settled downstream or by a settle verdict; `preimage` is set. Not final. */
  Settled = 1,
  /** Failed back without a link error at this node (LND gives no reason). */
  ForwardFailed = 2,
  /** This node refused it after the verdict; `linkFailure` and `amounts` are set. */
  LinkFailed = 3,
  /** Irrevocably resolved, the last event; `settled` and `offchain` are set. */
  Final = 4,
}

const KIND_NAMES: string[] = ["forwarded", "settled", "forward-failed", "link-failed", "final"];

/** The kind's name as in the WIT world, e.g. "forward-failed". */
export function outcomeKindName(kind: OutcomeKind): string {
  const i = <i32>kind;
  return i >= 0 && i < KIND_NAMES.length ? KIND_NAMES[i] : "outcome-kind(" + i.toString() + ")";
}

/** Amounts (msat) and expiries (block heights) LND reports (routerrpc.HtlcInfo). */
export class HtlcAmounts {
  /** The incoming HTLC's amount (0 when LND does not know it). */
  incomingAmountMsat: u64 = 0;
  /** The outgoing HTLC's amount (0 for failures before the onion was read). */
  outgoingAmountMsat: u64 = 0;
  /** The incoming HTLC's CLTV expiry. */
  incomingExpiry: u32 = 0;
  /** The outgoing HTLC's CLTV expiry. */
  outgoingExpiry: u32 = 0;
}

/** Why this node refused to forward (LND's LinkFailEvent); amounts are in Outcome.amounts. */
export class LinkFailure {
  /** The BOLT 4 failure sent back, as lnrpc.Failure.FailureCode (e.g. 1007, 12). */
  wireFailureCode: i32 = 0;
  /** LND's failure detail name (e.g. "INSUFFICIENT_BALANCE"). */
  detail: string = "";
  /** LND's text for the failure. */
  message: string = "";
}

/** One event about an HTLC htlcgate decided (or a plugin held). Lives for one call. */
export class Outcome {
  /** The incoming channel and HTLC index: the key decide saw. */
  key: CircuitKey = new CircuitKey(0, 0);
  /** The outgoing channel and HTLC index, when LND names one (not for Final). */
  outgoingKey: CircuitKey | null = null;
  /** What happened; says which fields below are set. */
  kind: OutcomeKind = OutcomeKind.Forwarded;
  /** LND's amounts (Forwarded, LinkFailed). */
  amounts: HtlcAmounts = new HtlcAmounts();
  /** The 32-byte preimage (Settled). */
  preimage: Uint8Array | null = null;
  /** Why this node refused it (LinkFailed). */
  linkFailure: LinkFailure | null = null;
  /** Settled (true) or failed (Final). */
  settled: bool = false;
  /** Resolved off-chain (false: on-chain after a force close) (Final). */
  offchain: bool = false;
  /** When, by LND's clock: ms since the Unix epoch. */
  atUnixMs: u64 = 0;
}

/** Copies `n` bytes at `ptr` out of call memory. */
function copyAt(ptr: usize, n: usize): Uint8Array {
  const out = new Uint8Array(<i32>n);
  if (n > 0) memory.copy(out.dataStart, ptr, n);
  return out;
}

/**
 * Lifts `htlc-outcome` from its 16 flat values (see outcome-glue.ts); the
 * kind's payload slots p0..p8 are the cases' flat values joined slot by slot.
 */
export function decodeOutcome(
  inChan: u64, inHtlc: u64, outSome: u32, outChan: u64, outHtlc: u64,
  kind: u32, p0: u64, p1: u64, p2: u32, p3: u32, p4: u32, p5: u64, p6: u64, p7: u32, p8: u32,
  atUnixMs: u64,
): Outcome {
  const o = new Outcome();
  o.key = new CircuitKey(inChan, inHtlc);
  if (outSome != 0) o.outgoingKey = new CircuitKey(outChan, outHtlc);
  o.kind = <OutcomeKind>kind;
  o.atUnixMs = atUnixMs;
  if (kind == <u32>OutcomeKind.Forwarded) {
    o.amounts.incomingAmountMsat = p0;
    o.amounts.outgoingAmountMsat = p1;
    o.amounts.incomingExpiry = p2;
    o.amounts.outgoingExpiry = p3;
  } else if (kind == <u32>OutcomeKind.Settled) {
    o.preimage = copyAt(<usize><u32>p0, <usize><u32>p1);
  } else if (kind == <u32>OutcomeKind.LinkFailed) {
    const f = new LinkFailure();
    f.wireFailureCode = <i32><u32>p0; // an s32 zero-extended into the i64 slot
    f.detail = String.UTF8.decodeUnsafe(<usize><u32>p1, <usize>p2);
    f.message = String.UTF8.decodeUnsafe(<usize>p3, <usize>p4);
    o.linkFailure = f;
    o.amounts.incomingAmountMsat = p5;
    o.amounts.outgoingAmountMsat = p6;
    o.amounts.incomingExpiry = p7;
    o.amounts.outgoingExpiry = p8;
  } else if (kind == <u32>OutcomeKind.Final) {
    o.settled = <u32>p0 != 0;
    o.offchain = <u32>p1 != 0;
  }
  return o;
}
