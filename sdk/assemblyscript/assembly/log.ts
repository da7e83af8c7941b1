// Log lines into htlcgate's log, tagged with the plugin's name by the host. The
// host rate-limits each plugin: lines beyond its limit are counted, not written
// (they still cost fuel).

import { hostLog, hostNowUnixMs, worldUtf8 } from "./host";

/** Severity of a log line. */
export enum LogLevel {
  /** Fine-grained detail. */
  Debug = 0,
  /** Normal operation. */
  Info = 1,
  /** Something unexpected the operator may want to see. */
  Warn = 2,
  /** Something failed. */
  Error = 3,
}

/**
 * Writes `message` at `level`. Lone surrogates in it (no UTF-8 form) are
 * written as U+FFFD: the host would otherwise fault the plugin.
 */
export function log(level: LogLevel, message: string): void {
  const utf8 = worldUtf8(message);
  hostLog(<u32>level, changetype<usize>(utf8), <usize>utf8.byteLength);
}

/** Writes a fine-grained detail line. */
export function debug(message: string): void {
  log(LogLevel.Debug, message);
}

/** Writes a normal-operation line. */
export function info(message: string): void {
  log(LogLevel.Info, message);
}

/** Writes a line about something unexpected. */
export function warn(message: string): void {
  log(LogLevel.Warn, message);
}

/** Writes a line about something that failed. */
export function error(message: string): void {
  log(LogLevel.Error, message);
}

/** Wall-clock time from the host: milliseconds since the Unix epoch. */
export function nowUnixMs(): u64 {
  return hostNowUnixMs();
}
