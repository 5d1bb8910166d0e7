// Bundles src/main.ts into dist/ with esbuild; the wasm module and the weight file it imports
// are copied there as files with hashed names (the `file` loader), as an app's assets would be.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outdir: "dist",
  loader: { ".wasm": "file", ".safetensors": "file" },
  assetNames: "[name]-[hash]",
  logLevel: "warning",
});
copyFileSync("index.html", "dist/index.html");
console.log("built dist/");
