// htlcgate plugin SDK for AssemblyScript. See ../README.md.
//
//   import { Config, Decider, Htlc, Verdict, register } from "htlcgate-sdk";
//   export * from "htlcgate-sdk/assembly/glue";
//   export * from "htlcgate-sdk/assembly/outcome-glue"; // only for an Observer

export { Config } from "./config";
export { CircuitKey, Htlc } from "./htlc";
export { KvDeleteResult, KvError, KvErrorKind, KvGetResult, kvDelete, kvGet, kvSet, utf8 } from "./kv";
export { LogLevel, debug, error, info, log, nowUnixMs, warn } from "./log";
export { ChannelInfo, blockHeight, channel } from "./node";
export { HtlcAmounts, LinkFailure, Outcome, OutcomeKind, outcomeKindName } from "./outcome";
export { Decider, InitFn, Observer, register } from "./plugin";
export { FINAL_HOP, NODE_ADDRESSED, ParsedScid, formatScid, parseScid } from "./scid";
export { FailureCode, Verdict, VerdictKind } from "./verdict";
