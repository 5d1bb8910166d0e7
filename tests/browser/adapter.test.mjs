// www/adapter.js on its own (no browser): which WebGPU adapters get dit-web's own kernels.
// The page's tests cover SwiftShader in Chromium; hardware adapters are not in reach here, so
// their `adapter.info` is written out as Chromium reports it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { describeAdapter, ownKernelsFor } from "../../www/adapter.js";

const adapter = (info) => ({ info });

test("software adapters are told from hardware ones by their info", () => {
  const swiftshader = describeAdapter(adapter({ vendor: "google", architecture: "swiftshader", description: "" }));
  assert.deepEqual(swiftshader, { name: "google swiftshader", software: true });
  assert.equal(describeAdapter(adapter({ vendor: "mesa", description: "llvmpipe (LLVM 15.0.6, 256 bits)" })).software, true);
  assert.equal(describeAdapter(adapter({ vendor: "mesa", description: "Lavapipe" })).software, true);
  assert.equal(describeAdapter(adapter({ vendor: "x", isFallbackAdapter: true })).software, true);
  for (const info of [
    { vendor: "nvidia", architecture: "hopper", description: "NVIDIA H200" },
    { vendor: "apple", architecture: "metal-3" },
    { vendor: "intel", architecture: "gen-12lp" },
    {},
  ]) {
    assert.equal(describeAdapter(adapter(info)).software, false, JSON.stringify(info));
  }
  assert.equal(describeAdapter({}).name, "", "an adapter without info (older browsers)");
});

test("own kernels on software adapters unless the URL says otherwise", () => {
  const [software, hardware] = [{ software: true }, { software: false }];
  for (const choice of ["auto", null, undefined, "anything"]) {
    assert.equal(ownKernelsFor(software, choice), true);
    assert.equal(ownKernelsFor(hardware, choice), false);
  }
  assert.equal(ownKernelsFor(hardware, "own"), true);
  assert.equal(ownKernelsFor(software, "burn"), false);
});
