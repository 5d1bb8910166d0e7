#!/usr/bin/env node
// Writes www/models.json from the weight files in www/weights/ (run by `make pkg`), so the page
// offers exactly the models that are present: drop celeba.safetensors there and it appears.
//
// Each entry is read from the file itself (the dit-web metadata and the tensor shapes): dataset,
// labels, size in bytes, parameter count, tokens per image, training step, quantization. An
// optional `<name>.card.json` beside the file adds what the file cannot say: measured quality and
// speed (with where they were measured) and the guidance the page should start with.
//
// Each URL carries the first 12 hex digits of the file's SHA-256 (`?v=`): the worker caches
// weights by URL, so a new file under the same name reaches returning visitors.
//
//   node tools/catalogue.mjs [WEIGHTS_DIR=www/weights] [OUT=www/models.json]
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [dirArg, outArg] = process.argv.slice(2);
const dir = dirArg ? pathToFileURL(`${dirArg.replace(/\/$/, "")}/`) : new URL("../www/weights/", import.meta.url);
const out = outArg ? pathToFileURL(outArg) : new URL("../www/models.json", import.meta.url);
const DATASETS = { mnist: "MNIST digits", celeba: "CelebA faces (female / male)" };
// Tensors that hold quantization scales, not parameters.
const AUXILIARY = /\.(qscale|qzero)$/;

/** The dit-web metadata and the parameter count of one weight file. */
function describe(bytes) {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  const meta = JSON.parse(header.__metadata__?.["dit-web"] ?? "null");
  if (!meta) return null;
  let params = 0;
  for (const [name, tensor] of Object.entries(header)) {
    if (name === "__metadata__" || AUXILIARY.test(name)) continue;
    params += tensor.shape.reduce((a, b) => a * b, 1);
  }
  return { meta, params };
}

function millions(n) {
  return `${(n / 1e6).toFixed(1)}M`;
}

const catalogue = {};
for (const file of readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort()) {
  const bytes = readFileSync(new URL(file, dir));
  const described = describe(bytes);
  if (!described) {
    console.warn(`skipping ${file}: no dit-web metadata`);
    continue;
  }
  const { meta, params } = described;
  const name = file.replace(/\.safetensors$/, "");
  const m = meta.model;
  const cardFile = new URL(`${name}.card.json`, dir);
  const card = existsSync(cardFile) ? JSON.parse(readFileSync(cardFile, "utf8")) : {};
  const dataset = DATASETS[meta.dataset] ?? `${meta.dataset} (${meta.labels.join(", ")})`;
  catalogue[name] = {
    title: `${dataset}: patch ${m.patch_size}, width ${m.hidden_size}, ${millions(params)} parameters`,
    url: `weights/${file}?v=${createHash("sha256").update(bytes).digest("hex").slice(0, 12)}`,
    dataset: meta.dataset,
    bytes: bytes.length,
    params,
    tokens: (m.input_size / m.patch_size) ** 2,
    step: meta.step,
    quantization: meta.quantization,
    ...card,
  };
}
// The MNIST models first, largest first; then the rest by name.
const rank = ([name, e]) => [e.dataset === "mnist" ? 0 : 1, -e.params, name];
const ordered = Object.fromEntries(Object.entries(catalogue).sort((a, b) => {
  const [x, y] = [rank(a), rank(b)];
  return x[0] - y[0] || x[1] - y[1] || x[2].localeCompare(y[2]);
}));
writeFileSync(out, `${JSON.stringify(ordered, null, 2)}\n`);
console.log(`${outArg ?? "www/models.json"}: ${Object.keys(ordered).join(", ")}`);
