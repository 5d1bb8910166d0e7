#!/usr/bin/env node
// Finishes pkg/ (what `wasm-pack build --target web` wrote) as the npm package a web developer
// installs: package.json gains `exports` (the module with its types, and the .wasm file for
// bundlers that import it as an asset), Cargo.toml's keywords, and `repository`/`homepage` where
// Cargo.toml names them; pkg/README.md becomes the package's own page (docs/npm-package.md).
//
//   node tools/package.mjs [PKG_DIR=pkg]
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const dir = process.argv[2] ?? join(root, "pkg");
const path = join(dir, "package.json");
const pkg = JSON.parse(readFileSync(path, "utf8"));
const cargo = readFileSync(join(root, "Cargo.toml"), "utf8");
const field = (name) => cargo.match(new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, "m"))?.[1];
const list = (name) => [...(cargo.match(new RegExp(`^${name}\\s*=\\s*\\[([^\\]]*)\\]`, "m"))?.[1] ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]);

const module = pkg.module ?? pkg.main;
const wasm = pkg.files.find((f) => f.endsWith(".wasm"));
const finished = {
  ...pkg,
  keywords: list("keywords"),
  ...(field("repository") && { repository: { type: "git", url: field("repository") } }),
  ...(field("homepage") && { homepage: field("homepage") }),
  exports: {
    ".": { types: `./${pkg.types}`, default: `./${module}` },
    [`./${wasm}`]: `./${wasm}`,
    "./package.json": "./package.json",
  },
  files: [...new Set([...pkg.files, "README.md"])],
};
writeFileSync(path, `${JSON.stringify(finished, null, 2)}\n`);
copyFileSync(join(root, "docs/npm-package.md"), join(dir, "README.md"));
console.log(`${path}: ${finished.name} ${finished.version}, exports ${Object.keys(finished.exports).join(" ")}`);
