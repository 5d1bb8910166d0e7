// A CelebA-shaped model (128x128 RGB, labels female / male) dropped into the site's weights/:
// listed, described and drawn in colour by the page on both backends and by the widget, equal to
// `trainer generate`. The fixture is a small network trained briefly on `trainer shapes` data
// (fixtures/README.md).

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  decodePng, downloadWhenDone, FIXTURES, launch, maxDifference, openPage, reference, siteWith, spread, startServer, TOLERANCE,
} from "./harness.mjs";

const TIMEOUT = 240_000;
const MODEL = "celeba-shapes";
const WEIGHTS = join(FIXTURES, `${MODEL}.safetensors`);
let site;
let server;
let base;

before(async () => {
  site = siteWith([WEIGHTS]);
  ({ server, base } = await startServer(site));
});
after(() => {
  server.close();
  rmSync(site, { recursive: true, force: true });
});

/** Mean absolute difference between an RGBA image's red and blue channels: 0 for grey images. */
function colourfulness(png) {
  let sum = 0;
  for (let i = 0; i < png.data.length; i += 4) sum += Math.abs(png.data[i] - png.data[i + 2]);
  return sum / (png.data.length / 4);
}

async function drawOnPage(chrome, backend, t) {
  const { page, problems } = await openPage(chrome.context);
  const query = { model: MODEL, labels: "female,male", batch: "1", sampler: "dpm++", steps: "4", seed: "5", cfg: "2", cfgi: "", backend, run: "1" };
  await page.goto(`${base}index.html?${new URLSearchParams(query)}`);
  const png = await downloadWhenDone(page, TIMEOUT);
  const info = await page.locator("#model-info").textContent();
  assert.match(info, /celeba, 128x128 RGB, labels female, male, [\d,]+ parameters/);
  assert.ok(!info.includes("undefined"), info);
  assert.match(await page.locator("#stats").textContent(), new RegExp(`backend ${backend}`));
  const diff = maxDifference(png, reference({ weights: WEIGHTS, labels: ["female", "male"], steps: 4, seed: 5, cfg: 2 }));
  t.diagnostic(`${backend}: max difference to trainer generate: ${diff}/255`);
  assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
  assert.ok(spread(png) > 10, "the images are not blank");
  assert.ok(colourfulness(png) > 5, "the images are in colour");
  // After a run, the page says what the next one will take, from the speed it just measured.
  assert.match(await page.locator("#estimate").textContent(),
    new RegExp(`about [\\d.]+ (s|min [\\d]+ s) per step, .* for this run on ${backend}`));
  assert.deepEqual(problems, []);
}

describe("a CelebA-shaped model", { timeout: TIMEOUT * 3 }, () => {
  test("is drawn by the page on the CPU fallback and by the widget, as trainer generate draws it", async (t) => {
    const chrome = await launch({ webgpu: false });
    try {
      await drawOnPage(chrome, "cpu", t);
      const { page, problems } = await openPage(chrome.context);
      await page.goto(`${base}post.html`);
      await page.evaluate((model) => {
        const w = document.createElement("dit-generate");
        w.id = "faces";
        for (const [k, v] of Object.entries({ model, labels: "female male", sampler: "dpm++", steps: "4", seed: "5", cfg: "2", "cfg-interval": "all", start: "click" })) {
          w.setAttribute(k, v);
        }
        document.body.append(w);
      }, MODEL);
      await page.locator("#faces").locator("button").click();
      await page.waitForFunction(() => document.querySelector("#faces").dataset.state, null, { timeout: TIMEOUT });
      assert.equal(await page.locator("#faces").getAttribute("data-state"), "done");
      const url = await page.locator("#faces").evaluate((el) => el.shadowRoot.querySelector("canvas").toDataURL("image/png"));
      const png = decodePng(Buffer.from(url.split(",")[1], "base64"));
      const expected = reference({ weights: WEIGHTS, labels: ["female", "male"], steps: 4, seed: 5, cfg: 2 });
      const diff = maxDifference(png, expected);
      t.diagnostic(`widget: max difference to trainer generate: ${diff}/255`);
      assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
      assert.ok(colourfulness(png) > 5, "the widget draws in colour");
      assert.deepEqual(problems, []);
    } finally {
      await chrome.close();
    }
  });

  test("is drawn by the page on WebGPU as trainer generate draws it", async (t) => {
    const chrome = await launch({ webgpu: true });
    try {
      await drawOnPage(chrome, "webgpu", t);
    } finally {
      await chrome.close();
    }
  });
});
