// Embedding: the widget in a post on another origin (script tag and iframe), stopping a running
// generation on the page and in the widget, and numbers out of range. CPU fallback (no WebGPU).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  decodePng, launch, maxDifference, openPage, reference, spread, startServer, TOLERANCE,
} from "./harness.mjs";

const TIMEOUT = 240_000;
let demo; // www/ on 127.0.0.1
let blog; // a post on 127.0.0.2: another origin and another site
let blogDir;
let chrome;

/** A post as a blog would have it: plain HTML on its own origin, the widget from the demo's host. */
function writePost(demoBase) {
  blogDir = mkdtempSync(join(tmpdir(), "dit-web-blog-"));
  writeFileSync(join(blogDir, "post.html"), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>A post</title>
<script type="module" src="${demoBase}dit-widget.js"></script></head>
<body><h1>A post elsewhere</h1>
<dit-generate id="pi" model="mnist-cpu" labels="3 1 4" sampler="dpm++" steps="6" seed="2" cfg="1"></dit-generate>
<iframe id="frame" src="${demoBase}embed.html?model=mnist-cpu&labels=2,7&sampler=dpm%2B%2B&steps=5&seed=9&cfg=1" width="300" height="160"></iframe>
</body></html>`);
  // A post that sends its own Content-Security-Policy (the server adds the header).
  writeFileSync(join(blogDir, "csp-post.html"), `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A strict post</title>
<script type="module" src="${demoBase}dit-widget.js"></script></head>
<body><dit-generate id="w" model="mnist-cpu" labels="3" sampler="dpm++" steps="2" seed="1" cfg="1"></dit-generate>
</body></html>`);
}

const canvasOf = (locator) => locator.evaluate((el) => el.shadowRoot.querySelector("canvas").toDataURL("image/png"))
  .then((url) => decodePng(Buffer.from(url.split(",")[1], "base64")));

before(async () => {
  demo = await startServer();
  writePost(demo.base);
  blog = await startServer(blogDir, "127.0.0.2", { csp: false });
  chrome = await launch({ webgpu: false });
});
after(async () => {
  await chrome.close();
  demo.server.close();
  blog.server.close();
  rmSync(blogDir, { recursive: true, force: true });
});

describe("embedding", { timeout: TIMEOUT * 3 }, () => {
  test("a post on another origin runs the widget from the demo's host, by script tag and by iframe", async (t) => {
    const { page, problems } = await openPage(chrome.context);
    const origins = new Set();
    page.on("request", (r) => origins.add(new URL(r.url()).origin));
    await page.goto(`${blog.base}post.html`);
    const pi = page.locator("#pi");
    await page.waitForFunction(() => document.querySelector("#pi").dataset.state, null, { timeout: TIMEOUT });
    assert.equal(await pi.getAttribute("data-state"), "done", await pi.evaluate((el) => el.shadowRoot.textContent));
    const png = await canvasOf(pi);
    const diff = maxDifference(png, reference({ model: "mnist-cpu", labels: ["3", "1", "4"], steps: 6, seed: 2, cfg: 1 }));
    t.diagnostic(`script tag: max difference to trainer generate: ${diff}/255`);
    assert.ok(diff <= TOLERANCE, `max pixel difference ${diff} > ${TOLERANCE}`);
    assert.ok(spread(png) > 20, "the digits are not blank");
    // Everything heavy came from the demo's host: the post's origin served only the post.
    assert.ok(origins.has(new URL(demo.base).origin));

    const frame = page.frameLocator("#frame");
    const widget = frame.locator("dit-generate");
    await widget.evaluate((el) => new Promise((done) => {
      if (el.dataset.state) done();
      else new MutationObserver(() => el.dataset.state && done()).observe(el, { attributes: true });
    }));
    assert.equal(await widget.getAttribute("data-state"), "done");
    const framed = await canvasOf(widget);
    const frameDiff = maxDifference(framed, reference({ model: "mnist-cpu", labels: ["2", "7"], steps: 5, seed: 9, cfg: 1 }));
    t.diagnostic(`iframe: max difference to trainer generate: ${frameDiff}/255`);
    assert.ok(frameDiff <= TOLERANCE, `max pixel difference ${frameDiff} > ${TOLERANCE}`);
    assert.deepEqual(problems, []);
  });

  test("the page's embed snippets reproduce its settings", async () => {
    const { page, problems } = await openPage(chrome.context);
    await page.goto(`${demo.base}index.html?model=mnist-cpu&labels=5,6&steps=7&seed=4&cfg=2&cfgi=100-300`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    const script = await page.locator("#embed-script").inputValue();
    assert.ok(script.startsWith(`<script type="module" src="${demo.base}dit-widget.js"></script>`), script);
    for (const attr of ['model="mnist-cpu"', 'labels="5 6"', 'steps="7"', 'seed="4"', 'cfg="2"', 'cfg-interval="100,300"']) {
      assert.ok(script.includes(attr), `${attr} in ${script}`);
    }
    const iframe = await page.locator("#embed-frame").inputValue();
    const src = new URL(iframe.match(/src="([^"]+)"/)[1].replaceAll("&amp;", "&"));
    assert.equal(src.pathname, "/embed.html");
    assert.equal(src.searchParams.get("labels"), "5,6");
    assert.equal(src.searchParams.get("steps"), "7");
    assert.deepEqual(problems, []);
  });

  test("a post whose Content-Security-Policy is the Embed box's runs the widget; one without the host in worker-src is told so", async (t) => {
    // The policy, as the page prints it for a post (plus the post's own `default-src 'self'`).
    const { page: demoPage } = await openPage(chrome.context);
    await demoPage.goto(`${demo.base}index.html?model=mnist-cpu&labels=3&steps=2&cfg=1`);
    await demoPage.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    const sources = await demoPage.locator("#embed-csp").inputValue();
    const host = new URL(demo.base).origin;
    assert.equal(sources, `script-src ${host} 'wasm-unsafe-eval'; connect-src ${host}; worker-src blob: ${host}`);
    await demoPage.close();

    const strict = sources.replace("script-src ", "script-src 'self' ");
    for (const [policy, expected] of [
      [`default-src 'self'; ${strict}`, null],
      // What the README said before: the host in script-src and connect-src, blob: in worker-src.
      [`default-src 'self'; script-src 'self' ${host} 'wasm-unsafe-eval'; connect-src ${host}; worker-src blob:`,
        /Content-Security-Policy must allow http:\/\/127\.0\.0\.1:\d+ in worker-src \(beside blob:\)/],
      // No blob: at all: the violation the page sees is named.
      [`default-src 'self'; script-src 'self' ${host} 'wasm-unsafe-eval'; connect-src ${host}; worker-src ${host}`,
        /blocked blob in worker-src/],
    ]) {
      const post = await startServer(blogDir, "127.0.0.2", { csp: policy });
      try {
        const { page } = await openPage(chrome.context);
        await page.goto(`${post.base}csp-post.html`);
        await page.waitForFunction(() => document.querySelector("#w").dataset.state, null, { timeout: TIMEOUT });
        const [state, status] = await page.locator("#w").evaluate((el) => [el.dataset.state, el.shadowRoot.querySelector(".status").textContent]);
        t.diagnostic(`${policy}: ${state}: ${status}`);
        if (expected === null) assert.equal(state, "done", status);
        else assert.match(status, expected);
        await page.close();
      } finally {
        post.server.close();
      }
    }
  });

  test("a running generation stops from the page and from the widget; the next one starts at once", async (t) => {
    const { page, problems } = await openPage(chrome.context);
    // 400 DDPM steps of the large model: minutes if nothing stops it.
    await page.goto(`${demo.base}index.html?model=mnist&labels=1,2&sampler=ddpm&steps=399&cfg=1`);
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    await page.click("#generate");
    await page.waitForFunction(() => /step [2-9] \//.test(document.querySelector("#status").textContent), null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#stop").isVisible(), true);
    await page.click("#stop");
    await page.waitForFunction(() => document.body.dataset.state === "cancelled", null, { timeout: 10_000 });
    assert.equal(await page.locator("#status").textContent(), "stopped");
    assert.equal(await page.locator("#error").isHidden(), true);
    // The same worker takes the next request: a short one finishes soon after the stop.
    const started = Date.now();
    await page.fill("#steps", "3");
    await page.click("#generate");
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.equal(await page.evaluate(() => document.body.dataset.state), "done", await page.locator("#error").textContent());
    t.diagnostic(`3 steps after the stop took ${Date.now() - started} ms`);
    assert.equal(page.workers().length, 1, "the worker was not restarted");

    // The widget's button stops it too, and runs again.
    await page.goto(`${demo.base}post.html`);
    await page.evaluate(() => {
      const w = document.createElement("dit-generate");
      Object.assign(w, { id: "long" });
      for (const [k, v] of Object.entries({ model: "mnist", labels: "8", sampler: "ddpm", steps: "399", cfg: "1", start: "click" })) {
        w.setAttribute(k, v);
      }
      document.body.append(w);
    });
    const long = page.locator("#long");
    await long.locator("button").click();
    await page.waitForFunction(() => /^[2-9]\/399$/.test(document.querySelector("#long").shadowRoot.querySelector(".status").textContent),
      null, { timeout: TIMEOUT });
    await long.locator("button").click();
    await page.waitForFunction(() => document.querySelector("#long").dataset.state === "cancelled", null, { timeout: 10_000 });
    assert.equal(await long.locator("button").textContent(), "Again");
    assert.deepEqual(problems, []);
  });

  test("numbers out of range get a clear answer on the page and in the widget", async () => {
    const { page } = await openPage(chrome.context);
    await page.goto(`${demo.base}index.html?model=mnist-cpu&labels=1&steps=500&run=1`);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.match(await page.locator("#error").textContent(), /500 sampler steps: this model has 400 noisy timesteps/);
    await page.goto(`${demo.base}index.html?model=mnist-cpu&labels=1&steps=100000000&run=1`);
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: TIMEOUT });
    assert.match(await page.locator("#error").textContent(), /steps must be 1..=1000 .*got 100000000/);
    // The form refuses what the model cannot do before anything runs.
    assert.equal(await page.locator("#steps").getAttribute("max"), "400");
    await page.fill("#steps", "0");
    await page.click("#generate");
    assert.equal(await page.locator("#steps").evaluate((el) => el.validity.rangeUnderflow), true);

    await page.goto(`${demo.base}post.html`);
    await page.evaluate(() => {
      const w = document.createElement("dit-generate");
      w.id = "bad";
      for (const [k, v] of Object.entries({ model: "mnist-cpu", labels: "1", sampler: "dpm++", steps: "0", start: "click" })) {
        w.setAttribute(k, v);
      }
      document.body.append(w);
    });
    await page.locator("#bad").locator("button").click();
    await page.waitForFunction(() => document.querySelector("#bad").dataset.state, null, { timeout: TIMEOUT });
    assert.equal(await page.locator("#bad").getAttribute("data-state"), "error");
    assert.match(await page.locator("#bad").evaluate((el) => el.shadowRoot.querySelector(".status").textContent),
      /steps must be 1..=1000 \(0 means every timestep, DDPM only\), got 0/);
  });
});
