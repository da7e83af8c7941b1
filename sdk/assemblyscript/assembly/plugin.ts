// A plugin: the Decider its init function builds, registered once.

import { Config } from "./config";
import { Htlc } from "./htlc";
import { Outcome } from "./outcome";
import { Verdict } from "./verdict";
import { error } from "./log";

/** Decides HTLCs, one at a time, on one long-lived instance. */
export class Decider {
  /**
   * Answers for one HTLC. Verdict.next() passes it on; any other verdict ends
   * the chain. Override this.
   */
  decide(htlc: Htlc): Verdict {
    return Verdict.next();
  }
}

/**
 * A Decider that also wants to know how the HTLCs went on after its verdicts:
 * htlcgate calls outcome() for every LND event about an HTLC it decided (also
 * those decided before a restart) and for HTLCs LND resolved by itself while a
 * plugin held them. Calls come on the same instance and queue as decide, under
 * the same limits; a trap there is logged and counted and never changes a
 * verdict. LND does not replay events sent while htlcgate was not subscribed:
 * a plugin that counts in-flight HTLCs should also expire entries (e.g. once
 * blockHeight() passes their incomingExpiry). Memory allocated during the call
 * is released after it, like decide's.
 *
 * The entry file must also re-export the optional export:
 *   export * from "htlcgate-sdk/assembly/outcome-glue";
 */
export class Observer extends Decider {
  /** Is told one event about an HTLC. Override this. */
  outcome(o: Outcome): void {}
}

/** Builds the Decider from the config; a problem recorded in the config refuses the load. */
export type InitFn = (config: Config) => Decider;

function notRegistered(config: Config): Decider {
  config.refuse("the plugin registered no init function: call register(init) at the top level of the entry file");
  return new Decider();
}

let registered: InitFn = notRegistered;
let current: Decider | null = null;
let outcomeExported: bool = false;

/** Called by outcome-glue.ts when it is part of the module (it exports `outcome`). */
export function markOutcomeExported(): void {
  outcomeExported = true;
}

/** Makes `init` the plugin's init function; call it once at the top level of the entry file. */
export function register(init: InitFn): void {
  registered = init;
}

/** The exported init: builds the Decider, or returns why not. */
export function runInit(config: Config): string | null {
  // A refused (re-)init must not leave an old Decider answering.
  current = null;
  const d = registered(config);
  const err = config.error;
  if (err != null) return err;
  if (d instanceof Observer && !outcomeExported) {
    return "the Decider is an Observer, but the module does not export `outcome`, so outcome() would never be called: add `export * from \"htlcgate-sdk/assembly/outcome-glue\";` to the entry file";
  }
  current = d;
  return null;
}

/** The exported decide: asks the Decider, or answers next. */
export function runDecide(htlc: Htlc): Verdict {
  const d = current;
  if (d == null) {
    // `next` has no effect of its own: the chain goes on as if this plugin
    // were absent, which cannot lose an HTLC.
    error("decide called before a successful init; answering `next`");
    return Verdict.next();
  }
  return d.decide(htlc);
}

/** The exported outcome: tells the Decider, if it is an Observer. */
export function runOutcome(o: Outcome): void {
  const d = current;
  if (d != null && d instanceof Observer) (<Observer>d).outcome(o);
}
