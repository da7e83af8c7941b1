// Short channel ids: the u64 LND uses for a channel, shown as BLOCKxTXxOUT
// (block height: 3 bytes | transaction index: 3 bytes | output index: 2 bytes).

/** The outgoing channel LND reports for an HTLC to this node. */
export const FINAL_HOP: u64 = 0;
/** The all-ones outgoing channel LND reports for node-addressed forwards. */
export const NODE_ADDRESSED: u64 = u64.MAX_VALUE;

/** Writes a channel id as BLOCKxTXxOUT (e.g. 800000x1x0). */
export function formatScid(id: u64): string {
  return (id >> 40).toString() + "x" + ((id >> 16) & 0xffffff).toString() + "x" + (id & 0xffff).toString();
}

/** The result of parseScid: a channel id, or why the text is not one. */
export class ParsedScid {
  /** The id (0 when `error` is set). */
  value: u64 = 0;
  /** What is wrong, as a phrase; null when the text parsed. */
  error: string | null = null;
}

function digits(s: string): bool {
  if (s.length == 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Parses decimal digits into a u64; false on overflow. */
export function parseDigits(s: string, out: StaticArray<u64>): bool {
  let n: u64 = 0;
  for (let i = 0; i < s.length; i++) {
    const d = <u64>(s.charCodeAt(i) - 48);
    if (n > (u64.MAX_VALUE - d) / 10) return false;
    n = n * 10 + d;
  }
  out[0] = n;
  return true;
}

/**
 * Parses BLOCKxTXxOUT (block and tx index below 2^24, output below 2^16) or a
 * decimal u64 (lncli's chan_id), without surrounding whitespace.
 */
export function parseScid(s: string): ParsedScid {
  const r = new ParsedScid();
  const n = new StaticArray<u64>(1);
  if (!s.includes("x")) {
    if (s.length == 0) r.error = "empty channel id";
    else if (!digits(s)) r.error = "neither BLOCKxTXxOUT nor a decimal channel id";
    else if (!parseDigits(s, n)) r.error = "decimal channel id larger than 2^64 - 1";
    else r.value = n[0];
    return r;
  }
  const parts = s.split("x");
  if (parts.length != 3) {
    r.error = "a BLOCKxTXxOUT id has exactly three parts";
    return r;
  }
  const v = new StaticArray<u64>(3);
  for (let i = 0; i < 3; i++) {
    if (!digits(parts[i])) {
      r.error = "each part of BLOCKxTXxOUT must be a decimal number";
      return r;
    }
    v[i] = parseDigits(parts[i], n) ? n[0] : u64.MAX_VALUE;
  }
  if (v[0] > 0xffffff) r.error = "block height does not fit in 3 bytes (max 16777215)";
  else if (v[1] > 0xffffff) r.error = "transaction index does not fit in 3 bytes (max 16777215)";
  else if (v[2] > 0xffff) r.error = "output index does not fit in 2 bytes (max 65535)";
  else r.value = (v[0] << 40) | (v[1] << 16) | v[2];
  return r;
}
