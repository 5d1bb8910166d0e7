// The bench page: dit-web's wasm module on each backend and batch size, and onnxruntime-web on
// the same network. Results go to the table and to `window.benchResults` (bench.mjs reads it).

import { describeAdapter, ownKernelsFor } from "./adapter.js";

const params = new URLSearchParams(location.search);
// `?pkg=bench/pkg-candle` loads a module built with another CPU backend (make bench-cpu-backends).
const pkg = params.get("pkg") || "pkg";
if (!/^[\w/-]+$/.test(pkg)) throw new Error(`bad pkg parameter: ${pkg}`);
let DitSession;
// On WebGPU, dit-web's own kernels or burn-wgpu's: `?kernels=own|burn`, else by adapter as the page
// picks them (adapter.js). Modules built before the switch run their own kernels whatever it says.
let kernels = "dit-web";
let ownKernels = true;
// `?model=mnist` benchmarks another weight file of www/weights/ (default: the small model).
const model = params.get("model") || "mnist-cpu";
if (!/^[\w/-]+$/.test(model)) throw new Error(`bad model parameter: ${model}`);
// `?model=bench/celeba` reads www/bench/celeba.safetensors (files made for a measurement).
const weightsUrl = model.includes("/") ? `${model}.safetensors` : `weights/${model}.safetensors`;
const batches = (params.get("batches") || "1,4,16").split(",").map(Number);
const steps = Number(params.get("steps") || 6);
const backends = (params.get("backends") || "webgpu,cpu").split(",");
// `?preview=1`: every step also hands the current prediction of the images to the callback.
const preview = params.get("preview") === "1";
// `?profile=1`: where each step's time goes on WebGPU (bench-profile.js), in `row.profile`.
let profiler = null;
const log = (line) => {
  document.getElementById("log").textContent += `${line}\n`;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** Starts a step's profile when profiling WebGPU (a promise, see bench-profile.js's `cut`). */
const cutStep = (backend, cuts) => {
  if (profiler && backend === "webgpu") cuts.push(profiler.cut());
};
/** The steady-state profile: the last step's, the first step (shader compilation) never. */
const steadyProfile = async (cuts) => (cuts.length > 1 ? (await Promise.all(cuts)).at(-1) : undefined);
/** Medians of each field over a list of objects with the same numeric fields. */
const medians = (objects) =>
  objects.length ? Object.fromEntries(Object.keys(objects[0]).map((k) => [k, median(objects.map((o) => o[k]))])) : null;

function addRow(row) {
  window.benchResults.push(row);
  const tr = document.createElement("tr");
  for (const key of ["engine", "library", "model", "backend", "batch", "msPerStep", "msPerImageStep", "firstStepMs"]) {
    const td = document.createElement("td");
    td.textContent = typeof row[key] === "number" ? row[key].toFixed(1) : row[key];
    tr.append(td);
  }
  document.querySelector("#results tbody").append(tr);
}

async function ditWeb(weights, backend) {
  const session = await DitSession.create(backend, backend === "webgpu" ? ownKernels : undefined);
  const meta = session.loadWeights(weights);
  const library = session.library;
  for (const batch of batches) {
    const labels = Array.from({ length: batch }, (_, i) => meta.labels[i % meta.labels.length]);
    const times = [];
    const timings = [];
    const cuts = [];
    profiler?.cut(); // what loading the weights did is not a step's
    let last = performance.now();
    await session.generate({ labels, steps, seed: 0, preview }, (p) => {
      const now = performance.now();
      times.push(now - last);
      last = now;
      timings.push(p.timing);
      cutStep(backend, cuts);
    });
    const ms = median(times.slice(1));
    // What a step spends outside the network, its read-back and the solver: building the
    // progress event (and its preview images) and crossing into this callback and back.
    const boundary = median(times.slice(1).map((t, i) => {
      const { networkMs, readBackMs, updateMs } = timings[i + 1];
      return t - networkMs - readBackMs - updateMs;
    }));
    // Steady state: every step after the first (which compiles the shaders).
    addRow({ engine: "dit-web", library, kernels: backend === "webgpu" ? kernels : "dit-web", model, backend, batch, msPerStep: ms, msPerImageStep: ms / batch, firstStepMs: times[0],
      boundaryMs: boundary, preview, timing: medians(timings.slice(1)), profile: await steadyProfile(cuts) });
    log(`dit-web (${library}) ${backend} batch ${batch}: ${ms.toFixed(1)} ms/step`);
  }
}

async function onnx(backend) {
  const ortUrl = new URL("vendor/onnxruntime-web/ort.webgpu.min.mjs", location.href);
  const onnxModel = new URL(`bench/${model}.onnx`, location.href);
  if (!(await fetch(onnxModel, { method: "HEAD" })).ok || !(await fetch(ortUrl, { method: "HEAD" })).ok) {
    log(`onnxruntime-web: skipped (bench/${model}.onnx or vendor/onnxruntime-web missing)`);
    return;
  }
  const ort = await import(ortUrl.href);
  ort.env.wasm.wasmPaths = new URL("vendor/onnxruntime-web/", location.href).href;
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(onnxModel.href, {
    executionProviders: [backend === "webgpu" ? "webgpu" : "wasm"],
  });
  for (const batch of batches) {
    const x = new ort.Tensor("float32", new Float32Array(batch * 28 * 28).map(() => Math.random() * 2 - 1), [batch, 1, 28, 28]);
    const t = new ort.Tensor("float32", new Float32Array(batch).fill(200), [batch]);
    const y = new ort.Tensor("int64", new BigInt64Array(batch).fill(3n), [batch]);
    const times = [];
    const cuts = [];
    profiler?.cut();
    for (let i = 0; i < steps; i++) {
      const started = performance.now();
      const out = await session.run({ x, t, y });
      await out[session.outputNames[0]].getData?.();
      times.push(performance.now() - started);
      cutStep(backend, cuts);
    }
    const ms = median(times.slice(1));
    addRow({ engine: "onnxruntime-web", library: "ort 1.30", model, backend, batch, msPerStep: ms, msPerImageStep: ms / batch, firstStepMs: times[0],
      profile: await steadyProfile(cuts) });
    log(`onnxruntime-web ${backend} batch ${batch}: ${ms.toFixed(1)} ms/step`);
  }
}

async function run() {
  window.benchResults = [];
  document.body.dataset.state = "running";
  try {
    // Before anything opens a WebGPU device.
    if (params.get("profile") === "1") profiler = (await import("./bench-profile.js")).installProfiler();
    const module = await import(`./${pkg}/dit_web.js`);
    await module.default();
    DitSession = module.DitSession;
    const weights = new Uint8Array(await (await fetch(weightsUrl)).arrayBuffer());
    const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
    if (adapter) {
      ownKernels = ownKernelsFor(describeAdapter(adapter), params.get("kernels"));
      kernels = ownKernels ? "dit-web" : "burn-wgpu";
    }
    for (const backend of backends) {
      if (backend === "webgpu" && !adapter) {
        log("webgpu: no adapter, skipped");
        continue;
      }
      await ditWeb(weights, backend);
      if (params.get("onnx") !== "0") await onnx(backend);
    }
    document.body.dataset.state = "done";
  } catch (error) {
    log(`failed: ${error.message}`);
    document.body.dataset.state = "error";
  }
}

document.getElementById("run").addEventListener("click", run);
if (params.get("run") === "1") run();
