// A plugin that uses every world 0.2.0 power, for sdk.test.mjs: attempt, hold,
// kv, channel, block-height and the optional outcome export.
import {
  Config, Decider, Htlc, Observer, Outcome, OutcomeKind, Verdict, blockHeight, channel, info,
  kvDelete, kvGet, kvSet, outcomeKindName, register, utf8,
} from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";
export * from "htlcgate-sdk/assembly/outcome-glue";

function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
  return s;
}

class Powers extends Observer {
  decide(h: Htlc): Verdict {
    const c = channel(h.key.chanId);
    const peer = c != null ? hex(c.peer).slice(0, 4) + " cap " + c.capacitySat.toString() +
      " local " + c.localBalanceSat.toString() + " remote " + c.remoteBalanceSat.toString() +
      " unsettled " + c.unsettledBalanceSat.toString() + " flags " + (c.active ? "A" : "-") +
      (c.isPrivate ? "P" : "-") + (c.initiator ? "I" : "-") : "unknown";
    info("attempt " + h.attempt.toString() + " height " + blockHeight().toString() + " peer " + peer);

    const key = utf8("htlc/" + h.key.htlcId.toString());
    const before = kvGet(key);
    const setErr = kvSet(key, utf8("seen"));
    const after = kvGet(key);
    const afterValue = after.value;
    info("kv before " + (before.value != null ? "some" : "none") +
      " set " + (setErr != null ? setErr.toString() : "ok") +
      " after " + (afterValue != null ? String.UTF8.decode(afterValue.buffer) : "none"));
    if (h.key.htlcId == 99) {
      const d1 = kvDelete(key);
      const d2 = kvDelete(key);
      info("delete " + (d1.existed ? "existed" : "absent") + " then " + (d2.existed ? "existed" : "absent"));
    }
    return h.attempt == 1 ? Verdict.hold(250) : Verdict.next();
  }

  outcome(o: Outcome): void {
    let s = "outcome " + outcomeKindName(o.kind) + " " + o.key.toString();
    const out = o.outgoingKey;
    s += " out " + (out != null ? out.toString() : "none");
    if (o.kind == OutcomeKind.Forwarded || o.kind == OutcomeKind.LinkFailed) {
      s += " amounts " + o.amounts.incomingAmountMsat.toString() + "/" + o.amounts.outgoingAmountMsat.toString() +
        "/" + o.amounts.incomingExpiry.toString() + "/" + o.amounts.outgoingExpiry.toString();
    }
    const pre = o.preimage;
    if (o.kind == OutcomeKind.Settled && pre != null) s += " preimage " + hex(pre).slice(0, 6) + " len " + pre.length.toString();
    const f = o.linkFailure;
    if (f != null) s += " code " + f.wireFailureCode.toString() + " " + f.detail + " '" + f.message + "'";
    if (o.kind == OutcomeKind.Final) s += " settled " + (o.settled ? "yes" : "no") + " offchain " + (o.offchain ? "yes" : "no");
    s += " at " + o.atUnixMs.toString();
    info(s);
    kvSet(utf8("outcome/" + outcomeKindName(o.kind)), utf8("1"));
  }
}

function init(config: Config): Decider {
  config.denyUnknown([]);
  return new Powers();
}

register(init);
