// All inference happens here, off the page's thread: wasm init, backend choice, weight download
// and caching, generation. Messages: init, load, generate, cancel (see client.js).
//
// Generations run one at a time, in the order asked. After every step the worker yields to its
// message queue, so a `cancel` for the running generation is read between two steps and stops
// it there; the next generation then starts at once, on the same module and weights.

import init, { cpuLibrary, DitSession, maxBatch } from "./pkg/dit_web.js";
import { describeAdapter, ownKernelsFor } from "./adapter.js";

const WEIGHTS_CACHE = "dit-web-weights-v1";

let backend = null;
let adapterInfo = null;
// A WebGPU adapter passed over for the CPU backend, because it is a software one (its name).
let softwareAdapter = null;
// On WebGPU: dit-web's own kernels (software adapters) or burn-wgpu's (hardware ones); adapter.js.
let ownKernels = true;
// The wasm module's download and compilation, started by the first message and awaited only
// where the module is needed: the weights download (and the page's choice of model) overlap it.
let wasmReady = null;
const wasm = () => (wasmReady ??= init());
const sessions = new Map(); // model name -> DitSession with its weights loaded
// The one model loaded from bytes (a visitor's own file): the next such file replaces it, so a
// long visit holds the catalogue's models and one file, however many files are opened.
let userModel = null;
let queue = Promise.resolve(); // the generation running now, and those waiting for it
const cancelled = new Set(); // ids of generations asked to stop

class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

/** Resolves after the messages waiting in the worker's queue (a cancel among them) are handled:
 *  a message to itself, which no browser delays the way it may clamp nested timers. */
const turns = new MessageChannel();
const waiting = [];
turns.port1.onmessage = () => waiting.shift()?.();
const nextTurn = () => new Promise((resolve) => {
  waiting.push(resolve);
  turns.port2.postMessage(null);
});

async function generateNow(id, model, request) {
  try {
    if (cancelled.has(id)) throw new Cancelled();
    const session = sessions.get(model);
    if (!session) throw new Error(`model "${model}" is not loaded`);
    const started = performance.now();
    let last = started;
    const stepMs = [];
    const images = await session.generate(request, async (p) => {
      const now = performance.now();
      stepMs.push(now - last);
      const transfer = p.preview ? p.preview.map((im) => im.rgba.buffer) : [];
      self.postMessage({ type: "progress", id, ...p, msPerStep: stepMs.at(-1) }, transfer);
      await nextTurn();
      if (cancelled.has(id)) throw new Cancelled();
      last = performance.now();
    });
    const totalMs = performance.now() - started;
    // The first step compiles shaders; the median is the steady-state figure.
    const sorted = [...stepMs].sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    return { images, backend, totalMs, msPerStep: median, firstStepMs: stepMs[0] || 0 };
  } finally {
    cancelled.delete(id);
  }
}

async function chooseBackend(preference, kernels) {
  if (preference !== "cpu" && self.navigator.gpu) {
    // burn-wgpu panics when WebGPU has no adapter, so ask first.
    const adapter = await self.navigator.gpu.requestAdapter().catch(() => null);
    if (adapter) {
      const kind = describeAdapter(adapter);
      adapterInfo = kind.name;
      ownKernels = ownKernelsFor(kind, kernels);
      // A software adapter (Chromium's SwiftShader, Mesa's llvmpipe/lavapipe) emulates a GPU on the
      // CPU: there the CPU backend was 4-5x faster per step and drew the first digit 3-4.4x sooner
      // (docs/browser.md, "Time to first image"), so "auto" takes the CPU; `backend=webgpu` still uses it.
      if (!kind.software || preference === "webgpu") return "webgpu";
      [softwareAdapter, adapterInfo] = [adapterInfo, null];
      return "cpu";
    }
  }
  if (preference === "webgpu") throw new Error("WebGPU was asked for but no adapter is available");
  return "cpu";
}

/** Whose kernels run the model's Linear layers, attention and adaLN on this backend. */
function kernelsName() {
  return backend === "webgpu" && !ownKernels ? "burn-wgpu" : "dit-web";
}

async function newSession() {
  return DitSession.create(backend, backend === "webgpu" ? ownKernels : undefined);
}

/** Deletes the cached copies of a versioned file (models.json names each version of a shipped
 *  file by its hash, `?v=`; tools/catalogue.mjs) under other versions, or under none (caches
 *  made before versions), so a replaced file does not linger. Other URLs are left alone. */
async function forgetOtherVersions(cache, url) {
  const target = new URL(url, self.location.href);
  if (!target.searchParams.has("v")) return;
  for (const request of await cache.keys()) {
    const cached = new URL(request.url);
    const sameFile = cached.origin === target.origin && cached.pathname === target.pathname;
    const versioned = cached.search === "" || cached.searchParams.has("v");
    if (sameFile && versioned && cached.href !== target.href) await cache.delete(request);
  }
}

/** Fetches weights once: from the Cache API when present, else the network with progress. */
async function fetchWeights(model, url) {
  let cache = null;
  try {
    cache = await caches.open(WEIGHTS_CACHE);
    const hit = await cache.match(url);
    if (hit) return new Uint8Array(await hit.arrayBuffer());
  } catch {
    cache = null; // no Cache API here (opaque origin, private mode): memory only
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`downloading ${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.length;
    self.postMessage({ type: "download", model, loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  if (cache) {
    // A full quota is not an error: the weights stay in memory for this visit.
    // Not awaited: storing the copy is not on the way to the first image.
    cache
      .put(url, new Response(bytes.slice(), { headers: { "content-type": "application/octet-stream" } }))
      .then(() => forgetOtherVersions(cache, url))
      .catch(() => {});
  }
  return bytes;
}

const handlers = {
  // Answers as soon as the backend is known; the module keeps compiling meanwhile.
  async init({ backend: preference, kernels }) {
    if (!backend) {
      // A module that fails to load is reported by the first load (which awaits it).
      wasm().catch(() => {});
      backend = await chooseBackend(preference || "auto", kernels);
    }
    return { backend, adapter: adapterInfo, softwareAdapter, kernels: kernelsName() };
  },

  async load({ model, url, bytes }) {
    const [data] = await Promise.all([bytes ? new Uint8Array(bytes) : fetchWeights(model, url), wasm()]);
    if (backend === "cpu") adapterInfo = `${cpuLibrary()}, wasm SIMD128, one thread`;
    // A bad file throws in loadWeights and leaves the old session for this name untouched; a
    // session made for it is freed.
    const existing = sessions.get(model);
    const session = existing || (await newSession());
    let meta;
    try {
      meta = session.loadWeights(data);
    } catch (error) {
      if (!existing) session.free();
      throw error;
    }
    sessions.set(model, session);
    if (bytes) {
      if (userModel !== null && userModel !== model) {
        sessions.get(userModel)?.free();
        sessions.delete(userModel);
      }
      userModel = model;
    }
    return { ...meta, bytes: data.length, adapter: adapterInfo, kernels: kernelsName(), maxBatch: maxBatch() };
  },

  // The module's linear memory (it only grows) and the sessions held: what a long visit's
  // soak test watches (tests/browser/soak.test.mjs).
  async memory() {
    const exports = await wasm();
    return { wasmBytes: exports.memory.buffer.byteLength, sessions: sessions.size };
  },

  generate({ id, model, request }) {
    const run = queue.then(() => generateNow(id, model, request));
    queue = run.catch(() => {});
    return run;
  },

  // Stops generation `target` between two steps (or before it starts).
  cancel({ target }) {
    cancelled.add(target);
    return null;
  },
};

self.onmessage = async (event) => {
  const message = event.data;
  try {
    const result = await handlers[message.type](message);
    const transfer = result?.images ? result.images.map((im) => im.rgba.buffer) : [];
    self.postMessage({ type: "result", id: message.id, result }, transfer);
  } catch (error) {
    const fatal = error instanceof WebAssembly.RuntimeError;
    // A cancel ends in `Cancelled`, thrown here or from the progress callback (the module then
    // reports it in its own words, ending in "cancelled").
    const text = /cancelled$/.test(error?.message) ? "cancelled" : error?.message || String(error);
    self.postMessage({ type: "error", id: message.id, message: text, fatal, cancelled: text === "cancelled" });
  }
};
