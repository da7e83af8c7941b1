// as-invalid-utf8: a fixture whose decide logs a string with a lone surrogate
// (an AssemblyScript string is UTF-16 and may hold one; it has no UTF-8 form)
// and resumes; with config `refuse` set, its init refuses with such a string.
// The world's strings must be UTF-8: tests load it to prove that the SDK
// repairs the text (a lone surrogate becomes U+FFFD) rather than letting the
// host reject it, which would turn a log call into a plugin fault. Not a
// policy. Config: refuse (optional, any value).

import { Config, Decider, Htlc, Verdict, info, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

/** A lone low surrogate and a lone high one (in this order they form no pair). */
const LONE = String.fromCharCode(0xdc00) + String.fromCharCode(0xd800);

class LogsBadText extends Decider {
  decide(htlc: Htlc): Verdict {
    info("surrogates " + LONE + " end");
    return Verdict.resume();
  }
}

function init(config: Config): Decider {
  config.denyUnknown(["refuse"]);
  if (config.has("refuse")) config.refuse("refused " + LONE + " here");
  return new LogsBadText();
}

register(init);
