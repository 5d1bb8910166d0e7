#!/usr/bin/env node
// Writes www/models.json from the weight files in www/weights/ (run by `make pkg`), so the page
// offers exactly the models that are present: drop celeba.safetensors there and it appears.
// The title comes from the file's dit-web metadata (dataset and labels).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

const dir = new URL("../www/weights/", import.meta.url);
const TITLES = { mnist: "MNIST digits", celeba: "CelebA faces (female / male)" };
const catalogue = {};
for (const file of readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort()) {
  const bytes = readFileSync(new URL(file, dir));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  const meta = JSON.parse(header.__metadata__?.["dit-web"] ?? "null");
  if (!meta) {
    console.warn(`skipping ${file}: no dit-web metadata`);
    continue;
  }
  const name = file.replace(/\.safetensors$/, "");
  catalogue[name] = {
    title: TITLES[meta.dataset] ?? `${meta.dataset} (${meta.labels.join(", ")})`,
    url: `weights/${file}`,
  };
}
// Shipped model first.
const ordered = Object.fromEntries(Object.entries(catalogue).sort(([a], [b]) => (a === "mnist" ? -1 : b === "mnist" ? 1 : a.localeCompare(b))));
writeFileSync(new URL("../www/models.json", import.meta.url), `${JSON.stringify(ordered, null, 2)}\n`);
console.log(`www/models.json: ${Object.keys(ordered).join(", ")}`);
