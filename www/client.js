// The page side of the inference worker: one worker per page, shared by the demo and every
// <dit-generate> widget (ES modules are singletons, so all importers get this one instance).
//
//   import { client } from "./client.js";
//   const meta = await client.load("mnist");
//   const out = await client.generate("mnist", { labels: ["3"], steps: 20, seed: 1 },
//                                     (p) => console.log(p.step, p.total));
//
// The worker owns the wasm module, the device and the weights; the page never touches tensors.
//
// Every URL (worker, wasm, weights, models.json) is resolved against this module's own URL, so a
// page on another origin that imports it (the widget in a blog post) works when this host sends
// CORS headers (`Access-Control-Allow-Origin`, as GitHub Pages does).

const here = new URL(".", import.meta.url);

/** The inference worker. A page may start workers only from its own origin: on another origin,
 *  a module worker from a `blob:` URL (which has the page's origin) imports this host's worker. */
function startWorker() {
  const url = new URL("worker.js", here);
  if (url.origin === location.origin) return new Worker(url, { type: "module" });
  const source = new Blob([`import ${JSON.stringify(url.href)};\n`], { type: "text/javascript" });
  const blob = URL.createObjectURL(source);
  const worker = new Worker(blob, { type: "module" });
  setTimeout(() => URL.revokeObjectURL(blob), 60_000);
  return worker;
}

/** Content-Security-Policy violations this page saw (the embedding post's policy): a worker that
 *  did not start is explained by the directive that stopped it. */
const violations = [];
globalThis.document?.addEventListener("securitypolicyviolation", (e) => violations.push(e));

/** Why the worker did not start on a page of another origin, naming what to change. A module
 *  worker's imports are checked against worker-src (not script-src), and the page never sees
 *  that violation: a fetch of the same URL tells it apart from missing CORS headers. */
async function whyNoWorker() {
  const host = here.origin;
  const named = violations.find((v) => ["worker-src", "script-src", "script-src-elem", "connect-src"].includes(v.effectiveDirective));
  if (named) {
    return `the worker failed to start: this page's Content-Security-Policy blocked ${named.blockedURI || "it"} ` +
      `in ${named.effectiveDirective} (allow ${host} in script-src, connect-src and worker-src, blob: in worker-src, and 'wasm-unsafe-eval' in script-src)`;
  }
  try {
    await fetch(new URL("worker.js", here), { mode: "cors", cache: "no-store" });
  } catch {
    return `the worker failed to start: ${host} must send CORS headers (Access-Control-Allow-Origin: *), ` +
      `and this page's Content-Security-Policy must allow it in connect-src`;
  }
  return `the worker failed to start: this page's Content-Security-Policy must allow ${host} in worker-src ` +
    "(beside blob:), as a module worker's imports are checked against worker-src";
}

/** The models this site ships or knows about (www/models.json). */
let catalogue;
export async function models() {
  if (!catalogue) {
    catalogue = fetch(new URL("models.json", here)).then((r) => {
      if (!r.ok) throw new Error(`models.json: HTTP ${r.status}`);
      return r.json();
    });
    catalogue.catch(() => {
      catalogue = undefined; // try again next time
    });
  }
  return catalogue;
}

/** Work per sampler step, up to a constant: tokens per image x parameters. */
const cost = (entry) => entry.params * entry.tokens;

/**
 * The model a page starts with on `backend` ("webgpu" | "cpu"), and why: among the models of the
 * catalogue's first dataset, the largest where WebGPU runs it, the cheapest on the CPU fallback.
 * `softwareAdapter`: the name of a WebGPU adapter the worker passed over for the CPU.
 */
export function defaultModel(catalogue, backend, softwareAdapter = null) {
  const entries = Object.entries(catalogue);
  if (!entries.length) return { name: null, why: "no models in models.json" };
  const dataset = entries[0][1].dataset;
  const same = entries.filter(([, e]) => e.dataset === dataset).sort((a, b) => cost(a[1]) - cost(b[1]));
  const [small, large] = [same[0], same.at(-1)];
  if (same.length === 1) return { name: small[0], why: "" };
  const ratio = (cost(large[1]) / cost(small[1])).toFixed(1);
  const noGpu = softwareAdapter
    ? `this browser's WebGPU is a software adapter (${softwareAdapter}), slower than the CPU backend`
    : "this browser has no WebGPU";
  return backend === "cpu"
    ? { name: small[0], why: `${small[0]} picked: ${noGpu}, and on the CPU ${large[0]} ` +
        `does ${ratio}x the arithmetic per step` }
    : { name: large[0], why: `${large[0]} picked: the largest model, as this browser runs WebGPU ` +
        `(${small[0]} is ${ratio}x cheaper per step)` };
}

class Client {
  constructor() {
    this.worker = null;
    this.nextId = 1;
    this.pending = new Map();
    this.backend = null;
    this.listeners = new Set();
    this.loads = new Map();
    this.userModel = null; // the name of the one model loaded from bytes
  }

  /**
   * Starts the worker on first use. `backend`: "auto" | "webgpu" | "cpu"; `kernels` (WebGPU):
   * "auto" (dit-web's own on software adapters, burn-wgpu's on hardware ones) | "own" | "burn".
   */
  start(backend = "auto", kernels = "auto") {
    if (this.worker) return this.ready;
    this.worker = startWorker();
    this.worker.onmessage = (event) => this.#receive(event.data);
    const crossOrigin = here.origin !== location.origin;
    this.worker.onerror = async (event) => {
      if (event.message) this.#crash(event.message);
      else this.#crash(crossOrigin ? await whyNoWorker() : "the worker failed to start");
    };
    // Resolves once the worker knows its backend (the wasm module may still be compiling).
    this.ready = this.#call({ type: "init", backend, kernels }).then((info) => {
      this.backend = info.backend;
      this.kernels = info.kernels;
      this.adapter = info.adapter;
      this.softwareAdapter = info.softwareAdapter;
      return info;
    });
    return this.ready;
  }

  /** Subscribes to download progress `{model, loaded, total}` and other worker events. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Loads a catalogue model by name (once per page). Resolves to its metadata. */
  async load(name) {
    await this.start();
    if (!this.loads.has(name)) {
      const entry = (await models())[name];
      if (!entry) {
        this.loads.delete(name);
        throw new Error(`unknown model "${name}"`);
      }
      this.#load(name, { url: new URL(entry.url, here).href });
    }
    return this.loads.get(name);
  }

  /** Loads weights from bytes (file picker, drag-and-drop) under a new model name. The worker
   *  holds one such file: once this one has loaded, the previous one is gone. */
  async loadBytes(name, bytes) {
    await this.start();
    const meta = await this.#load(name, { bytes }, [bytes.buffer]);
    if (this.userModel && this.userModel !== name) this.loads.delete(this.userModel);
    this.userModel = name;
    return meta;
  }

  /** `{wasmBytes, sessions}`: the worker's wasm memory and the models it holds. */
  async memory() {
    await this.start();
    return this.#call({ type: "memory" });
  }

  /**
   * Generates images; `onProgress({step, total, t, msPerStep, preview?})` after each step. An
   * AbortSignal in `options.signal` cancels: the promise rejects at once with an AbortError, the
   * worker stops between two steps and takes the next request.
   */
  async generate(model, request, onProgress, { signal } = {}) {
    signal?.throwIfAborted();
    await this.load(model);
    signal?.throwIfAborted();
    const id = this.nextId;
    const result = this.#call({ type: "generate", model, request }, [], onProgress);
    if (!signal) return result;
    const stop = () => {
      this.worker?.postMessage({ type: "cancel", target: id });
      this.#settle(id, (call) => call.reject(new DOMException("cancelled", "AbortError")));
    };
    signal.addEventListener("abort", stop, { once: true });
    return result.finally(() => signal.removeEventListener("abort", stop));
  }

  /** Ends pending call `id` with `how(call)`, if it is still pending. */
  #settle(id, how) {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    how(call);
  }

  /**
   * Asks the worker to load `name` (from `{url}` or `{bytes}`), remembered until it fails. The
   * answer also tells about the worker: the module's batch limit and the adapter.
   */
  #load(name, source, transfer = []) {
    const loading = this.#call({ type: "load", model: name, ...source }, transfer).then((meta) => {
      this.adapter = meta.adapter;
      this.maxBatch = meta.maxBatch;
      return meta;
    });
    this.loads.set(name, loading);
    loading.catch(() => this.loads.delete(name));
    return loading;
  }

  #call(message, transfer = [], onProgress) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  #receive(message) {
    if (message.type === "download") {
      for (const listener of this.listeners) listener(message);
      return;
    }
    const call = this.pending.get(message.id);
    if (!call) return;
    if (message.type === "progress") {
      call.onProgress?.(message);
      return;
    }
    this.pending.delete(message.id);
    if (message.type === "error") {
      call.reject(new Error(message.message));
      // A trap inside wasm leaves the instance unusable: start over with a fresh worker.
      if (message.fatal) this.#crash(message.message);
    } else {
      call.resolve(message.result);
    }
  }

  #crash(reason) {
    this.worker?.terminate();
    this.worker = null;
    this.loads.clear();
    this.userModel = null;
    for (const call of this.pending.values()) call.reject(new Error(reason));
    this.pending.clear();
    for (const listener of this.listeners) listener({ type: "restart", reason });
  }
}

export const client = new Client();
