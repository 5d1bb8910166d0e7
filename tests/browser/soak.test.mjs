// A page left open: round after round of what a visitor does (generate, switch models, open a
// file of their own, stop a run half-way), on the CPU fallback and on WebGPU. After each round the
// worker's wasm memory and the page's JS heap (after a garbage collection) are read; once the
// first rounds have warmed everything up, they must stop growing. Bounded: a few rounds of a few
// steps each.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { launch, openPage, startServer, weightsOf } from "./harness.mjs";
import { readFileSync } from "node:fs";

const TIMEOUT = 600_000;
// Rounds per backend, how many of them warm up (first models, first user file, shader
// pipelines) before growth is judged, and how many at the end must hold the memory still. On the
// CPU the weights live in the wasm memory, whose allocator grows in steps of about a tenth until
// its working set is reached: 78, 97, ..., 97, 106 MB, then 106 MB through round 18. Where that
// last step falls moves with the module and the sizes the allocator is asked for (round 7 with one
// build, round 11 with another), so after warming up one more step is allowed, and the last four
// rounds must not grow at all; a leak grows every round. On WebGPU the weights live on the device and the wasm memory holds still from
// round 1. SOAK_ROUNDS= runs more.
const PLAN = {
  cpu: { rounds: Number(process.env.SOAK_ROUNDS) || 18, warm: 7, still: 4, step: 1.1 },
  webgpu: { rounds: Number(process.env.SOAK_ROUNDS) || 4, warm: 2, still: 2, step: 1.02 },
};
let server;
let base;

before(async () => {
  ({ server, base } = await startServer());
});
after(() => server.close());

/** Clicks Generate and waits for the run to end; `stopAt`: press Stop once this step is shown. */
async function run(page, stopAt = null) {
  await page.click("#generate");
  if (stopAt !== null) {
    await page.waitForFunction((n) => new RegExp(`step (${n}|[${n + 1}-9]\\d*) /`).test(document.querySelector("#status").textContent),
      stopAt, { timeout: TIMEOUT });
    await page.click("#stop");
  }
  await page.waitForFunction(() => ["done", "cancelled", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert.equal(state, stopAt === null ? "done" : "cancelled", await page.locator("#error").textContent());
}

async function settings(page, values) {
  for (const [id, value] of Object.entries(values)) await page.fill(`#${id}`, value);
}

async function pick(page, model) {
  await page.selectOption("#model", model);
  await page.waitForFunction((m) => document.body.dataset.state === "ready" && document.querySelector("#model").value === m,
    model, { timeout: TIMEOUT });
}

/** One visitor's round on the open page. */
async function round(page, r) {
  await pick(page, "mnist-cpu");
  await settings(page, { steps: "4", seed: String(r), cfg: "2" });
  await run(page);
  await pick(page, "mnist");
  await settings(page, { steps: "2", seed: String(r), cfg: "1" });
  await run(page);
  // A file of their own, under a new name every round: the page keeps one at a time.
  await page.locator("#weights-file").setInputFiles({
    name: `mine-${r}.safetensors`, mimeType: "application/octet-stream", buffer: readFileSync(weightsOf("mnist-cpu")),
  });
  await page.waitForFunction((n) => document.querySelector("#model").value === n && document.body.dataset.state === "ready",
    `mine-${r}.safetensors`, { timeout: TIMEOUT });
  await settings(page, { steps: "3", cfg: "1" });
  await run(page);
  // A long run stopped half-way.
  await settings(page, { steps: "60", cfg: "1" });
  await run(page, 2);
}

async function soak(backend, t) {
  const chrome = await launch({ webgpu: backend === "webgpu" });
  try {
    const { page, problems } = await openPage(chrome.context);
    const cdp = await chrome.context.newCDPSession(page);
    await page.goto(`${base}index.html?model=mnist-cpu&labels=3,8&backend=${backend}&offline=0`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    const readings = [];
    const { rounds, warm: warmRounds, still, step } = PLAN[backend];
    for (let r = 1; r <= rounds; r++) {
      await round(page, r);
      await cdp.send("HeapProfiler.collectGarbage");
      const heap = (await cdp.send("Runtime.getHeapUsage")).usedSize;
      const worker = await page.evaluate(async () => (await import("./client.js")).client.memory());
      const options = await page.locator("#model option").count();
      readings.push({ round: r, heapMB: +(heap / 1e6).toFixed(2), wasmMB: +(worker.wasmBytes / 1e6).toFixed(1), sessions: worker.sessions, options });
      t.diagnostic(`${backend} round ${r}: ${JSON.stringify(readings.at(-1))}`);
    }
    const warm = readings[warmRounds - 1];
    const last = readings.at(-1);
    // The catalogue's two models and one user file, however many files were opened.
    assert.equal(last.sessions, 3);
    assert.equal(last.options, 3);
    // The wasm memory only grows; after warming up, at most one more allocator step, and none in
    // the last rounds (the allocator reuses what it has).
    assert.ok(last.wasmMB <= warm.wasmMB * step, `wasm memory grew from ${warm.wasmMB} MB to ${last.wasmMB} MB`);
    const settled = readings.at(-still);
    assert.ok(last.wasmMB <= settled.wasmMB, `wasm memory grew from ${settled.wasmMB} MB in round ${settled.round} to ${last.wasmMB} MB`);
    // The page's heap after a collection: no more than noise.
    assert.ok(last.heapMB <= warm.heapMB * 1.25 + 1, `JS heap grew from ${warm.heapMB} MB to ${last.heapMB} MB`);
    assert.deepEqual(problems, []);
  } finally {
    await chrome.close();
  }
}

describe("a page left open", { timeout: TIMEOUT * 2 }, () => {
  test("on the CPU fallback, memory stops growing", async (t) => soak("cpu", t));
  test("on WebGPU, memory stops growing", async (t) => soak("webgpu", t));
});
