// `make site` as the Pages workflow runs it, offline: a checkpoint in the reference's layout (the
// celeba preset with seeded random weights, from the trainer's examples/reference_checkpoint) is
// served by a local server at the published URL's path, the site is built into a folder with no
// symlinks and served by a plain static server; the page lists `celeba` with its card, starts it
// lighter on the CPU fallback, and draws it equal to `trainer generate`. A build whose download
// fails still gives a site, without `celeba`, and says why.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { downloadWhenDone, launch, maxDifference, openPage, reference, ROOT, spread, startServer, TOLERANCE } from "./harness.mjs";

const TIMEOUT = 300_000;
let work;
let published; // the server standing in for the checkpoint's host
let site;
let server;
let chrome;

/** `make site` into `dir`, the checkpoint from `url`; resolves to make's output. (Not spawnSync:
 *  the server standing in for the checkpoint's host runs in this process and must answer.) */
function makeSite(dir, url) {
  const make = spawn("make", ["--no-print-directory", "site", `SITE=${dir}`, `CELEBA_URL=${url}`,
    `SITE_TRAINER=${process.env.TRAINER}`, "WASM_PROFILE=wasm-test"], {
    cwd: ROOT, env: { ...process.env, XDG_CACHE_HOME: join(work, "cache") },
  });
  let output = "";
  make.stdout.on("data", (d) => { output += d; });
  make.stderr.on("data", (d) => { output += d; });
  return new Promise((resolve) => make.on("close", (status) => {
    assert.equal(status, 0, output);
    resolve(output);
  }));
}

/** Every path under `dir` that is a symbolic link. */
function links(dir) {
  return readdirSync(dir, { recursive: true }).filter((p) => lstatSync(join(dir, p)).isSymbolicLink());
}

before(() => {
  // The reference checkpoint is written by the trainer's example, built beside the trainer.
  if (!process.env.TRAINER) throw new Error("TRAINER=path/to/trainer is needed (make browser sets it)");
  work = mkdtempSync(join(tmpdir(), "dit-web-site-test-"));
  const host = join(work, "host/celeba");
  mkdirSync(host, { recursive: true });
  const example = join(dirname(process.env.TRAINER), "examples/reference_checkpoint");
  const made = spawnSync(example, [join(host, "ckpt.pt"), "celeba", "1"], { encoding: "utf8" });
  assert.equal(made.status, 0, made.stderr);
});
after(async () => {
  await chrome?.close();
  server?.server.close();
  published?.server.close();
  rmSync(work, { recursive: true, force: true });
});

describe("make site", { timeout: TIMEOUT * 3 }, () => {
  test("builds a self-contained site with the converted CelebA weights and their card", async () => {
    published = await startServer(join(work, "host"));
    site = join(work, "site");
    const log = await makeSite(site, `${published.base}celeba/ckpt.pt`);
    assert.match(log, /wrote .*celeba\.safetensors/);
    assert.deepEqual(links(site), [], "a static host gets files, not links");
    for (const file of ["index.html", "dit-widget.js", "pkg/dit_web_bg.wasm", "weights/mnist.safetensors",
      "weights/celeba.safetensors", "weights/celeba.card.json"]) {
      assert.ok(existsSync(join(site, file)), file);
    }
    const models = JSON.parse(readFileSync(join(site, "models.json"), "utf8"));
    assert.deepEqual(Object.keys(models).sort(), ["celeba", "mnist", "mnist-cpu"]);
    assert.equal(models.celeba.quantization, "int8");
    assert.equal(models.celeba.cpu_start.images, 1);
    assert.match(models.celeba.source, /celeba\/ckpt\.pt/);
    assert.match(models.celeba.trained, /99,999/);
    // int8: about a quarter of the f32 weights' 155 MB.
    assert.ok(models.celeba.bytes < 45e6 && models.celeba.bytes > 35e6, String(models.celeba.bytes));
  });

  test("the page starts celeba lighter on the CPU fallback and draws it as trainer generate does", async (t) => {
    server = await startServer(site);
    chrome = await launch({ webgpu: false });
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${server.base}index.html?model=celeba&backend=cpu`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    assert.equal(await page.inputValue("#steps"), "10");
    assert.equal(await page.inputValue("#batch"), "1");
    const pressed = await page.locator("#labels button[aria-pressed=true]").allTextContents();
    assert.deepEqual(pressed, ["female"]);
    assert.match(await page.locator("#model-why").textContent(), /seconds per image: it starts with 1 image and 10 steps/);
    assert.match(await page.locator("#model-info").textContent(), /celeba, 128x128 RGB, labels female, male, 38,780,976 parameters/);

    const query = { model: "celeba", labels: "female", batch: "1", sampler: "dpm++", steps: "2", seed: "3", cfg: "1.5", backend: "cpu", run: "1" };
    await page.goto(`${server.base}index.html?${new URLSearchParams(query)}`);
    const png = await downloadWhenDone(page, TIMEOUT);
    const want = reference({ weights: join(site, "weights/celeba.safetensors"), labels: ["female"], steps: 2, seed: 3, cfg: 1.5 });
    const diff = maxDifference(png, want);
    t.diagnostic(`celeba on the CPU fallback: max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 5, "the image is not blank");
    assert.deepEqual(problems, []);
  });

  test("a failed download still gives a site, without celeba, and the log says so", async () => {
    const dir = join(work, "site-offline");
    const log = await makeSite(dir, "http://127.0.0.1:9/celeba/ckpt.pt");
    assert.match(log, /could not download http:\/\/127\.0\.0\.1:9\/celeba\/ckpt\.pt/);
    assert.match(log, /the site has the MNIST models only/);
    const models = JSON.parse(readFileSync(join(dir, "models.json"), "utf8"));
    assert.deepEqual(Object.keys(models).sort(), ["mnist", "mnist-cpu"]);
    assert.ok(!existsSync(join(dir, "weights/celeba.card.json")));
  });
});
