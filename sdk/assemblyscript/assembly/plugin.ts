// A plugin: the Decider its init function builds, registered once.

import { Config } from "./config";
import { Htlc } from "./htlc";
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

/** Builds the Decider from the config; a problem recorded in the config refuses the load. */
export type InitFn = (config: Config) => Decider;

function notRegistered(config: Config): Decider {
  config.refuse("the plugin registered no init function: call register(init) at the top level of the entry file");
  return new Decider();
}

let registered: InitFn = notRegistered;
let current: Decider | null = null;

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
