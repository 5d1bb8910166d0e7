// Your own model into the page, as the docs tell it: a folder of your own images (one
// sub-folder per label) -> `trainer train` -> `trainer export` (the weight file and its card) ->
// the file dropped into the site's weights/ -> the page lists it with what its card says, starts
// it at the card's settings and draws what `trainer generate` draws.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PNG } from "pngjs";
import { downloadWhenDone, launch, maxDifference, openPage, reference, siteWith, spread, startServer, TOLERANCE } from "./harness.mjs";

const TIMEOUT = 300_000;
let work;
let site;
let server;

/** A `size` x `size` PNG: a disc (label "discs") or a bar (label "bars") on black. */
function picture(kind, size, shift) {
  const png = new PNG({ width: size, height: size });
  const c = size / 2 + shift;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const on = kind === "discs" ? (x - c) ** 2 + (y - c) ** 2 < (size / 4) ** 2 : Math.abs(x - c) < size / 8;
      const i = 4 * (y * size + x);
      png.data.set(on ? [250, 250, 250, 255] : [0, 0, 0, 255], i);
    }
  }
  return PNG.sync.write(png);
}

function trainer(args) {
  const run = spawnSync(process.env.TRAINER, args, { encoding: "utf8" });
  assert.equal(run.status, 0, `trainer ${args.join(" ")}:\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

before(async () => {
  if (!process.env.TRAINER) throw new Error("TRAINER=path/to/trainer is needed (make browser sets it)");
  work = mkdtempSync(join(tmpdir(), "dit-web-journey-"));
  const data = join(work, "shapes");
  for (const kind of ["discs", "bars"]) {
    mkdirSync(join(data, kind), { recursive: true });
    for (let i = 0; i < 6; i++) writeFileSync(join(data, kind, `${i}.png`), picture(kind, 20 + 4 * i, i - 3));
  }
  // The docs' commands, at a tiny size.
  const run = join(work, "run");
  const out = trainer(["train", "--preset", "mnist-cpu", "--data", data, "--image-size", "16", "--channels", "1",
    "--run", run, "--steps", "3", "--batch-size", "4", "--sample-every", "0"]);
  assert.match(out, /12 images of 2 labels \(bars, discs\)/);
  mkdirSync(join(work, "weights"));
  trainer(["export", "--run", run, "--out", join(work, "weights/shapes.safetensors")]);
  site = siteWith([join(work, "weights/shapes.safetensors"), join(work, "weights/shapes.card.json")]);
  server = await startServer(site);
});
after(() => {
  server?.server.close();
  if (site) rmSync(site, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("your own model into the page", { timeout: TIMEOUT }, () => {
  test("trained from an image folder, exported, listed with its card and drawn as trainer generate draws it", async (t) => {
    const models = JSON.parse(readFileSync(join(site, "models.json"), "utf8"));
    assert.ok(models.shapes, Object.keys(models).join(", "));
    assert.equal(models.shapes.dataset, "images");
    assert.equal(models.shapes.guidance, 2, "trained with the default label dropout: guided");
    assert.equal(models.shapes.trained, "trained 3 steps");

    const chrome = await launch({ webgpu: false });
    try {
      const { page, problems } = await openPage(chrome.context);
      await page.goto(`${server.base}index.html?model=shapes&backend=cpu`);
      await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
      assert.equal(await page.inputValue("#sampler"), "dpm++");
      assert.equal(await page.inputValue("#cfg"), "2");
      assert.match(await page.locator("#model-info").textContent(), /images, 16x16 grey, labels bars, discs/);
      const query = { model: "shapes", labels: "bars,discs", batch: "1", steps: "4", seed: "3", backend: "cpu", run: "1" };
      await page.goto(`${server.base}index.html?${new URLSearchParams(query)}`);
      const png = await downloadWhenDone(page, TIMEOUT);
      const want = reference({ weights: join(site, "weights/shapes.safetensors"), labels: ["bars", "discs"], steps: 4, seed: 3, cfg: 2 });
      const diff = maxDifference(png, want);
      t.diagnostic(`max difference to trainer generate: ${diff}/255`);
      assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
      assert.ok(spread(png) > 5, "the images are not blank");
      assert.deepEqual(problems, []);
    } finally {
      await chrome.close();
    }
  });
});
