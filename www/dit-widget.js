// <dit-generate>: a Diffusion Transformer in a blog post, with one script tag.
//
//   <script type="module" src="https://your.site/dit-web/dit-widget.js"></script>
//   <dit-generate model="mnist" labels="3 1 4" steps="20"></dit-generate>
//
// The post may live on any origin: everything the widget loads (client, worker, wasm, weights,
// models.json) is resolved against this file's URL, and the worker is started through a blob:
// URL where the post's origin differs. The host of this file must then send CORS headers
// (`Access-Control-Allow-Origin: *`, as GitHub Pages does; `tools/serve.mjs` does too), and a post
// with a Content-Security-Policy needs `script-src HOST 'wasm-unsafe-eval'; connect-src HOST;
// worker-src blob: HOST` (a module worker's imports are checked against worker-src).
//
// Attributes: model (a name from models.json; default: the largest MNIST model on WebGPU, the
// smallest on the CPU fallback), labels (names, space or comma separated), and the sampler:
// sampler (dpm++ | ddim | ddpm), steps, cfg (guidance), cfg-interval (the timesteps guided,
// "lo,hi", or "all"); each defaults to the model card's in models.json (its `cpu_start` steps on
// the CPU fallback), else dpm++, 20, 3 and all,
// seed (0), start ("visible": generate when scrolled into
// view, the default; "click": wait for a click). Nothing heavy (worker, wasm, weights) loads before
// that. All widgets on a page share one worker and one copy of each model's weights. While it
// runs, the button stops it. Events: "generated" (detail: the result), "cancelled".

import { displaySize, drawGrid } from "./grid.js";

// A constructed stylesheet, not a <style> element: it passes a CSP without 'unsafe-inline'.
const sheet = new CSSStyleSheet();
sheet.replaceSync(`
  :host { display: inline-block; font: 14px system-ui, sans-serif; color: #333; }
  figure { margin: 0; display: inline-flex; flex-direction: column; gap: 4px; }
  canvas { image-rendering: pixelated; background: #111; min-width: 96px; min-height: 96px; }
  .bar { display: flex; gap: 6px; align-items: center; }
  button { font: inherit; padding: 2px 10px; }
  progress { flex: 1; min-width: 60px; }
  .error { color: #a40000; }
`);

const template = `
<figure>
  <canvas part="canvas" width="0" height="0"></canvas>
  <figcaption class="bar">
    <button part="button" type="button">Generate</button>
    <progress max="1" value="0"></progress>
    <span class="status" role="status"></span>
  </figcaption>
</figure>`;

class DitGenerate extends HTMLElement {
  static observedAttributes = ["labels", "steps", "seed", "cfg", "cfg-interval", "sampler", "model"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [sheet];
    root.innerHTML = template;
    this.canvas = this.shadowRoot.querySelector("canvas");
    this.button = this.shadowRoot.querySelector("button");
    this.bar = this.shadowRoot.querySelector("progress");
    this.status = this.shadowRoot.querySelector(".status");
    this.runs = 0;
    this.button.addEventListener("click", () => {
      if (this.running) this.abort?.abort();
      else this.generate(this.runs > 0);
    });
  }

  connectedCallback() {
    this.#size(28);
    if ((this.getAttribute("start") || "visible") === "visible" && "IntersectionObserver" in window) {
      this.observer = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          this.observer.disconnect();
          this.generate(false);
        }
      });
      this.observer.observe(this);
    }
  }

  disconnectedCallback() {
    this.observer?.disconnect();
    this.abort?.abort();
  }

  /** Shows images of `side` pixels at about 84 CSS pixels each ([displaySize]). */
  #size(side) {
    this.canvas.style.width = `${Math.max(96, displaySize(side, this.#labels().length).width)}px`;
  }

  #labels() {
    return (this.getAttribute("labels") || "0").split(/[ ,]+/).filter(Boolean);
  }

  /** The guided timesteps: `cfg-interval="100,399"` ("100-399" and "100 399" read too), else
   *  the card's; `all` or none: every step. */
  #interval(card) {
    const text = this.getAttribute("cfg-interval");
    if (text === null) return card.guidance_interval;
    if (text.trim() === "all") return undefined;
    const bounds = text.split(/[ ,-]+/).filter(Boolean).map(Number);
    if (bounds.length !== 2 || !bounds.every(Number.isInteger)) {
      throw new Error(`cfg-interval="${text}": expected two timesteps, e.g. "100,399"`);
    }
    return bounds;
  }

  /** Generates; `fresh` draws a new seed (the button after the first run). */
  async generate(fresh) {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.button.textContent = "Stop";
    this.status.className = "status";
    try {
      // The heavy part starts here, on first use, once per page.
      const { client, defaultModel, models } = await import("./client.js");
      await client.start();
      const model = this.getAttribute("model") ||
        defaultModel(await models(), client.backend, client.softwareAdapter).name;
      if (fresh) this.setAttribute("seed", String(Math.floor(Math.random() * 2 ** 31)));
      this.status.textContent = "loading…";
      const off = client.on((e) => {
        if (e.type === "download" && e.total) this.bar.value = e.loaded / e.total;
      });
      let meta;
      try {
        meta = await client.load(model);
      } finally {
        off();
      }
      this.#size(meta.model.input_size);
      const card = (await models())[model] ?? {};
      const request = {
        labels: this.#labels(),
        // A heavy model's card may ask for fewer steps on the CPU fallback (`cpu_start`).
        steps: Number(this.getAttribute("steps") ||
          (client.backend === "cpu" && card.cpu_start?.steps) || card.steps || 20),
        sampler: this.getAttribute("sampler") || card.sampler || "dpm++",
        cfg: Number(this.getAttribute("cfg") || card.guidance || 3),
        cfg_interval: this.#interval(card),
        seed: Number(this.getAttribute("seed") || 0),
        preview: true,
      };
      const result = await client.generate(model, request, (p) => {
        this.bar.value = p.step / p.total;
        this.status.textContent = `${p.step}/${p.total}`;
        if (p.preview) drawGrid(this.canvas, p.preview);
      }, { signal: this.abort.signal });
      drawGrid(this.canvas, result.images);
      this.bar.value = 1;
      this.status.textContent = `${(result.totalMs / 1000).toFixed(1)} s, ${client.backend}`;
      this.runs += 1;
      this.dataset.state = "done";
      this.dispatchEvent(new CustomEvent("generated", { detail: result }));
    } catch (error) {
      const stopped = error.name === "AbortError";
      this.status.textContent = stopped ? "stopped" : error.message;
      this.status.className = stopped ? "status" : "status error";
      this.dataset.state = stopped ? "cancelled" : "error";
      if (stopped) this.dispatchEvent(new CustomEvent("cancelled"));
    } finally {
      this.running = false;
      this.abort = null;
      this.button.textContent = "Again";
    }
  }
}

if (!customElements.get("dit-generate")) customElements.define("dit-generate", DitGenerate);
