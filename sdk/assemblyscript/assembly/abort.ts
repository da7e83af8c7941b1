// The abort handler: AssemblyScript calls `abort` on a failed assertion, an
// out-of-bounds access or `throw`. By default that is an import (`env.abort`),
// which the world does not provide; build with
//   --use abort=~lib/htlcgate-sdk/assembly/abort/abort
// so that an abort logs its message and traps (htlcgate replaces the instance).

import { LogLevel, log } from "./log";

export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const m = message != null ? message : "abort";
  const f = fileName != null ? fileName : "?";
  log(LogLevel.Error, m + " at " + f + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
