// The config table of the plugin's [[plugin]] entry, as key/value strings.
//
// AssemblyScript has no exceptions, so the readers keep the first problem in
// `error` (naming the key, the expected form and the value) and return the
// default; the glue refuses the load with that message when init returns. A
// plugin can also refuse by itself with refuse(message).

import { parseDigits, parseScid } from "./scid";

export class Config {
  /** Keys in the host's order (sorted). */
  keys: string[] = [];
  /** Values, index for index with keys. */
  values: string[] = [];
  /** The first problem found, or null. */
  error: string | null = null;

  /** A config from key, value, key, value... (for tests). */
  static of(keyValues: string[]): Config {
    const c = new Config();
    for (let i = 0; i + 1 < keyValues.length; i += 2) {
      c.keys.push(keyValues[i]);
      c.values.push(keyValues[i + 1]);
    }
    return c;
  }

  /** The value of `key`, or null. */
  get(key: string): string | null {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.values[i];
    }
    return null;
  }

  /** Whether `key` is set. */
  has(key: string): bool {
    return this.get(key) != null;
  }

  /** Refuses the load with `message` (the first refusal wins). */
  refuse(message: string): void {
    if (this.error == null) this.error = message;
  }

  /** The value of `key`, or `def`. */
  stringOr(key: string, def: string): string {
    const v = this.get(key);
    return v != null ? v : def;
  }

  /** `key` as an unsigned decimal integer (whitespace trimmed), or `def` when unset. */
  u64Or(key: string, def: u64): u64 {
    const v = this.get(key);
    if (v == null) return def;
    return this.parseU64(key, v);
  }

  /** `key` as an unsigned integer; refuses when it is not set. */
  u64(key: string): u64 {
    const v = this.get(key);
    if (v == null) {
      this.refuse("config key `" + key + "` is required: set it to an unsigned integer");
      return 0;
    }
    return this.parseU64(key, v);
  }

  private parseU64(key: string, raw: string): u64 {
    const v = raw.trim();
    const out = new StaticArray<u64>(1);
    let isDigits = v.length > 0;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c < 48 || c > 57) isDigits = false;
    }
    if (!isDigits) {
      this.refuse("config key `" + key + "`: expected an unsigned integer, got `" + raw + "`");
      return 0;
    }
    if (!parseDigits(v, out)) {
      this.refuse("config key `" + key + "`: expected an unsigned integer up to 18446744073709551615, got `" + raw + "`");
      return 0;
    }
    return out[0];
  }

  /** `key` as true or false, or `def` when unset. */
  boolOr(key: string, def: bool): bool {
    const v = this.get(key);
    if (v == null) return def;
    const t = v.trim();
    if (t == "true") return true;
    if (t == "false") return false;
    this.refuse("config key `" + key + "`: expected `true` or `false`, got `" + v + "`");
    return def;
  }

  /** `key` as a comma-separated list of channel ids; empty when unset. */
  scids(key: string): u64[] {
    const out: u64[] = [];
    const v = this.get(key);
    if (v == null) return out;
    const entries = v.split(",");
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i].trim();
      if (e.length == 0) continue;
      const p = parseScid(e);
      const err = p.error;
      if (err != null) {
        this.refuse("config key `" + key + "`: expected a channel id (BLOCKxTXxOUT or decimal), got `" + e + "` (" + err + ")");
        return [];
      }
      out.push(p.value);
    }
    return out;
  }

  /** Refuses keys outside `known`, so that a misspelt key is an error. */
  denyUnknown(known: string[]): void {
    for (let i = 0; i < this.keys.length; i++) {
      if (known.includes(this.keys[i])) continue;
      if (known.length == 0) {
        this.refuse("config key `" + this.keys[i] + "` is not known: this plugin takes no config");
      } else {
        this.refuse("config key `" + this.keys[i] + "` is not known; known keys: " + known.join(", "));
      }
      return;
    }
  }
}
