// The demo page: form <-> URL parameters, the worker client, drawing and download.

import { client, defaultModel, models } from "./client.js";
import { displaySize, drawGrid } from "./grid.js";

const $ = (id) => document.getElementById(id);
const form = $("controls");
const ui = {
  model: $("model"), labels: $("labels"), batch: $("batch"), sampler: $("sampler"),
  steps: $("steps"), cfg: $("cfg"), cfgi: $("cfgi"), seed: $("seed"), preview: $("preview"),
  generate: $("generate"), stop: $("stop"), download: $("download"), permalink: $("permalink"),
  estimate: $("estimate"), embedScript: $("embed-script"), embedFrame: $("embed-frame"), embedCsp: $("embed-csp"),
  progress: $("progress"), status: $("status"), error: $("error"), canvas: $("canvas"),
  stats: $("stats"), info: $("model-info"), why: $("model-why"),
};

const params = new URLSearchParams(location.search);
let meta = null; // metadata of the selected model
let busy = false;
let abort = null; // stops the running generation

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
  document.body.dataset.state = message ? "error" : document.body.dataset.state;
}

function setStatus(text, state) {
  ui.status.textContent = text;
  if (state) document.body.dataset.state = state;
}

/** Label buttons for the loaded model; `selected` is a list of label names. */
function renderLabels(selected) {
  ui.labels.replaceChildren();
  for (const name of meta.labels) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.dataset.label = name;
    button.setAttribute("aria-pressed", String(selected.includes(name)));
    button.addEventListener("click", () => {
      button.setAttribute("aria-pressed", String(button.getAttribute("aria-pressed") !== "true"));
    });
    ui.labels.append(button);
  }
}

function selectedLabels() {
  return [...ui.labels.querySelectorAll("button[aria-pressed=true]")].map((b) => b.dataset.label);
}

/** The "guided t" box: "" (every step) or "lo,hi" -> [lo, hi] ("lo-hi" and "lo hi" read too);
 *  throws on anything else. */
function guidanceInterval(text) {
  if (!text.trim()) return undefined;
  const match = text.match(/^\s*(\d+)\s*[-, ]\s*(\d+)\s*$/);
  if (!match) throw new Error(`guided t: "${text}" is not a range of timesteps like 100,399 (empty: every step)`);
  return [Number(match[1]), Number(match[2])];
}

/** The "guided t" box in the one spelling the links and snippets use: "lo,hi" ("" stays ""). */
function intervalText() {
  return ui.cfgi.value.trim().replace(/\s*[-, ]\s*/, ",");
}

function request() {
  const perLabel = Math.max(1, Math.min(16, Number(ui.batch.value) || 1));
  const labels = selectedLabels().flatMap((l) => Array(perLabel).fill(l));
  return {
    labels,
    sampler: ui.sampler.value,
    steps: Number(ui.steps.value),
    cfg: Number(ui.cfg.value),
    cfg_interval: guidanceInterval(ui.cfgi.value),
    seed: Number(ui.seed.value),
    preview: ui.preview.checked,
  };
}

function permalink() {
  const p = new URLSearchParams({
    model: ui.model.value,
    labels: selectedLabels().join(","),
    batch: ui.batch.value,
    sampler: ui.sampler.value,
    steps: ui.steps.value,
    cfg: ui.cfg.value,
    seed: ui.seed.value,
    run: "1",
  });
  if (intervalText()) p.set("cfgi", intervalText());
  for (const key of ["backend", "kernels"]) if (params.get(key)) p.set(key, params.get(key));
  return `${location.pathname}?${p}`;
}

/** What a weight file holds, in words: from its own metadata, and the card's quality and speed
 *  lines where it has a card (models.json). */
function modelLine(meta, card) {
  const m = meta.model;
  const side = `${m.input_size}x${m.input_size}${m.in_channels === 3 ? " RGB" : m.in_channels === 1 ? " grey" : ` ${m.in_channels}-channel`}`;
  // A card says how a model was trained when the file's step count does not tell it all (a run
  // continued from another run's weights counts its steps from 0).
  const trained = card.trained ?? (meta.step ? `trained ${meta.step.toLocaleString("en-US")} steps` : "untrained or imported (step 0)");
  const parts = [
    `${meta.dataset}, ${side}, labels ${summary(meta.labels)}, ${Number(meta.params).toLocaleString("en-US")} parameters, ` +
      `${meta.quantization}${meta.ema ? " EMA" : ""} weights (${(meta.bytes / 1e6).toFixed(1)} MB), ${trained}`,
    // The block design and flavour the file was trained with (docs/models.md).
    `${m.conditioning} conditioning${m.flavour === "paper" ? ", paper flavour" : ""}`,
  ];
  const line = document.createDocumentFragment();
  line.append(parts.join(" · "));
  for (const extra of [card.quality, card.speed?.[client.backend]]) {
    if (extra) line.append(document.createElement("br"), extra);
  }
  if (card.details) {
    const link = Object.assign(document.createElement("a"), { href: card.details, textContent: "how this was measured" });
    line.append(" (", link, ")");
  }
  return line;
}

/** "0-9", "female, male": a model's labels, short. */
function summary(labels) {
  const digits = labels.every((l, i) => l === String(i));
  return digits && labels.length > 2 ? `0-${labels.length - 1}` : labels.join(", ");
}

/** The sampler settings a model card can start the page with (box id -> card key). */
const CARD_SETTINGS = { sampler: "sampler", steps: "steps", cfg: "guidance", cfgi: "guidance_interval" };

/** Loads a model and starts the sampler boxes at its card's settings, except those in `keep`
 *  (ids whose values came from the URL). */
async function selectModel(name, labels, keep = new Set()) {
  showError("");
  setStatus(`loading ${name}…`, "loading");
  ui.generate.disabled = true;
  meta = await client.load(name);
  const card = (await models().catch(() => ({})))[name] ?? {};
  ui.info.replaceChildren(modelLine(meta, card));
  for (const [id, key] of Object.entries(CARD_SETTINGS)) {
    if (keep.has(id)) continue;
    // A card without an interval guides every step: clear what the previous model's card set.
    if (id === "cfgi") ui.cfgi.value = card[key] ? card[key].join(",") : "";
    else if (card[key] !== undefined) ui[id].value = String(card[key]);
  }
  // A heavy model starts lighter on the CPU fallback: its card's `cpu_start` (fewer steps, fewer
  // images), unless the URL set them.
  const light = client.backend === "cpu" ? card.cpu_start : undefined;
  if (light?.steps && !keep.has("steps")) ui.steps.value = String(light.steps);
  if (light?.images && !keep.has("batch")) ui.batch.value = "1";
  const shown = light?.images ?? 10;
  renderLabels(labels ?? meta.labels.slice(0, Math.min(meta.labels.length, shown)));
  if (light) {
    ui.why.textContent = `On the CPU fallback a step of ${name} takes seconds per image: it starts with ` +
      `${light.images ?? "a few"} image${light.images === 1 ? "" : "s"} and ${ui.steps.value} steps (a GPU with WebGPU runs it far faster).`;
  }
  ui.steps.max = String(meta.max_steps);
  ui.generate.disabled = false;
  setStatus(`ready on ${client.backend}${backendDetails()}`, "ready");
  showEstimate();
  showEmbed();
}

/** The narrowest Content-Security-Policy sources a post needs for the widget from `host`: its
 *  scripts and the wasm compile (script-src), models.json, the wasm and the weights
 *  (connect-src), and the worker, started from a blob: URL that imports the host's module
 *  (worker-src: a module worker's imports are checked there). tests/browser/embed.test.mjs
 *  runs the widget under exactly this policy. */
function widgetPolicy(host) {
  return `script-src ${host} 'wasm-unsafe-eval'; connect-src ${host}; worker-src blob: ${host}`;
}

/** The two ways to put the current settings in a post: the widget's script tag, or an iframe
 *  (for platforms that allow only iframes), both pointing at this site. */
function showEmbed() {
  const site = new URL(".", location.href);
  const labels = selectedLabels();
  const attrs = {
    model: ui.model.value, labels: labels.join(" "), sampler: ui.sampler.value, steps: ui.steps.value,
    cfg: ui.cfg.value, "cfg-interval": intervalText() || "all", seed: ui.seed.value,
  };
  const html = Object.entries(attrs).map(([k, v]) => ` ${k}="${String(v).replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`)}"`).join("");
  ui.embedScript.value = `<script type="module" src="${new URL("dit-widget.js", site)}"></script>\n<dit-generate${html}></dit-generate>`;
  const query = new URLSearchParams({ ...attrs, labels: labels.join(",") });
  // The widget's images, and room for its button, progress bar and status line.
  const shown = displaySize(meta?.model.input_size ?? 28, labels.length);
  const [width, height] = [Math.max(240, shown.width + 24), shown.height + 72];
  ui.embedCsp.value = widgetPolicy(site.origin);
  ui.embedFrame.value = `<iframe src="${new URL(`embed.html?${query}`, site)}" width="${width}" height="${height}" ` +
    `style="border:0" title="dit-web: images drawn in your browser" loading="lazy"></iframe>`;
}

/** " (adapter; whose kernels)" after the backend's name: on WebGPU dit-web's own kernels run on
 *  software adapters and burn-wgpu's on hardware ones (www/adapter.js). */
function backendDetails() {
  const parts = [client.adapter, client.backend === "webgpu" && `${client.kernels} kernels`].filter(Boolean);
  return parts.length ? ` (${parts.join("; ")})` : "";
}

async function generate() {
  if (busy) return;
  let req;
  try {
    req = request();
  } catch (error) {
    showError(error.message);
    return;
  }
  if (!req.labels.length) {
    showError("pick at least one label");
    return;
  }
  // The wasm module's own limit (MAX_BATCH in src/request.rs), read at start-up.
  if (req.labels.length > client.maxBatch) {
    showError(`at most ${client.maxBatch} images per run: ${req.labels.length} asked (fewer labels or images per label)`);
    return;
  }
  busy = true;
  abort = new AbortController();
  showError("");
  ui.generate.disabled = true;
  ui.stop.hidden = false;
  ui.download.disabled = true;
  ui.progress.value = 0;
  history.replaceState(null, "", permalink());
  ui.permalink.href = permalink();
  setStatus("generating…", "running");
  try {
    const result = await client.generate(ui.model.value, req, (p) => {
      ui.progress.value = p.step / p.total;
      const left = (p.total - p.step) * p.msPerStep / 1000;
      setStatus(`step ${p.step} / ${p.total} · ${p.msPerStep.toFixed(0)} ms/step on ${client.backend}` +
        (left >= 2 ? ` · about ${seconds(left)} left` : ""));
      if (p.preview) drawGrid(ui.canvas, p.preview);
    }, { signal: abort.signal });
    speed.record(client.backend, meta, req, result.msPerStep);
    drawGrid(ui.canvas, result.images);
    // Milestones for `make bench-first-image` (performance.mark: zero cost when nobody reads them).
    if (!performance.getEntriesByName("dit:first-image").length) performance.mark("dit:first-image");
    ui.progress.value = 1;
    const n = result.images.length;
    ui.stats.textContent = `${n} image${n > 1 ? "s" : ""} in ${(result.totalMs / 1000).toFixed(2)} s · ` +
      `${result.msPerStep.toFixed(1)} ms/step (median; first step ${result.firstStepMs.toFixed(0)} ms, ` +
      // The first step pays for compiling: WebGPU's shaders, or on the CPU the browser's
      // optimising compile of the wasm code the step runs (it starts on the baseline tier).
      `${result.backend === "webgpu" ? "shader compilation" : "wasm warm-up"}) · ${(result.totalMs / n).toFixed(0)} ms/image · backend ${result.backend}` +
      backendDetails();
    ui.download.disabled = false;
    setStatus("done", "done");
  } catch (error) {
    if (error.name === "AbortError") {
      setStatus("stopped", "cancelled");
    } else {
      showError(error.message);
      setStatus("failed", "error");
    }
  } finally {
    busy = false;
    abort = null;
    ui.generate.disabled = false;
    ui.stop.hidden = true;
    showEstimate();
  }
}

/** "0.4 s", "3 min 20 s". */
function seconds(s) {
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/**
 * How fast this browser's backend runs the network, learnt from the runs made here (kept in
 * localStorage) in network work per millisecond: parameters x tokens x images a step. A model's
 * arithmetic per image grows with both, so one measured model predicts another's step time
 * (roughly: larger ones run somewhat more efficiently).
 */
const speed = {
  key: (backend) => `dit-web-speed-${backend}`,
  /** Network work of one step of `req` on the model described by `meta`. */
  work(meta, req) {
    const m = meta.model;
    const tokens = (m.input_size / m.patch_size) ** 2;
    const guided = req.cfg !== 1 && m.class_dropout > 0;
    const t = meta.schedule.num_timesteps;
    const share = !guided ? 0 : req.cfg_interval ? Math.min(1, (req.cfg_interval[1] - req.cfg_interval[0] + 1) / t) : 1;
    return Number(meta.params) * tokens * req.labels.length * (1 + share);
  },
  record(backend, meta, req, msPerStep) {
    if (!(msPerStep > 0)) return;
    try {
      localStorage.setItem(this.key(backend), String(this.work(meta, req) / msPerStep));
    } catch {
      // No storage here (private mode, opaque origin): no estimates next time.
    }
  },
  /** Milliseconds per step of `req`, or null before anything was measured here. */
  estimate(backend, meta, req) {
    let rate = null;
    try {
      rate = Number(localStorage.getItem(this.key(backend))) || null;
    } catch {
      rate = null;
    }
    return rate ? this.work(meta, req) / rate : null;
  },
};

/** What the run set up now will take, before it starts. */
function showEstimate() {
  if (!meta || busy) return;
  let req;
  try {
    req = request();
  } catch {
    ui.estimate.textContent = "";
    return;
  }
  if (!req.labels.length) {
    ui.estimate.textContent = "";
    return;
  }
  const ms = speed.estimate(client.backend, meta, req);
  ui.estimate.textContent = ms === null
    ? `speed on ${client.backend} not measured in this browser yet: the first step tells`
    : `about ${seconds(ms / 1000)} per step, ${seconds(ms * req.steps / 1000)} for this run on ${client.backend} ` +
      "(estimated from the runs made in this browser)";
  document.body.dataset.estimateMs = ms === null ? "" : String(Math.round(ms));
}

/** The model list's entry for the visitor's own file: one at a time, as the worker keeps one. */
let userOption = null;

async function loadUserWeights(name, bytes) {
  showError("");
  try {
    await client.loadBytes(name, bytes);
    if (userOption && userOption.value !== name) userOption.remove();
    userOption = [...ui.model.options].find((o) => o.value === name) ?? new Option(name, name);
    if (!userOption.parentNode) ui.model.add(userOption);
    ui.model.value = name;
    await selectModel(name);
  } catch (error) {
    // The previously selected model stays loaded and usable.
    showError(`could not load ${name}: ${error.message}`);
    setStatus("ready", "ready");
  }
}

async function main() {
  const backend = params.get("backend") || "auto";
  client.on((event) => {
    if (event.type === "download" && event.total) {
      ui.progress.value = event.loaded / event.total;
      setStatus(`downloading ${event.model} weights: ${(event.loaded / 1e6).toFixed(1)} / ` +
        `${(event.total / 1e6).toFixed(1)} MB`);
    } else if (event.type === "restart") {
      showError(`the model crashed and was restarted: ${event.reason}`);
    }
  });
  // The models present in www/weights/ (models.json is written by `make pkg`), fetched while the
  // worker starts.
  const catalogue = models();
  catalogue.catch(() => {});
  try {
    await client.start(backend, params.get("kernels") || "auto");
  } catch (error) {
    showError(`could not start: ${error.message}`);
    return;
  }
  performance.mark("dit:started");
  const known = await catalogue;
  for (const [name, entry] of Object.entries(known)) ui.model.add(new Option(entry.title, name));
  const wanted = params.get("model");
  const picked = defaultModel(known, client.backend, client.softwareAdapter);
  if (wanted && [...ui.model.options].some((o) => o.value === wanted)) {
    ui.model.value = wanted;
  } else if (picked.name) {
    ui.model.value = picked.name;
    ui.why.textContent = picked.why;
  }
  for (const key of ["batch", "sampler", "steps", "cfg", "cfgi", "seed"]) {
    if (params.has(key)) ui[key].value = params.get(key);
  }
  const labels = params.get("labels")?.split(/[ ,]+/).filter(Boolean);
  try {
    const fromUrl = new Set([...Object.keys(CARD_SETTINGS), "batch"].filter((id) => params.has(id)));
    await selectModel(ui.model.value, labels, fromUrl);
    performance.mark("dit:model-loaded");
  } catch (error) {
    showError(error.message);
    setStatus("failed", "error");
    return;
  }

  form.addEventListener("input", () => {
    showEstimate();
    showEmbed();
  });
  ui.labels.addEventListener("click", () => {
    showEstimate();
    showEmbed();
  });
  ui.stop.addEventListener("click", () => abort?.abort());
  for (const id of ["embed-script", "embed-frame", "embed-csp"]) {
    $(`${id}-copy`).addEventListener("click", () => navigator.clipboard?.writeText($(id).value).catch(() => {}));
  }
  ui.model.addEventListener("change", () => {
    ui.why.textContent = "";
    selectModel(ui.model.value).catch((e) => showError(e.message));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    generate();
  });
  $("dice").addEventListener("click", () => {
    ui.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
  });
  ui.download.addEventListener("click", () => {
    ui.canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `dit-web_${ui.model.value}_seed-${ui.seed.value}.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    }, "image/png");
  });
  $("weights-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await loadUserWeights(file.name, new Uint8Array(await file.arrayBuffer()));
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => event.preventDefault());
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) await loadUserWeights(file.name, new Uint8Array(await file.arrayBuffer()));
  });
  $("weights-url-load").addEventListener("click", async () => {
    const url = $("weights-url").value;
    try {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await loadUserWeights(url.split("/").pop() || "weights", new Uint8Array(await response.arrayBuffer()));
    } catch (error) {
      showError(`could not fetch ${url}: ${error.message}`);
    }
  });

  if ("serviceWorker" in navigator && params.get("offline") !== "0") {
    navigator.serviceWorker.register("sw.js").catch(() => {});
  }
  ui.permalink.href = permalink();
  if (params.get("run") === "1") generate();
}

main();

