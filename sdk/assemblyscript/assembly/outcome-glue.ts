// The world's optional `outcome` export. Re-export it from the plugin's entry
// file when the Decider is an Observer:
//
//   export * from "htlcgate-sdk/assembly/glue";
//   export * from "htlcgate-sdk/assembly/outcome-glue";
//
// Without it the component does not export `outcome` and htlcgate never calls
// the plugin for outcomes (no cost per event); an Observer registered without
// it is refused at init, naming this line.

import { decodeOutcome } from "./outcome";
import { markOutcomeExported, runOutcome } from "./plugin";

markOutcomeExported();

/**
 * outcome: func(outcome: htlc-outcome). The record flattens to exactly 16 core
 * values (the canonical ABI's limit for direct parameters), so they arrive as
 * parameters: incoming key (2), option<outgoing key> (3), outcome-kind
 * (discriminant + 9 joined payload slots), at-unix-ms. It has no result, so
 * no cabi_post_outcome: the call's memory is released here.
 */
export function outcome(
  inChan: u64, inHtlc: u64, outSome: u32, outChan: u64, outHtlc: u64,
  kind: u32, p0: u64, p1: u64, p2: u32, p3: u32, p4: u32, p5: u64, p6: u64, p7: u32, p8: u32,
  atUnixMs: u64,
): void {
  runOutcome(decodeOutcome(inChan, inHtlc, outSome, outChan, outHtlc, kind, p0, p1, p2, p3, p4, p5, p6, p7, p8, atUnixMs));
  __htlcgate_release();
}
