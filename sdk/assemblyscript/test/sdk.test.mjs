// The SDK's glue, through the harness (an independent implementation of the
// host side of the canonical ABI): node --test test/ (after npm ci).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPlugin, forward, channel, outcome } from "../harness/harness.mjs";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "htlcgate-as-sdk-"));
const packages = join(work, "packages");
mkdirSync(packages);
symlinkSync(sdk, join(packages, "htlcgate-sdk"));
/** Compiles test/NAME.ts with the SDK's flags; returns the core module's path. */
function build(name) {
  const out = join(work, `${name}.wasm`);
  execFileSync(join(sdk, "node_modules/.bin/asc"), [
    join(sdk, `test/${name}.ts`), "--path", packages,
    "--runtime", join(sdk, "runtime/per-call"),
    "--use", "abort=~lib/htlcgate-sdk/assembly/abort/abort",
    "-O3", "-o", out,
  ], { cwd: sdk, stdio: "inherit" });
  return out;
}
const core = build("fixture");
const powers = build("powers");
const unexported = build("unexported");
const toplevel = build("toplevel");

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

test("new buffers and arrays are zero over memory an earlier call dirtied", async () => {
  const p = await loadPlugin(core, { mode: "zeroed" });
  const dirty = forward(2000n, 1000n, 1n);
  dirty.customRecords.set(65537n, new Uint8Array(6000).fill(0xff));
  dirty.customRecords.set(65538n, new Uint8Array(6000).fill(0xff));
  p.decide(dirty);
  p.decide(forward(2000n, 1000n, 2n));
  assert.deepEqual(p.lines.filter((l) => l.message.startsWith("dirty")).map((l) => l.message), ["dirty 0", "dirty 0"]);
});

test("a plugin without the outcome glue does not export outcome", async () => {
  assert.equal((await loadPlugin(core)).exportsOutcome, false);
  assert.equal((await loadPlugin(powers)).exportsOutcome, true);
});

test("an Observer without the outcome export is refused at init with the line to add", async () => {
  await assert.rejects(loadPlugin(unexported), /export \* from "htlcgate-sdk\/assembly\/outcome-glue";/);
});

test("decide sees the attempt and the node, and a first attempt is held", async () => {
  const peer = new Uint8Array(33).fill(0xab);
  const p = await loadPlugin(powers, {}, {
    channels: [channel(1n, peer, { unsettledBalanceSat: 7n, private: true, initiator: false })],
    blockHeight: 850_123,
  });
  assert.deepEqual(p.decide(forward(2000n, 1000n, 1n)), { kind: "hold", ms: 250 });
  const second = forward(2000n, 1000n, 1n);
  second.attempt = 2;
  assert.deepEqual(p.decide(second), { kind: "next" });
  assert.equal(p.lines[0].message, "attempt 1 height 850123 peer abab cap 1000000 local 600000 remote 390000 unsettled 7 flags AP-");
  assert.equal(p.lines[2].message.slice(0, 19), "attempt 2 height 85");
  const unknown = forward(2000n, 1000n, 2n);
  unknown.chanId = 9n;
  const q = await loadPlugin(powers);
  q.decide(unknown);
  assert.equal(q.lines[0].message, "attempt 1 height 0 peer unknown");
});

test("kv round-trips, deletes, and refusals arrive typed", async () => {
  const p = await loadPlugin(powers);
  p.decide(forward(2000n, 1000n, 99n));
  assert.equal(p.lines[1].message, "kv before none set ok after seen");
  assert.equal(p.lines[2].message, "delete existed then absent");
  p.decide(forward(2000n, 1000n, 5n));
  assert.equal(p.lines[4].message, "kv before none set ok after seen");
  p.decide(forward(2000n, 1000n, 5n));
  assert.equal(p.lines[6].message, "kv before some set ok after seen");
  assert.deepEqual([...p.kv.keys()], [Buffer.from("htlc/5").toString("hex")]);

  const tight = await loadPlugin(powers, {}, { kvLimits: { maxKeyBytes: 4 } });
  tight.decide(forward(2000n, 1000n, 5n));
  assert.equal(tight.lines[1].message,
    "kv before none set kv: key longer than the plugin's limit of 4 bytes (kv_max_key_bytes) after none");
  const full = await loadPlugin(powers, {}, { kvLimits: { maxKeys: 0 } });
  full.decide(forward(2000n, 1000n, 5n));
  assert.match(full.lines[1].message, /set kv: the namespace already holds its limit of 0 keys \(kv_max_keys\); delete some/);
  const broken = await loadPlugin(powers, {}, { kvLimits: { storage: "disk on fire" } });
  broken.decide(forward(2000n, 1000n, 5n));
  assert.match(broken.lines[1].message, /set kv: the host's storage failed: disk on fire after none/);
});

test("every outcome kind is lifted from its sixteen flat values", async () => {
  const p = await loadPlugin(powers);
  const amounts = { incomingAmountMsat: 1_001_000n, outgoingAmountMsat: 1_000_000n, incomingExpiry: 500, outgoingExpiry: 460 };
  p.outcome(outcome("forwarded", { amounts }, 3n));
  p.outcome(outcome("settled", { preimage: new Uint8Array(32).fill(0xcd) }, 3n));
  p.outcome(outcome("forward-failed", {}, 3n));
  p.outcome(outcome("link-failed", {
    amounts,
    linkFailure: { wireFailureCode: -1, detail: "INSUFFICIENT_BALANCE", message: "no room" },
  }, 3n));
  p.outcome(outcome("final", { settled: true, offchain: false }, 3n));
  const out = "out 1099511693312:5";
  assert.deepEqual(p.lines.map((l) => l.message), [
    `outcome forwarded 1:3 ${out} amounts 1001000/1000000/500/460 at 1700000000000`,
    `outcome settled 1:3 ${out} preimage cdcdcd len 32 at 1700000000000`,
    `outcome forward-failed 1:3 ${out} at 1700000000000`,
    `outcome link-failed 1:3 ${out} amounts 1001000/1000000/500/460 code -1 INSUFFICIENT_BALANCE 'no room' at 1700000000000`,
    "outcome final 1:3 out none settled yes offchain no at 1700000000000",
  ]);
  assert.equal(p.kv.size, 5);
});

test("memory does not grow across outcomes and kv calls", async () => {
  const p = await loadPlugin(powers);
  p.decide(forward(2000n, 1000n, 5n));
  p.outcome(outcome("link-failed", { linkFailure: { wireFailureCode: 12, detail: "x".repeat(4096), message: "" } }));
  const after1 = p.memoryBytes();
  for (let i = 0; i < 500; i++) {
    p.decide(forward(2000n, 1000n, 5n));
    p.outcome(outcome("link-failed", { linkFailure: { wireFailureCode: 12, detail: "x".repeat(4096), message: "" } }));
  }
  assert.equal(p.memoryBytes(), after1);
});

test("a custom record larger than memory grows it while the harness writes it", async () => {
  const p = await loadPlugin(core, { mode: "settle" });
  const h = forward(2000n, 1000n);
  h.customRecords.set(65537n, new Uint8Array(200_000).fill(7));
  const before = p.memoryBytes();
  const v = p.decide(h);
  assert.equal(v.kind, "settle");
  assert.equal(v.preimage[0], 1);
  assert.ok(p.memoryBytes() > before, "memory did not grow: the test proves nothing");
});

test("a plugin whose top-level code logs loads, and the line is kept", async () => {
  const p = await loadPlugin(toplevel);
  assert.deepEqual(p.lines, [{ level: "info", message: "top-level code ran" }]);
  assert.deepEqual(p.decide(forward(2000n, 1000n)), { kind: "next" });
});

test("log lines and init errors with lone surrogates reach the host as UTF-8 with U+FFFD", async () => {
  const p = await loadPlugin(core, { mode: "lone" });
  assert.deepEqual(p.decide(forward(2000n, 1000n, 1n)), { kind: "resume" });
  assert.equal(p.lines.at(-1).message, "lone \uFFFD\uFFFD end");
  await assert.rejects(loadPlugin(core, { lone: "" }), /^Error: init refused: refused \uFFFD here$/);
});
