#!/usr/bin/env node
// Runs www/bench.html in headless Chromium with WebGPU (SwiftShader here) and prints its table
// as JSON: `make bench-browser` (BATCHES=1,4 STEPS=6 to change the sweep).
// onnxruntime-web is served from www/vendor/ (copied from node_modules) when installed.

import { cpSync, existsSync } from "node:fs";
import { join } from "node:path";
import { launch, startServer, WWW } from "./harness.mjs";

const ort = join(import.meta.dirname, "node_modules/onnxruntime-web/dist");
if (existsSync(ort)) cpSync(ort, join(WWW, "vendor/onnxruntime-web"), { recursive: true });

const { server, base } = await startServer();
const chrome = await launch({ webgpu: true });
try {
  const page = await chrome.context.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  const query = new URLSearchParams({
    run: "1",
    batches: process.env.BATCHES || "1,4,16",
    steps: process.env.STEPS || "6",
    backends: process.env.BACKENDS || "webgpu,cpu",
  });
  await page.goto(`${base}bench.html?${query}`);
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, {
    timeout: 3_600_000,
  });
  console.log(await page.locator("#log").textContent());
  console.log(JSON.stringify(await page.evaluate(() => window.benchResults), null, 1));
} finally {
  await chrome.close();
  server.close();
}
