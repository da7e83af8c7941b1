// A plugin's answer for one HTLC. The host checks every verdict before it
// reaches LND (a settle's preimage must hash to the payment hash, record keys
// must be >= 65536 and distinct, amounts not 0): a bad one is a plugin fault,
// never a lost HTLC.

/** The only failure codes LND accepts from an interceptor. */
export enum FailureCode {
  /** BOLT 4's TEMPORARY_CHANNEL_FAILURE (0x1007): the usual "not now". */
  TemporaryChannelFailure = 0,
  /** INVALID_ONION_HMAC (0x8005). */
  InvalidOnionHmac = 1,
  /** INVALID_ONION_KEY (0x8006). */
  InvalidOnionKey = 2,
  /** INVALID_ONION_VERSION (0x8004). */
  InvalidOnionVersion = 3,
}

/** Which answer a Verdict is (the WIT `resolution` case). */
export enum VerdictKind {
  /** No opinion: the next plugin decides. */
  Next = 0,
  /** Forward unchanged (RESUME). */
  Resume = 1,
  /** Fail back with a code (FAIL). */
  Fail = 2,
  /** Settle with a preimage (SETTLE). */
  Settle = 3,
  /** Forward with changes (RESUME_MODIFIED). */
  ResumeModified = 4,
  /** Keep it held at LND and ask again after holdMs (world 0.2.0). */
  Hold = 5,
}

const CODE_NAMES: string[] = [
  "temporary-channel-failure",
  "invalid-onion-hmac",
  "invalid-onion-key",
  "invalid-onion-version",
];

/** A plugin's answer; build it with the static constructors. */
export class Verdict {
  /** Which answer this is. */
  kind: VerdictKind = VerdictKind.Next;
  /** The failure code (Fail). */
  code: FailureCode = FailureCode.TemporaryChannelFailure;
  /** The preimage (Settle; 32 bytes). */
  preimage: Uint8Array | null = null;
  /** Whether inAmountMsat is set (ResumeModified). */
  hasInAmount: bool = false;
  /** New incoming wire amount (ResumeModified, not 0). */
  inAmountMsat: u64 = 0;
  /** Whether outAmountMsat is set (ResumeModified). */
  hasOutAmount: bool = false;
  /** New amount to forward (ResumeModified, not 0). */
  outAmountMsat: u64 = 0;
  /** TLV records for the outgoing update_add_htlc (ResumeModified; keys >= 65536). */
  wireRecords: Map<u64, Uint8Array> = new Map<u64, Uint8Array>();
  /** How long to hold before asking again, in milliseconds (Hold). */
  holdMs: u32 = 0;

  /** No opinion: the following plugin decides. */
  static next(): Verdict {
    return new Verdict();
  }

  /** Forward the HTLC unchanged. */
  static resume(): Verdict {
    const v = new Verdict();
    v.kind = VerdictKind.Resume;
    return v;
  }

  /** Fail the HTLC back with `code`. */
  static fail(code: FailureCode): Verdict {
    const v = new Verdict();
    v.kind = VerdictKind.Fail;
    v.code = code;
    return v;
  }

  /** Fail back with TEMPORARY_CHANNEL_FAILURE; always safe for funds. */
  static failTemporary(): Verdict {
    return Verdict.fail(FailureCode.TemporaryChannelFailure);
  }

  /** Settle here with a 32-byte preimage (the host checks its hash). */
  static settle(preimage: Uint8Array): Verdict {
    const v = new Verdict();
    v.kind = VerdictKind.Settle;
    v.preimage = preimage;
    return v;
  }

  /** Forward with changes; add them with the with* methods. */
  static resumeModified(): Verdict {
    const v = new Verdict();
    v.kind = VerdictKind.ResumeModified;
    return v;
  }

  /**
   * Keep the HTLC held at LND (no answer yet) and ask this plugin again in `ms`
   * milliseconds, with htlc.attempt one higher; the plugins before it are not
   * asked again, unless the chain was reloaded meanwhile (then the new chain is
   * asked from its start: a plugin that counts HTLCs should count each circuit
   * key once). The host bounds every hold (`[chain] max_hold_ms`, default
   * 60 s from the HTLC's arrival, and a margin before autoFailHeight); at the
   * bound the plugin's `on_hold_expiry` verdict (default: fail with
   * temporary-channel-failure) is sent instead.
   */
  static hold(ms: u32): Verdict {
    const v = new Verdict();
    v.kind = VerdictKind.Hold;
    v.holdMs = ms;
    return v;
  }

  /** Changes the incoming HTLC's wire amount (msat, not 0). */
  withInAmountMsat(msat: u64): Verdict {
    this.hasInAmount = true;
    this.inAmountMsat = msat;
    return this;
  }

  /** Changes the amount to forward (msat, not 0). */
  withOutAmountMsat(msat: u64): Verdict {
    this.hasOutAmount = true;
    this.outAmountMsat = msat;
    return this;
  }

  /** Sets TLV record `key` (>= 65536) on the outgoing update_add_htlc. */
  withWireRecord(key: u64, value: Uint8Array): Verdict {
    this.wireRecords.set(key, value);
    return this;
  }

  /** True for next. */
  isNext(): bool {
    return this.kind == VerdictKind.Next;
  }

  /** The verdict in words, e.g. "fail(temporary-channel-failure)". */
  toString(): string {
    switch (this.kind) {
      case VerdictKind.Next: return "next";
      case VerdictKind.Resume: return "resume";
      case VerdictKind.Fail: return "fail(" + CODE_NAMES[<i32>this.code] + ")";
      case VerdictKind.Settle: return "settle";
      case VerdictKind.Hold: return "hold(" + this.holdMs.toString() + " ms)";
      default: return "resume-modified";
    }
  }
}
