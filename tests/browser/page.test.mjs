// The demo page and the widget in headless Chromium, against `trainer generate`.
// Run: `make test-browser` (builds pkg/ first), or `npm test` here once pkg/ exists.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";
import {
  decodePng, downloadWhenDone, FIXTURES, launch, maxDifference, openPage, reference, spread, startServer, TOLERANCE,
  weightsOf, withMetadata,
} from "./harness.mjs";

const TIMEOUT = 240_000;
let server;
let base;

before(async () => {
  ({ server, base } = await startServer());
});
after(() => server.close());

/** Opens the page with URL parameters that start a generation, waits for it, downloads the PNG. */
async function generateOnPage(page, query) {
  // No `cfgi` in the query: every step guided, not the model card's interval.
  await page.goto(`${base}index.html?${new URLSearchParams({ cfgi: "", ...query, run: "1" })}`);
  return { png: await downloadWhenDone(page, TIMEOUT), stats: await page.locator("#stats").textContent() };
}

/** Grey-level spread of what the demo page's canvas shows now (~0 when blank). */
async function canvasSpread(page) {
  const url = await page.evaluate(() => document.querySelector("#canvas").toDataURL("image/png"));
  return spread(decodePng(Buffer.from(url.split(",")[1], "base64")));
}

/** The sampler boxes start at the model card's settings (models.json), or the page's own defaults. */
async function assertCardSettings(page, model) {
  const card = (await (await fetch(`${base}models.json`)).json())[model];
  assert.equal(await page.locator("#sampler").inputValue(), card.sampler ?? "dpm++", `${model}: sampler`);
  assert.equal(Number(await page.locator("#steps").inputValue()), card.steps ?? 20, `${model}: steps`);
  assert.equal(Number(await page.locator("#cfg").inputValue()), card.guidance ?? 3, `${model}: guidance`);
  assert.equal(await page.locator("#cfgi").inputValue(), card.guidance_interval?.join(",") ?? "", `${model}: guided t`);
  // Every box the card filled holds a value the form accepts (e.g. within the guidance box's step).
  for (const id of ["sampler", "steps", "cfg", "cfgi"]) {
    assert.ok(await page.locator(`#${id}`).evaluate((e) => e.validity.valid), `${model}: #${id} is valid`);
  }
  const info = await page.locator("#model-info").textContent();
  if (card.trained) assert.ok(info.includes(card.trained), `${model}: the card's training story in "${info}"`);
  else assert.ok(info.includes(`trained ${card.step.toLocaleString("en-US")} steps`), `${model}: step in "${info}"`);
  // One line of quality and one of speed on this backend, with a link to the details.
  assert.ok(info.includes(card.quality), `${model}: the card's quality in "${info}"`);
  assert.ok(Object.values(card.speed).some((line) => info.includes(line)), `${model}: a speed line in "${info}"`);
  assert.equal(await page.locator("#model-info a").getAttribute("href"), card.details);
}

/** Loads the small `in-context` and `cross-attn` models through the file picker, and compares what the
 *  page draws with them to `trainer generate`. */
async function assertOtherDesigns(context, t, backend) {
  // Small models trained with `trainer train --conditioning in-context|cross-attn` (docs/architecture.md: the four designs).
  const { page, problems } = await openPage(context);
  await page.goto(`${base}index.html?backend=${backend}`);
  await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
  for (const design of ["in-context", "cross-attn"]) {
    const name = `${design}.safetensors`;
    await page.locator("#weights-file").setInputFiles(join(FIXTURES, name));
    await page.waitForFunction((n) => document.querySelector("#model").value === n &&
      document.body.dataset.state === "ready", name, { timeout: TIMEOUT });
    assert.match(await page.locator("#model-info").textContent(), new RegExp(`${design} conditioning`));
    for (const [key, value] of [["batch", "1"], ["steps", "6"], ["seed", "3"], ["cfg", "2"]]) {
      await page.fill(`#${key}`, value);
    }
    // A file without a card keeps the sampler box as it was; this test names its own.
    await page.selectOption("#sampler", "dpm++");
    await page.click("#generate");
    const png = await downloadWhenDone(page, TIMEOUT);
    assert.match(await page.locator("#stats").textContent(), new RegExp(`backend ${backend}`));
    const labels = Array.from({ length: 10 }, (_, i) => String(i));
    const diff = maxDifference(png, reference({
      weights: join(FIXTURES, name), labels, steps: 6, seed: 3, cfg: 2,
    }));
    t.diagnostic(`${design}: max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `${design}: max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 20, `${design}: the images are not blank`);
  }
  assert.deepEqual(problems, []);
}

describe("WebGPU (SwiftShader adapter)", { timeout: TIMEOUT * 2 }, () => {
  let chrome;
  before(async () => {
    chrome = await launch({ webgpu: true });
  });
  after(() => chrome.close());

  test("on a software WebGPU adapter the page starts on the CPU and says why; asked for WebGPU, with the large model", async () => {
    const { page, problems } = await openPage(chrome.context);
    // SwiftShader emulates a GPU on the CPU, where the CPU backend is faster: "auto" passes it over.
    await page.goto(`${base}index.html`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#model").inputValue(), "mnist-cpu");
    assert.match(await page.locator("#model-why").textContent(),
      /WebGPU is a software adapter \(google swiftshader\), slower than the CPU backend, and on the CPU mnist does [0-9.]+x/);
    assert.match(await page.locator("#status").textContent(), /ready on cpu/);
    await assertCardSettings(page, "mnist-cpu");

    await page.goto(`${base}index.html?backend=webgpu`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#model").inputValue(), "mnist");
    assert.match(await page.locator("#model-why").textContent(), /largest model, as this browser runs WebGPU/);
    // A software adapter: dit-web's own kernels (www/adapter.js).
    assert.match(await page.locator("#status").textContent(), /ready on webgpu \(google swiftshader.*; dit-web kernels\)/);
    assert.match(await page.locator("#model-info").textContent(), /9,281,092 parameters/);
    await assertCardSettings(page, "mnist");
    assert.deepEqual(problems, []);
  });

  test("digits on WebGPU equal trainer generate within 2/255, from both models", async (t) => {
    // WebGPU runs the model's Linear layers and attention in dit-web's own kernels (src/model/kernels/wgpu.rs):
    // both models cover their shapes (49 and 196 tokens, heads of 32 and 48), with and without guidance.
    const { page, problems } = await openPage(chrome.context);
    for (const [model, cfg] of [["mnist-cpu", "1"], ["mnist", "3"]]) {
      const request = { model, labels: ["3", "7"], steps: 4, seed: 11, sampler: "dpm++", cfg: Number(cfg) };
      const { png, stats } = await generateOnPage(page, {
        model, labels: "3,7", batch: "1", steps: "4", seed: "11", sampler: "dpm++", cfg, backend: "webgpu",
      });
      assert.match(stats, /backend webgpu \(.*; dit-web kernels\)/, "the WebGPU path ran, on dit-web's kernels");
      const diff = maxDifference(png, reference(request));
      t.diagnostic(`${model}: max difference to trainer generate: ${diff}/255`);
      assert.ok(diff <= TOLERANCE, `${model}: max pixel difference ${diff} > ${TOLERANCE}`);
      assert.ok(spread(png) > 20, `${model}: the images are not blank`);
    }
    assert.deepEqual(problems, []);
  });

  test("with kernels=burn (hardware adapters' default) WebGPU runs burn-wgpu's kernels and draws what trainer generate draws", async (t) => {
    // On SwiftShader burn-wgpu's matmul is 10-40x slower than dit-web's: one digit, two steps.
    const { page, problems } = await openPage(chrome.context);
    const request = { model: "mnist-cpu", labels: ["5"], steps: 2, seed: 3, sampler: "dpm++", cfg: 1 };
    const { png, stats } = await generateOnPage(page, {
      model: "mnist-cpu", labels: "5", batch: "1", steps: "2", seed: "3", sampler: "dpm++", cfg: "1",
      backend: "webgpu", kernels: "burn",
    });
    assert.match(stats, /backend webgpu \(google swiftshader.*; burn-wgpu kernels\)/);
    const diff = maxDifference(png, reference(request));
    t.diagnostic(`max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.deepEqual(problems, []);
  });

  test("the page loads models of the paper's other block designs and draws on WebGPU what trainer generate draws", async (t) => {
    await assertOtherDesigns(chrome.context, t, "webgpu");
  });
});

describe("CPU fallback (no WebGPU)", { timeout: TIMEOUT * 3 }, () => {
  let chrome;
  before(async () => {
    chrome = await launch({ webgpu: false });
  });
  after(() => chrome.close());

  test("digits with guidance on the CPU backend equal trainer generate", async (t) => {
    const { page, problems } = await openPage(chrome.context);
    assert.equal(await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter())), false,
      "this browser must have no WebGPU adapter for the fallback test");
    // Guidance on part of the steps only (the guided t box, from the URL).
    const request = {
      model: "mnist-cpu", labels: ["0", "4", "9"], steps: 10, seed: 5, sampler: "dpm++", cfg: 2, cfgInterval: [100, 300],
    };
    const { png, stats } = await generateOnPage(page, {
      model: "mnist-cpu", labels: "0,4,9", batch: "1", steps: "10", seed: "5", sampler: "dpm++", cfg: "2", cfgi: "100-300",
    });
    assert.match(stats, /backend cpu/);
    assert.match(stats, /backend cpu \(burn-flex/, "the stats name the CPU library");
    const diff = maxDifference(png, reference(request));
    t.diagnostic(`max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 20, "the images are not blank");
    // A guided-t range that is not one is refused (the box's pattern: the browser says so), and nothing runs.
    await page.fill("#cfgi", "300-");
    await page.click("#generate");
    assert.equal(await page.locator("#cfgi").evaluate((el) => el.validity.patternMismatch), true);
    assert.equal(await page.evaluate(() => document.body.dataset.state), "done");
    await page.fill("#cfgi", "300-100");
    await page.click("#generate");
    await page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: TIMEOUT });
    assert.match(await page.locator("#error").textContent(), /cfg_interval \[300, 100\]: the first timestep must not be above the last/);
    assert.deepEqual(problems, []);
  });

  test("the page starts with the small model on the CPU, and the large one draws what trainer generate draws", async (t) => {
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${base}index.html`);
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#model").inputValue(), "mnist-cpu");
    assert.match(await page.locator("#model-why").textContent(), /no WebGPU, and on the CPU mnist does [0-9.]+x the arithmetic/);
    await assertCardSettings(page, "mnist-cpu");

    const request = { model: "mnist", labels: ["3", "7"], steps: 4, seed: 11, sampler: "dpm++", cfg: 3 };
    const { png } = await generateOnPage(page, {
      model: "mnist", labels: "3,7", batch: "1", steps: "4", seed: "11", sampler: "dpm++", cfg: "3",
    });
    assert.match(await page.locator("#model-info").textContent(), /9,281,092 parameters/);
    const diff = maxDifference(png, reference(request));
    t.diagnostic(`max difference to trainer generate (mnist): ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 20, "the images are not blank");
    assert.deepEqual(problems, []);
  });

  test("the widget in the example post draws the digits trainer generate draws", async (t) => {
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${base}post.html`);
    // The first widget starts when visible; the second waits for a click.
    const pi = page.locator("#pi");
    await page.waitForFunction(() => document.querySelector("#pi").dataset.state, null, { timeout: TIMEOUT });
    assert.equal(await pi.getAttribute("data-state"), "done");
    assert.equal(await page.locator("#e").getAttribute("data-state"), null, "the click-to-start widget waited");
    const canvasPng = (widget) => widget.evaluate((el) => el.shadowRoot.querySelector("canvas").toDataURL("image/png"))
      .then((url) => decodePng(Buffer.from(url.split(",")[1], "base64")));
    // No model attribute: the CPU's default, the small model, with its card's sampler and guidance.
    const cards = await (await fetch(`${base}models.json`)).json();
    const small = cards["mnist-cpu"];
    const png = await canvasPng(pi);
    const diff = maxDifference(png, reference({
      model: "mnist-cpu", labels: ["3", "1", "4"], steps: 20, seed: 0,
      sampler: small.sampler ?? "dpm++", cfg: small.guidance ?? 3, cfgInterval: small.guidance_interval,
    }));
    t.diagnostic(`max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 20, "the first widget's images are not blank");

    await page.locator("#e").locator("button").click();
    await page.waitForFunction(() => document.querySelector("#e").dataset.state, null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#e").getAttribute("data-state"), "done");
    const second = await canvasPng(page.locator("#e"));
    const diffLarge = maxDifference(second, reference({
      model: "mnist", labels: ["2", "7", "1", "8"], steps: 10, seed: 7,
      sampler: cards.mnist.sampler ?? "dpm++", cfg: cards.mnist.guidance ?? 3, cfgInterval: cards.mnist.guidance_interval,
    }));
    t.diagnostic(`max difference to trainer generate (model="mnist"): ${diffLarge}/255`);
    assert.ok(diffLarge <= TOLERANCE, `max pixel difference ${diffLarge} > ${TOLERANCE}`);
    assert.ok(spread(second) > 20, "the second widget's images are not blank");
    assert.equal(page.workers().length, 1, "both widgets share one worker");
    assert.deepEqual(problems, []);
  });

  test("every step reports where its time went", async () => {
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${base}index.html`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    // The page's own client (one module instance, one worker), with a progress callback.
    const steps = await page.evaluate(async () => {
      const { client } = await import("./client.js");
      const seen = [];
      await client.generate("mnist-cpu", { labels: ["1", "8"], steps: 3, seed: 4, cfg: 2 },
        (p) => seen.push({ ...p.timing, msPerStep: p.msPerStep }));
      return seen;
    });
    assert.equal(steps.length, 3);
    for (const step of steps) {
      for (const key of ["networkMs", "readBackMs", "updateMs"]) {
        assert.ok(Number.isFinite(step[key]) && step[key] >= 0, `${key} = ${step[key]}`);
      }
      // On the CPU the network call is the arithmetic itself, and the parts fit inside the step.
      assert.ok(step.networkMs > 0, `network call ${step.networkMs} ms`);
      assert.ok(step.networkMs + step.readBackMs + step.updateMs <= step.msPerStep + 1,
        `parts ${JSON.stringify(step)} exceed the step`);
    }
    assert.deepEqual(problems, []);
  });

  test("a corrupt weight file shows an error and the page keeps working", async () => {
    const { page } = await openPage(chrome.context);
    await page.goto(`${base}index.html?labels=1&steps=3&seed=2`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    const garbage = Buffer.alloc(4096, 7);
    garbage.writeBigUInt64LE(100n, 0); // claims a 100-byte header of 0x07 bytes
    await page.locator("#weights-file").setInputFiles({
      name: "broken.safetensors", mimeType: "application/octet-stream", buffer: garbage,
    });
    await page.waitForFunction(() => !document.querySelector("#error").hidden, null, { timeout: TIMEOUT });
    const message = await page.locator("#error").textContent();
    assert.match(message, /could not load broken\.safetensors: .+/);
    assert.equal(await page.locator("#model").inputValue(), "mnist-cpu", "the shipped model stays selected");
    // Files whose metadata lies about the image size or holds an unusable schedule: refused
    // with the field named, before anything is allocated from them.
    const lies = [
      ["huge.safetensors", (m) => { m.model.input_size = 100000; }, /could not load huge\.safetensors: .*input_size = 100000 is more than dit-web accepts/],
      ["beta.safetensors", (m) => { m.schedule.beta_end = 2.0; }, /could not load beta\.safetensors: .*beta_end = 2 must be in \(0, 1\)/],
    ];
    for (const [name, edit, expected] of lies) {
      await page.locator("#weights-file").setInputFiles({
        name, mimeType: "application/octet-stream", buffer: withMetadata(weightsOf("mnist-cpu"), edit),
      });
      await page.waitForFunction((n) => document.querySelector("#error").textContent.includes(n), name, { timeout: TIMEOUT });
      assert.match(await page.locator("#error").textContent(), expected);
      assert.equal(await page.locator("#model").inputValue(), "mnist-cpu", "the shipped model stays selected");
    }
    // Too many images for one call: a plain message, nothing sent to the worker.
    await page.fill("#batch", "16");
    for (const digit of ["2", "3", "4", "5"]) await page.click(`#labels button:text-is("${digit}")`);
    await page.click("#generate");
    assert.match(await page.locator("#error").textContent(), /at most 64 images per run: 80 asked/);
    await page.fill("#batch", "1");
    await page.click("#generate");
    await page.waitForFunction(() => document.body.dataset.state === "done" ||
      (document.body.dataset.state === "error" && !document.querySelector("#error").hidden), null, { timeout: TIMEOUT });
    assert.equal(await page.evaluate(() => document.body.dataset.state), "done",
      await page.locator("#error").textContent());
    assert.equal(await page.locator("#error").isHidden(), true);
    assert.ok(await canvasSpread(page) > 20, "the digits are not blank");
  });
  test("the page loads models of the paper's other block designs and draws what trainer generate draws", async (t) => {
    await assertOtherDesigns(chrome.context, t, "cpu");
  });

  test("a replaced weight file reaches a returning visitor, and its old copies are deleted", async () => {
    // Its own server: a fresh origin, so no earlier test has cached these weights.
    const own = await startServer();
    try {
      const { page } = await openPage(chrome.context);
      const missing = [];
      page.on("response", (r) => r.status() === 404 && missing.push(new URL(r.url()).pathname));
      await page.goto(`${own.base}models.json`);
      const current = await page.evaluate(async () => {
        const entry = (await (await fetch("models.json")).json())["mnist-cpu"];
        const cache = await caches.open("dit-web-weights-v1");
        const stale = () => new Response(new Uint8Array(64), { headers: { "content-type": "application/octet-stream" } });
        // What the page cached before its URLs carried versions, and an older version.
        await cache.put("weights/mnist-cpu.safetensors", stale());
        await cache.put("weights/mnist-cpu.safetensors?v=000000000000", stale());
        return new URL(entry.url, location.href).href;
      });
      assert.match(current, /\/weights\/mnist-cpu\.safetensors\?v=[0-9a-f]{12}$/);
      await page.goto(`${own.base}index.html?model=mnist-cpu&labels=5&steps=3&seed=4&run=1`);
      const png = await downloadWhenDone(page, TIMEOUT);
      assert.ok(spread(png) > 20, "the digits are drawn from the new file, not the stale copies");
      // The copy is stored (and the others deleted) after the first image, off its path: poll.
      let cached = [];
      for (let i = 0; i < 50; i++) {
        cached = await page.evaluate(async () => (await (await caches.open("dit-web-weights-v1")).keys())
          .map((r) => r.url).filter((u) => new URL(u).pathname.endsWith("/weights/mnist-cpu.safetensors")));
        if (cached.length === 1 && cached[0] === current) break;
        await new Promise((done) => setTimeout(done, 200));
      }
      assert.deepEqual(cached, [current]);
      // (A JSON document as the first page makes the browser ask for a favicon; nothing else.)
      assert.deepEqual(missing.filter((path) => path !== "/favicon.ico"), []);
    } finally {
      own.server.closeAllConnections();
      await new Promise((done) => own.server.close(done));
    }
  });

  test("the page works offline after the first visit", async (t) => {
    // Its own server, so that stopping it takes the network away for real.
    const own = await startServer();
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${own.base}index.html?labels=5&steps=3&seed=4`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    await page.evaluate(() => navigator.serviceWorker.ready);
    own.server.closeAllConnections();
    await new Promise((done) => own.server.close(done));
    assert.equal(await page.evaluate(() => fetch(`probe-${Date.now()}`).then(() => "online", () => "offline")),
      "offline", "the server is gone");
    await page.reload();
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    await page.click("#generate");
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.evaluate(() => document.body.dataset.state), "done",
      await page.locator("#error").textContent());
    assert.ok(await canvasSpread(page) > 20, "the digits drawn offline are not blank");
    t.diagnostic(problems.join("; "));
  });
});
