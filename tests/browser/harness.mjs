// Shared pieces of the browser tests: the static server, Chromium, and reference images from
// `trainer generate` for the same weights, labels, sampler, steps and seed.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import { serve } from "../../tools/serve.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const WWW = join(ROOT, "www");
/** The weight file the page serves as `model`. */
export const weightsOf = (model) => join(WWW, `weights/${model}.safetensors`);
/** Weight files the tests load through the page's file picker. */
export const FIXTURES = join(ROOT, "tests/browser/fixtures");
/** The page and `trainer generate` agree within this much per channel (2/255). */
export const TOLERANCE = 2;

/** Serves `root` (default www/) on a free port of `host`; a second host (127.0.0.2) is another
 *  origin, and another site, for the cross-origin tests. */
export async function startServer(root = WWW, host = "127.0.0.1", options = {}) {
  const server = await serve(root, 0, host, options);
  return { server, base: `http://${host}:${server.address().port}/` };
}

/** A copy of the site (links to www/'s files) whose weights/ also holds `extra` weight files, with
 *  models.json written for them by tools/catalogue.mjs, as `make pkg` writes it for www/: what a
 *  visitor sees when those files are dropped into www/weights/. Returns the folder. */
export function siteWith(extra) {
  const site = mkdtempSync(join(tmpdir(), "dit-web-site-"));
  for (const entry of readdirSync(WWW)) {
    if (entry !== "weights" && entry !== "models.json") symlinkSync(join(WWW, entry), join(site, entry));
  }
  mkdirSync(join(site, "weights"));
  for (const file of readdirSync(join(WWW, "weights"))) symlinkSync(join(WWW, "weights", file), join(site, "weights", file));
  for (const path of extra) symlinkSync(path, join(site, "weights", path.split("/").pop()));
  const run = spawnSync("node", [join(ROOT, "tools/catalogue.mjs"), join(site, "weights"), join(site, "models.json")],
    { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`catalogue.mjs failed:\n${run.stderr}`);
  return site;
}

/** Chromium as the issue prescribes; without `webgpu` the page must fall back to the CPU. */
export async function launch({ webgpu }) {
  const profile = mkdtempSync(join(tmpdir(), "dit-web-chromium-"));
  // Playwright passes the fresh profile as --user-data-dir itself.
  const args = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ];
  if (webgpu) args.push("--enable-unsafe-webgpu");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    acceptDownloads: true,
    args,
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** A page that records console errors, CSP violations and uncaught exceptions. */
export async function openPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return { page, problems };
}

/** Waits for the page's running generation to finish (failing the test on an error, with the
 *  page's message) and returns the PNG its Download button gives, decoded. */
export async function downloadWhenDone(page, timeout) {
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert.equal(state, "done", `generation failed: ${await page.locator("#error").textContent()}`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const parts = [];
  for await (const part of await download.createReadStream()) parts.push(part);
  return decodePng(Buffer.concat(parts));
}

/** Runs `trainer generate` on `model`'s weights (or the file `weights`) and returns its grid.png decoded
 *  (with `each`, every image's own PNG, in label order); `cfgInterval` ([lo, hi]) guides only those
 *  timesteps. */
export function reference({ model, weights = weightsOf(model), labels, steps, seed, sampler = "dpm++", cfg = 1, cfgInterval, each = false }) {
  const out = mkdtempSync(join(tmpdir(), "dit-web-ref-"));
  try {
    // TRAINER=path/to/trainer uses a built binary instead of `cargo run`.
    const [command, prefix] = process.env.TRAINER
      ? [process.env.TRAINER, []]
      : ["cargo", ["run", "-q", "-p", "trainer", "--"]];
    const args = [
      ...prefix, "generate", "--weights", weights, "--labels", ...labels,
      "--sampler", sampler, "--steps", String(steps), "--seed", String(seed), "--cfg", String(cfg),
      ...(cfgInterval ? ["--cfg-interval", cfgInterval.join(",")] : []),
      "--out", out,
    ];
    const run = spawnSync(command, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    if (run.status !== 0) throw new Error(`trainer generate failed:\n${run.stderr}`);
    if (each) {
      return readdirSync(out).filter((f) => /^\d{4}_label-/.test(f)).sort()
        .map((f) => PNG.sync.read(readFileSync(join(out, f))));
    }
    return PNG.sync.read(readFileSync(join(out, "grid.png")));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

export function decodePng(bytes) {
  return PNG.sync.read(Buffer.from(bytes));
}

/** Largest per-channel difference between two decoded images of the same size. */
export function maxDifference(a, b) {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`sizes differ: ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  }
  let worst = 0;
  for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]));
  return worst;
}

/** Standard deviation of the grey values: a blank or constant image has ~0. */
export function spread(image) {
  let sum = 0;
  let squares = 0;
  const n = image.data.length / 4;
  for (let i = 0; i < image.data.length; i += 4) {
    sum += image.data[i];
    squares += image.data[i] ** 2;
  }
  return Math.sqrt(squares / n - (sum / n) ** 2);
}

/** The weight file at `path` with its dit-web metadata changed by `edit(meta)` (the tensors as
 *  they are): a file whose header lies. */
export function withMetadata(path, edit) {
  const bytes = readFileSync(path);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString("utf8"));
  const meta = JSON.parse(header.__metadata__["dit-web"]);
  edit(meta);
  header.__metadata__["dit-web"] = JSON.stringify(meta);
  // safetensors pads the header with spaces to a multiple of 8 bytes.
  let text = JSON.stringify(header);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  return Buffer.concat([prefix, Buffer.from(text, "utf8"), bytes.subarray(8 + length)]);
}
