#!/usr/bin/env node
// Runs www/bench.html in headless Chromium with WebGPU (SwiftShader here) and prints its table
// as JSON: `make bench-browser` (BATCHES=1,4 STEPS=6 to change the sweep). PKGS=pkg,bench/pkg-flex
// runs the page once per wasm module (`make bench-cpu-backends`); ONNX=0 leaves onnxruntime-web out;
// MODELS=mnist-cpu,mnist picks the weight files (default: the small model); PROFILE=1 adds where
// each WebGPU step's time goes (www/bench-profile.js); PREVIEW=1 has every step hand its preview
// images to the callback (the `boundaryMs` column: a step's time outside the network, read-back
// and solver).
// onnxruntime-web is served from www/vendor/ (copied from node_modules) when installed.

import { cpSync, existsSync } from "node:fs";
import { join } from "node:path";
import { launch, startServer, WWW } from "./harness.mjs";

const ort = join(import.meta.dirname, "node_modules/onnxruntime-web/dist");
if (existsSync(ort)) cpSync(ort, join(WWW, "vendor/onnxruntime-web"), { recursive: true });

const { server, base } = await startServer();
const chrome = await launch({ webgpu: true });
try {
  const results = [];
  for (const pkg of (process.env.PKGS || "pkg").split(",")) for (const model of (process.env.MODELS || "mnist-cpu").split(",")) {
    const page = await chrome.context.newPage();
    page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
    const query = new URLSearchParams({
      run: "1",
      pkg,
      model,
      batches: process.env.BATCHES || "1,4,16",
      steps: process.env.STEPS || "6",
      backends: process.env.BACKENDS || "webgpu,cpu",
      onnx: process.env.ONNX || "1",
      profile: process.env.PROFILE || "0",
      preview: process.env.PREVIEW || "0",
    });
    await page.goto(`${base}bench.html?${query}`);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, {
      timeout: 3_600_000,
    });
    console.error(await page.locator("#log").textContent());
    if ((await page.evaluate(() => document.body.dataset.state)) === "error") process.exitCode = 1;
    results.push(...(await page.evaluate(() => window.benchResults)).map((row) => ({ pkg, ...row })));
    await page.close();
  }
  console.log(JSON.stringify(results, null, 1));
} finally {
  await chrome.close();
  server.close();
}
