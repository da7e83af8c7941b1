// The SDK's glue, through the harness (an independent implementation of the
// host side of the canonical ABI): node --test test/ (after npm ci).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPlugin, forward } from "../harness/harness.mjs";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "htlcgate-as-sdk-"));
const packages = join(work, "packages");
mkdirSync(packages);
symlinkSync(sdk, join(packages, "htlcgate-sdk"));
const core = join(work, "fixture.wasm");
execFileSync(join(sdk, "node_modules/.bin/asc"), [
  join(sdk, "test/fixture.ts"), "--path", packages,
  "--runtime", join(sdk, "runtime/per-call"),
  "--use", "abort=~lib/htlcgate-sdk/assembly/abort/abort",
  "-O3", "-o", core,
], { cwd: sdk, stdio: "inherit" });

test("state survives between calls and the onion blob is read lazily", async () => {
  const p = await loadPlugin(core);
  assert.deepEqual(p.decide(forward(2000n, 1000n, 7n)), { kind: "next" });
  assert.deepEqual(p.decide(forward(2000n, 1000n, 8n)), { kind: "resume" });
  assert.equal(p.lines[0].message, "1:7 1x1x0 onion 1366");
});

test("settle, fail and resume-modified are lowered field for field", async () => {
  const h = forward(2000n, 1000n);
  h.customRecords.set(65537n, new Uint8Array([1]));
  h.customRecords.set(65538n, new Uint8Array([]));
  const settle = (await loadPlugin(core, { mode: "settle" })).decide(h);
  assert.equal(settle.kind, "settle");
  assert.equal(settle.preimage.length, 32);
  assert.equal(settle.preimage[0], 2);
  assert.deepEqual((await loadPlugin(core, { mode: "fail" })).decide(h), { kind: "fail", code: "invalid-onion-key" });
  h.paymentHash = new Uint8Array(32).fill(9);
  const m = (await loadPlugin(core, { mode: "modify" })).decide(h);
  assert.equal(m.kind, "resume-modified");
  assert.equal(m.outAmountMsat, 999n);
  assert.equal(m.inAmountMsat, undefined);
  assert.deepEqual([...m.wireRecords.keys()], [65537n, 65539n]);
  assert.deepEqual(m.wireRecords.get(65537n), new Uint8Array(32).fill(9));
  assert.deepEqual(m.wireRecords.get(65539n), new Uint8Array([98]));
});

test("config problems refuse the load with the key named", async () => {
  await assert.rejects(loadPlugin(core, { mod: "x" }), /config key `mod` is not known; known keys: mode, n/);
  await assert.rejects(loadPlugin(core, { n: "12a" }), /config key `n`: expected an unsigned integer, got `12a`/);
});

test("memory does not grow across calls", async () => {
  const p = await loadPlugin(core, { mode: "modify" });
  const h = forward(2000n, 1000n);
  h.customRecords.set(65537n, new Uint8Array(4096));
  p.decide(h);
  const after1 = p.memoryBytes();
  for (let i = 0; i < 2000; i++) p.decide(h);
  assert.equal(p.memoryBytes(), after1);
});
