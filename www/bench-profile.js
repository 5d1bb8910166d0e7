// A WebGPU profiler for the bench page (`bench.html?profile=1`): it wraps the browser's WebGPU
// objects before the wasm module opens its device, so it sees exactly what burn-wgpu asks of the
// GPU, without touching the Rust code. Per sampler step it counts dispatches, compute passes,
// submits, buffer uploads and read-backs, and times every kernel on the GPU with timestamp
// queries: each dispatch is replayed in its own compute pass with timestamps at its start and end
// (the adapter needs the `timestamp-query` feature; SwiftShader has it). Pipelines are named by
// their labels, which cubecl sets to the kernel's name (`matmul_entry_...`, `kernel_binop_...`).
// Timing every dispatch alone adds a little per-pass overhead: read the step times without the
// profiler from the normal bench rows.

const QUERIES = 4096; // WebGPU's most per query set: 2,048 timed dispatches per submit

export function installProfiler() {
  const names = new WeakMap(); // GPUComputePipeline -> kernel name
  // Per device (dit-web and onnxruntime-web open one each): its query set, the next free query
  // and the dispatches timed since its last submit ({name, query}).
  const devices = new WeakMap(); // GPUDevice | GPUQueue | GPUCommandEncoder -> that state
  let bucket = newBucket();
  let reads = [];

  function newBucket() {
    return {
      dispatches: 0,
      passes: 0,
      submits: 0,
      writes: 0,
      writeBytes: 0,
      buffersCreated: 0,
      readBacks: 0,
      readBackWaitMs: 0,
      untimed: 0,
      kernels: new Map(), // name -> {count, ns}
    };
  }

  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (descriptor = {}) {
    const features = [...(descriptor.requiredFeatures || [])];
    if (this.features.has("timestamp-query") && !features.includes("timestamp-query")) {
      features.push("timestamp-query");
    }
    const device = await requestDevice.call(this, { ...descriptor, requiredFeatures: features });
    const state = {
      device,
      querySet: device.features.has("timestamp-query")
        ? device.createQuerySet({ type: "timestamp", count: QUERIES })
        : null,
      nextQuery: 0,
      timed: [],
    };
    devices.set(device, state);
    devices.set(device.queue, state);
    return device;
  };

  const createEncoder = GPUDevice.prototype.createCommandEncoder;
  GPUDevice.prototype.createCommandEncoder = function (descriptor) {
    const encoder = createEncoder.call(this, descriptor);
    const state = devices.get(this);
    if (state) devices.set(encoder, state);
    return encoder;
  };

  const createPipeline = GPUDevice.prototype.createComputePipeline;
  GPUDevice.prototype.createComputePipeline = function (descriptor) {
    const pipeline = createPipeline.call(this, descriptor);
    names.set(pipeline, descriptor.label || descriptor.compute?.entryPoint || "unnamed");
    return pipeline;
  };
  const createPipelineAsync = GPUDevice.prototype.createComputePipelineAsync;
  GPUDevice.prototype.createComputePipelineAsync = async function (descriptor) {
    const pipeline = await createPipelineAsync.call(this, descriptor);
    names.set(pipeline, descriptor.label || descriptor.compute?.entryPoint || "unnamed");
    return pipeline;
  };

  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    bucket.buffersCreated++;
    return createBuffer.call(this, descriptor);
  };

  const writeBuffer = GPUQueue.prototype.writeBuffer;
  GPUQueue.prototype.writeBuffer = function (buffer, offset, data, dataOffset, size) {
    bucket.writes++;
    bucket.writeBytes += size ?? (data.byteLength ?? 0) - (dataOffset ?? 0);
    return writeBuffer.apply(this, arguments);
  };

  const mapAsync = GPUBuffer.prototype.mapAsync;
  GPUBuffer.prototype.mapAsync = function (...args) {
    const started = performance.now();
    const counted = bucket;
    counted.readBacks++;
    return mapAsync.apply(this, args).finally(() => {
      counted.readBackWaitMs += performance.now() - started;
    });
  };

  // The compute pass handed to wgpu records its commands; `end()` replays them with every
  // dispatch in a timed pass of its own (same pipeline and bind groups, same order).
  const beginPass = GPUCommandEncoder.prototype.beginComputePass;
  GPUCommandEncoder.prototype.beginComputePass = function (descriptor) {
    const encoder = this;
    const state = devices.get(encoder) || { querySet: null, timed: [] };
    const commands = [];
    const copy = (args) => args.map((a) => (ArrayBuffer.isView(a) ? a.slice() : a));
    bucket.passes++;
    return {
      label: descriptor?.label ?? "",
      setPipeline: (pipeline) => commands.push(["setPipeline", [pipeline]]),
      setBindGroup: (...args) => commands.push(["setBindGroup", copy(args)]),
      dispatchWorkgroups: (...args) => commands.push(["dispatchWorkgroups", args]),
      dispatchWorkgroupsIndirect: (...args) => commands.push(["dispatchWorkgroupsIndirect", args]),
      pushDebugGroup: () => {},
      popDebugGroup: () => {},
      insertDebugMarker: () => {},
      end() {
        let pipeline = null;
        const groups = new Map();
        for (const [method, args] of commands) {
          if (method === "setPipeline") pipeline = args[0];
          else if (method === "setBindGroup") groups.set(args[0], args);
          else {
            bucket.dispatches++;
            const query = state.nextQuery;
            const timing = state.querySet && query + 2 <= QUERIES;
            const pass = beginPass.call(encoder, timing
              ? { timestampWrites: { querySet: state.querySet, beginningOfPassWriteIndex: query, endOfPassWriteIndex: query + 1 } }
              : {});
            if (timing) {
              state.timed.push({ name: names.get(pipeline) || "unnamed", query });
              state.nextQuery += 2;
            } else {
              bucket.untimed++;
            }
            pass.setPipeline(pipeline);
            for (const group of groups.values()) pass.setBindGroup(...group);
            pass[method](...args);
            pass.end();
          }
        }
      },
    };
  };

  // Each submit resolves its timestamps into a buffer of its own and reads it back later.
  const submit = GPUQueue.prototype.submit;
  GPUQueue.prototype.submit = function (buffers) {
    bucket.submits++;
    const state = devices.get(this);
    if (!state?.timed.length) return submit.call(this, buffers);
    const { device, querySet } = state;
    const count = state.nextQuery;
    const resolve = createBuffer.call(device, { size: count * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = createBuffer.call(device, { size: count * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = createEncoder.call(device);
    encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, read, 0, count * 8);
    const result = submit.call(this, [...buffers, encoder.finish()]);
    const dispatches = state.timed;
    const into = bucket;
    state.timed = [];
    state.nextQuery = 0;
    reads.push(mapAsync.call(read, GPUMapMode.READ).then(() => {
      const stamps = new BigInt64Array(read.getMappedRange());
      for (const { name, query } of dispatches) {
        const kernel = into.kernels.get(name) || { count: 0, ns: 0 };
        kernel.count++;
        kernel.ns += Number(stamps[query + 1] - stamps[query]);
        into.kernels.set(name, kernel);
      }
      read.unmap();
      read.destroy();
      resolve.destroy();
    }));
    return result;
  };

  return {
    /** Ends the current step's bucket; the promise resolves once its kernel times are read. */
    cut() {
      const done = bucket;
      const pending = reads;
      bucket = newBucket();
      reads = [];
      return Promise.all(pending).then(() => {
        const kernels = [...done.kernels].map(([name, k]) => ({ name, count: k.count, ms: k.ns / 1e6 }));
        kernels.sort((a, b) => b.ms - a.ms);
        const { kernels: _, ...counters } = done;
        return { ...counters, gpuMs: kernels.reduce((sum, k) => sum + k.ms, 0), kernels };
      });
    },
  };
}
