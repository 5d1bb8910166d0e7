// Where the browser's CPU backend spends a sampler step: `make bench-cpu-profile`. Runs the bench
// page on the CPU backend only (MODEL=, BATCH=, STEPS=) under V8's sampling profiler, through the
// DevTools protocol, and prints the functions with the most self time (% of all samples; wasm
// functions carry their Rust names; TOP= how many, 25). Idle is the page waiting between steps.
// UNDER=a,b also prints the total time (self and callees) under the functions whose names contain
// a or b, e.g. UNDER=flex::attention,flex::linear: what a piece of the model costs with the gemm
// calls it makes.
import { launch, startServer } from "./harness.mjs";

const model = process.env.MODEL || "mnist-cpu";
const batch = process.env.BATCH || "16";
const steps = process.env.STEPS || "4";
const { server, base } = await startServer();
const chrome = await launch({ webgpu: false });
try {
  const page = await chrome.context.newPage();
  const cdp = await chrome.context.newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
  const query = new URLSearchParams({ run: "1", model, batches: batch, steps, backends: "cpu", onnx: "0" });
  await page.goto(`${base}bench.html?${query}`);
  await cdp.send("Profiler.start");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 600_000 });
  const { profile } = await cdp.send("Profiler.stop");
  const hits = new Map();
  for (const id of profile.samples) hits.set(id, (hits.get(id) || 0) + 1);
  const self = new Map();
  for (const node of profile.nodes) {
    const name = node.callFrame.functionName || "(anonymous)";
    self.set(name, (self.get(name) || 0) + (hits.get(node.id) || 0));
  }
  console.log(`${model}, batch ${batch}, ${steps} steps on the CPU backend: ${profile.samples.length} samples`);
  const percent = (n) => `${((100 * n) / profile.samples.length).toFixed(1).padStart(5)} %`;
  for (const [name, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP || 25))) {
    console.log(`${percent(n)}  ${name}`);
  }
  if (process.env.UNDER) {
    // Samples in each node's subtree; a match inside a match is counted once, at the outer one.
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
    const total = (node) => (hits.get(node.id) || 0) + (node.children || []).reduce((t, c) => t + total(nodes.get(c)), 0);
    for (const part of process.env.UNDER.split(",")) {
      let n = 0;
      const walk = (node) => {
        if ((node.callFrame.functionName || "").includes(part)) n += total(node);
        else for (const c of node.children || []) walk(nodes.get(c));
      };
      walk(profile.nodes[0]);
      console.log(`${percent(n)}  under ${part}`);
    }
  }
} finally {
  await chrome.close();
  server.close();
}
