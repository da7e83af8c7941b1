// A plugin that exercises every part of the SDK's glue, for sdk.test.mjs.
import { Config, Decider, Htlc, Verdict, FailureCode, formatScid, info, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

class Echo extends Decider {
  calls: u32 = 0;
  constructor(private mode: string) {
    super();
  }
  decide(h: Htlc): Verdict {
    this.calls++;
    info(h.key.toString() + " " + formatScid(h.outgoingChan) + " onion " + h.onionBlob().length.toString());
    if (this.mode == "settle") {
      const pre = new Uint8Array(32);
      pre[0] = <u8>h.customRecords.size;
      return Verdict.settle(pre);
    }
    if (this.mode == "modify") {
      return Verdict.resumeModified()
        .withOutAmountMsat(h.outgoingAmountMsat - 1)
        .withWireRecord(65539, Uint8Array.wrap(String.UTF8.encode("b")))
        .withWireRecord(65537, h.paymentHash);
    }
    if (this.mode == "fail") return Verdict.fail(FailureCode.InvalidOnionKey);
    if (this.mode == "lone") {
      // Lone surrogates have no UTF-8 form: the glue writes U+FFFD instead.
      info("lone " + String.fromCharCode(0xdc00) + String.fromCharCode(0xd800) + " end");
      return Verdict.resume();
    }
    if (this.mode == "zeroed") {
      // Fresh containers must be zero even over memory an earlier call dirtied.
      let dirty = 0;
      const b = new Uint8Array(8192);
      for (let i = 0; i < b.length; i++) if (b[i] != 0) dirty++;
      const a = new Array<u64>(512);
      for (let i = 0; i < a.length; i++) if (a[i] != 0) dirty++;
      const grown: u32[] = [];
      for (let i = 0; i < 600; i++) grown.push(0);
      grown.length = 2048;
      for (let i = 0; i < grown.length; i++) if (grown[i] != 0) dirty++;
      info("dirty " + dirty.toString());
      return Verdict.next();
    }
    return this.calls % 2 == 0 ? Verdict.resume() : Verdict.next();
  }
}

function init(config: Config): Decider {
  config.denyUnknown(["mode", "n", "lone"]);
  config.u64Or("n", 0);
  if (config.has("lone")) config.refuse("refused " + String.fromCharCode(0xd800) + " here");
  return new Echo(config.stringOr("mode", "alternate"));
}

register(init);
