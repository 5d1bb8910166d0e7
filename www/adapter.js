// What kind of WebGPU adapter this is, for the worker and the bench page.

/**
 * `{ name, software }` for a `GPUAdapter`: its vendor, architecture and description, and whether
 * it is a software adapter (Chromium's SwiftShader, Mesa's llvmpipe / lavapipe) that emulates a
 * GPU on the CPU. dit-web's own WebGPU kernels were made for those (10-40x faster than burn-wgpu's
 * there); on a hardware GPU (an NVIDIA H200 through Vulkan, natively) burn-wgpu's were 1.9-2.5x
 * faster than them (docs/browser.md, "The same sampler natively on a real GPU").
 */
export function describeAdapter(adapter) {
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ");
  const software = Boolean(info.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe/i.test(name);
  return { name, software };
}

/**
 * Whether WebGPU should run dit-web's own kernels: `choice` "own" or "burn" decides, anything
 * else ("auto", null) takes them on software adapters only.
 */
export function ownKernelsFor({ software }, choice) {
  if (choice === "own") return true;
  if (choice === "burn") return false;
  return software;
}
