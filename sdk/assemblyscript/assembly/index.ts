// htlcgate plugin SDK for AssemblyScript. See ../README.md.
//
//   import { Config, Decider, Htlc, Verdict, register } from "htlcgate-sdk";
//   export * from "htlcgate-sdk/assembly/glue";

export { Config } from "./config";
export { CircuitKey, Htlc } from "./htlc";
export { LogLevel, debug, error, info, log, nowUnixMs, warn } from "./log";
export { Decider, InitFn, register } from "./plugin";
export { FINAL_HOP, NODE_ADDRESSED, ParsedScid, formatScid, parseScid } from "./scid";
export { FailureCode, Verdict, VerdictKind } from "./verdict";
