// as-spin-forever: a fault fixture whose decide never returns. Tests load it to
// prove that an AssemblyScript plugin stuck in a loop is stopped by the host
// (fuel or wall-clock deadline) exactly like the Rust spin-forever. Not a
// policy: do not put it in a real chain. Config: none.

import { Config, Decider, Htlc, Verdict, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

/** Global, so that the loop has an effect the optimizer must keep. */
let spins: u64 = 0;

class SpinForever extends Decider {
  decide(htlc: Htlc): Verdict {
    while (true) {
      spins++;
    }
    return Verdict.next();
  }
}

function init(config: Config): Decider {
  config.denyUnknown([]);
  return new SpinForever();
}

register(init);
