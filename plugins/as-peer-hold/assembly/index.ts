// as-peer-hold: the powers of world htlcgate:plugin@0.2.0 in AssemblyScript,
// deciding exactly like plugins/go-peer-hold.
//
// On an HTLC's first attempt it looks up the incoming channel (channel(),
// grant `node`) to find the peer, counts the HTLC under that peer in its
// key-value namespace (grant `kv`) and holds the HTLC for hold_ms; asked again
// (attempt 2 and later) it has no opinion (next), so the rest of the chain
// decides. It also counts the outcomes htlcgate tells it about (it is an
// Observer and re-exports the outcome glue).
//
// Not a policy to run as is: holding every HTLC delays every payment.
//
// Config: hold_ms (default 100; 0 never holds). Grants: kv, node.
//
// Key-value state, each value an 8-byte big-endian counter:
//   peer/<66 hex digits of the peer's key>   first attempts from that peer
//   peer/unknown                             ... over a channel htlcgate does not know
//   outcome/<kind>                           outcomes of that kind (forwarded, settled,
//                                            forward-failed, link-failed), and
//   outcome/final/settled, outcome/final/failed
//   link-failed/<LND's failure detail>       refusals by reason
//   forwarded-msat                           total outgoing msat of forwarded HTLCs
// A key-value error is logged and never changes a verdict.

import {
  Config, Decider, Htlc, Observer, Outcome, OutcomeKind, Verdict, channel, debug, kvGet, kvSet, outcomeKindName,
  register, utf8, warn,
} from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";
export * from "htlcgate-sdk/assembly/outcome-glue";

const HEX = "0123456789abcdef";

function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX.charAt(b[i] >> 4) + HEX.charAt(b[i] & 15);
  return s;
}

/** The kv key counting HTLCs from the incoming channel's peer. */
function peerKey(chanId: u64): string {
  const c = channel(chanId);
  return c != null ? "peer/" + hex(c.peer) : "peer/unknown";
}

/** Adds one to the counter under `key`. */
function bump(key: string): void {
  add(key, 1);
}

/** Adds `by` to the 8-byte big-endian counter under `key` (wrapping at 2^64). */
function add(key: string, by: u64): void {
  const k = utf8(key);
  const got = kvGet(k);
  const err = got.error;
  if (err != null) {
    warn("cannot read " + key + ": " + err.toString());
    return;
  }
  let n: u64 = 0;
  const v = got.value;
  if (v != null && v.length == 8) {
    for (let i = 0; i < 8; i++) n = (n << 8) | <u64>v[i];
  }
  n += by;
  const out = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    out[i] = <u8>(n & 0xff);
    n >>= 8;
  }
  const setErr = kvSet(k, out);
  if (setErr != null) warn("cannot count " + key + ": " + setErr.toString());
}

class PeerHold extends Observer {
  constructor(
    /** How long a first attempt is held, ms; 0 never holds. */
    private holdMs: u32,
  ) {
    super();
  }

  decide(htlc: Htlc): Verdict {
    if (htlc.attempt > 1) {
      debug(htlc.key.toString() + ": attempt " + htlc.attempt.toString() + ", passing on");
      return Verdict.next();
    }
    bump(peerKey(htlc.key.chanId));
    return this.holdMs == 0 ? Verdict.next() : Verdict.hold(this.holdMs);
  }

  outcome(o: Outcome): void {
    if (o.kind == OutcomeKind.Final) {
      bump(o.settled ? "outcome/final/settled" : "outcome/final/failed");
      return;
    }
    if (o.kind == OutcomeKind.Forwarded) add("forwarded-msat", o.amounts.outgoingAmountMsat);
    const f = o.linkFailure;
    if (f != null) bump("link-failed/" + f.detail);
    bump("outcome/" + outcomeKindName(o.kind));
  }
}

function init(config: Config): Decider {
  config.denyUnknown(["hold_ms"]);
  const ms = config.u64Or("hold_ms", 100);
  if (ms > <u64>u32.MAX_VALUE) {
    config.refuse("config key `hold_ms`: expected at most 4294967295 (ms), got " + ms.toString());
  }
  return new PeerHold(<u32>ms);
}

register(init);
