// The npm package as a web developer uses it: examples/web-app (TypeScript against pkg/'s
// generated types, bundled by esbuild with the wasm module and a weight file as assets; `make
// example-app` builds it) opened in headless Chromium, its digits against `trainer generate`.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { decodePng, launch, openPage, reference, ROOT, spread, startServer, TOLERANCE } from "./harness.mjs";

const DIST = join(ROOT, "examples/web-app/dist");
let site;
let chrome;

before(async () => {
  assert.ok(existsSync(join(DIST, "index.html")), "examples/web-app is built (make example-app)");
  site = await startServer(DIST);
  chrome = await launch({ webgpu: false });
});
after(async () => {
  await chrome.close();
  site.server.close();
});

test("the bundled example app draws what trainer generate draws, with progress from the typed callback", { timeout: 240_000 }, async (t) => {
  const { page, problems } = await openPage(chrome.context);
  await page.goto(`${site.base}index.html?labels=6,0&steps=5&seed=8&cfg=1`);
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 240_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.state), "done", await page.locator("#status").textContent());
  assert.equal(await page.evaluate(() => document.body.dataset.steps), "1,2,3,4,5");
  assert.equal(await page.locator("#status").textContent(), "6 0: done");
  const png = decodePng(Buffer.from((await page.evaluate(() => document.querySelector("#canvas").toDataURL("image/png"))).split(",")[1], "base64"));
  const expected = reference({ model: "mnist-cpu", labels: ["6", "0"], steps: 5, seed: 8, cfg: 1, each: true });
  // The app draws the images side by side with no gap: compare each 28x28 square.
  let worst = 0;
  expected.forEach((image, k) => {
    for (let y = 0; y < image.height; y++) {
      for (let x = 0; x < image.width; x++) {
        for (let c = 0; c < 4; c++) {
          const ours = png.data[(y * png.width + k * image.width + x) * 4 + c];
          worst = Math.max(worst, Math.abs(ours - image.data[(y * image.width + x) * 4 + c]));
        }
      }
    }
  });
  t.diagnostic(`max difference to trainer generate: ${worst}/255`);
  assert.ok(worst <= TOLERANCE, `max pixel difference ${worst} > ${TOLERANCE}`);
  assert.ok(spread(png) > 20, "the digits are not blank");
  assert.deepEqual(problems, []);
});
