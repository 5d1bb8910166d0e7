#!/usr/bin/env node
// Raw and gzip sizes of everything the demo page fetches (`make sizes`).
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const FILES = [
  "index.html", "style.css", "app.js", "client.js", "grid.js", "adapter.js", "models.json", "worker.js", "sw.js",
  "pkg/dit_web.js", "pkg/dit_web_bg.wasm", "weights/mnist.safetensors", "weights/mnist-cpu.safetensors",
];
let raw = 0;
let gz = 0;
const rows = FILES.map((file) => {
  const bytes = readFileSync(new URL(`../www/${file}`, import.meta.url));
  const zipped = gzipSync(bytes, { level: 9 }).length;
  raw += bytes.length;
  gz += zipped;
  return [file, bytes.length, zipped];
});
rows.push(["total", raw, gz]);
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`.padStart(12);
console.log(`${"file".padEnd(28)}${"raw".padStart(12)}${"gzip -9".padStart(12)}`);
for (const [file, r, g] of rows) console.log(`${file.padEnd(28)}${kb(r)}${kb(g)}`);
