#!/usr/bin/env node
// Time to first image: `make bench-first-image`. For each backend and model, a fresh Chromium
// profile (nothing in the HTTP cache, no service worker) opens the page with `run=1` and one label,
// as a visitor following a permalink would, and the page's own performance marks say when the
// worker knew its backend (`dit:started`; the wasm module may still be compiling), the model was
// loaded (`dit:model-loaded`) and the digit was on the canvas (`dit:first-image`), in ms from the
// start of navigation. The page's defaults otherwise: sampler, steps and guidance from the model's
// card (www/weights/<model>.card.json). Prints JSON.
// MODELS=mnist-cpu,mnist BACKENDS=cpu,webgpu RUNS=3 change the sweep; QUERIES=";cfgi=" adds
// variants of the page's URL (here: the card's settings, then every step guided), run in turn.

import { launch, startServer } from "./harness.mjs";

const models = (process.env.MODELS || "mnist-cpu,mnist").split(",");
const backends = (process.env.BACKENDS || "cpu,webgpu").split(",");
const runs = Number(process.env.RUNS || 3);
const variants = (process.env.QUERIES ?? "").split(";");

const { server, base } = await startServer();
const results = [];
try {
  for (const backend of backends) {
    for (const model of models) {
      for (let run = 0; run < runs; run++) for (const variant of variants) {
        // A new profile each time: a cold cache is the point.
        const chrome = await launch({ webgpu: backend === "webgpu" });
        try {
          const page = await chrome.context.newPage();
          const query = new URLSearchParams({ model, labels: "7", backend, run: "1", ...Object.fromEntries(new URLSearchParams(variant)) });
          await page.goto(`${base}index.html?${query}`);
          await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state),
            null, { timeout: 600_000 });
          const state = await page.evaluate(() => document.body.dataset.state);
          if (state !== "done") throw new Error(`${backend} ${model}: ${await page.locator("#error").textContent()}`);
          const marks = await page.evaluate(() => Object.fromEntries(
            performance.getEntriesByType("mark").map((m) => [m.name.replace("dit:", ""), Math.round(m.startTime)])));
          const stats = await page.locator("#stats").textContent();
          const row = { backend, model, run, ...(variant ? { variant } : {}), ...marks, stats };
          console.error(JSON.stringify(row));
          results.push(row);
        } finally {
          await chrome.close();
        }
      }
    }
  }
} finally {
  server.close();
}
console.log(JSON.stringify(results, null, 1));
