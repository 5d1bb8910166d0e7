// The demo page: form <-> URL parameters, the worker client, drawing and download.

import { client, defaultModel, models } from "./client.js";
import { drawGrid } from "./grid.js";

const $ = (id) => document.getElementById(id);
const form = $("controls");
const ui = {
  model: $("model"), labels: $("labels"), batch: $("batch"), sampler: $("sampler"),
  steps: $("steps"), cfg: $("cfg"), cfgi: $("cfgi"), seed: $("seed"), preview: $("preview"),
  generate: $("generate"), download: $("download"), permalink: $("permalink"),
  progress: $("progress"), status: $("status"), error: $("error"), canvas: $("canvas"),
  stats: $("stats"), info: $("model-info"), why: $("model-why"),
};

const params = new URLSearchParams(location.search);
let meta = null; // metadata of the selected model
let busy = false;

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

/** The "guided t" box: "" (every step) or "lo-hi" -> [lo, hi]; throws on anything else. */
function guidanceInterval(text) {
  if (!text.trim()) return undefined;
  const match = text.match(/^\s*(\d+)\s*[-,]\s*(\d+)\s*$/);
  if (!match) throw new Error(`guided t: "${text}" is not a range of timesteps like 100-399 (empty: every step)`);
  return [Number(match[1]), Number(match[2])];
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
  if (ui.cfgi.value.trim()) p.set("cfgi", ui.cfgi.value.trim());
  for (const key of ["backend", "kernels"]) if (params.get(key)) p.set(key, params.get(key));
  return `${location.pathname}?${p}`;
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
  const quant = meta.quantization;
  ui.info.textContent = [
    `${meta.dataset}, ${Number(meta.params).toLocaleString()} parameters, ` +
      `${quant}${meta.ema ? " EMA" : ""} weights (${(meta.bytes / 1e6).toFixed(1)} MB), ` +
      // A card says how a model was trained when the file's step count does not tell it all
      // (a run continued from another run's weights counts its steps from 0).
      card.trained ?? `trained ${meta.step.toLocaleString()} steps`,
    // The block design and flavour the file was trained with (README: conditioning).
    `${meta.model.conditioning} conditioning${meta.model.flavour === "paper" ? ", paper flavour" : ""}`,
    card.quality, card.speed,
  ].filter(Boolean).join(" · ");
  for (const [id, key] of Object.entries(CARD_SETTINGS)) {
    if (keep.has(id)) continue;
    // A card without an interval guides every step: clear what the previous model's card set.
    if (id === "cfgi") ui.cfgi.value = card[key] ? card[key].join("-") : "";
    else if (card[key] !== undefined) ui[id].value = String(card[key]);
  }
  renderLabels(labels ?? meta.labels.slice(0, Math.min(meta.labels.length, 10)));
  ui.generate.disabled = false;
  setStatus(`ready on ${client.backend}${backendDetails()}`, "ready");
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
  showError("");
  ui.generate.disabled = true;
  ui.download.disabled = true;
  ui.progress.value = 0;
  history.replaceState(null, "", permalink());
  ui.permalink.href = permalink();
  setStatus("generating…", "running");
  try {
    const result = await client.generate(ui.model.value, req, (p) => {
      ui.progress.value = p.step / p.total;
      setStatus(`step ${p.step} / ${p.total} · ${p.msPerStep.toFixed(0)} ms/step on ${client.backend}`);
      if (p.preview) drawGrid(ui.canvas, p.preview);
    });
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
    showError(error.message);
    setStatus("failed", "error");
  } finally {
    busy = false;
    ui.generate.disabled = false;
  }
}

async function loadUserWeights(name, bytes) {
  showError("");
  try {
    await client.loadBytes(name, bytes);
    if (![...ui.model.options].some((o) => o.value === name)) ui.model.add(new Option(name, name));
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
    const fromUrl = new Set(Object.keys(CARD_SETTINGS).filter((id) => params.has(id)));
    await selectModel(ui.model.value, labels, fromUrl);
    performance.mark("dit:model-loaded");
  } catch (error) {
    showError(error.message);
    setStatus("failed", "error");
    return;
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

