//! The wasm-bindgen API. JavaScript sees one class:
//!
//! ```js
//! const session = await DitSession.create("webgpu");          // or "cpu"
//! const meta = session.loadWeights(bytes);                     // {model, labels, dataset, ...}
//! const images = await session.generate(
//!   { labels: ["3", "7"], sampler: "dpm++", steps: 20, cfg: 1.5, seed: 42, preview: true },
//!   (p) => console.log(p.step, p.total, p.preview),            // optional progress callback
//! );                                                           // [{label, width, height, rgba}]
//! ```
//!
//! Inputs are checked before any work starts; a bad request, a malformed weight file or a
//! failed GPU read-back is a rejected promise / thrown `Error` with a message, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::wgpu::WgpuDevice;
use burn::tensor::backend::Backend;
use js_sys::{Array, Function, Object, Reflect, Uint8ClampedArray};
use wasm_bindgen::prelude::*;

use super::device::{self, BackendKind, Cpu, Gpu};
use crate::diffusion::{NoiseSchedule, Sampler, SamplerConfig};
use crate::generate::{resolve_labels, to_images, Denoiser, GenerateError};
use crate::image;
use crate::model::Dit;
use crate::request::{Request, MAX_BATCH};
use crate::weights::{WeightFile, WeightsMeta};

#[wasm_bindgen(start)]
fn start() {
    // Should anything still panic, the console shows where instead of "unreachable".
    console_error_panic_hook::set_once();
}

/// Most images one `generate` call accepts (the page checks it before calling).
#[wasm_bindgen(js_name = maxBatch)]
pub fn max_batch() -> usize {
    MAX_BATCH
}

/// The burn crate behind the CPU fallback (`"burn-flex"` unless built with another), without
/// opening a session.
#[wasm_bindgen(js_name = cpuLibrary)]
pub fn cpu_library() -> String {
    BackendKind::Cpu.library().into()
}

/// Whether WebGPU sessions run dit-web's own kernels (the default) or burn-wgpu's own for the
/// Linear layers, attention and adaLN. The worker turns them off on a hardware adapter: they were
/// made for software adapters like SwiftShader, and on an NVIDIA GPU burn's were 1.9-2.5x faster.
#[wasm_bindgen(js_name = setOwnWebGpuKernels)]
pub fn set_own_webgpu_kernels(enabled: bool) {
    let own = crate::model::own_kernels();
    crate::model::set_own_kernels(crate::model::OwnKernels {
        wgpu: enabled,
        ..own
    });
}

/// The page's request object, checked (see [`Request`]).
fn parse_request(value: &JsValue) -> Result<Request, String> {
    let json: String = js_sys::JSON::stringify(value)
        .map_err(|_| "the request is not a plain object".to_string())?
        .into();
    Request::from_json(&json)
}

/// A loaded network on one backend (lives once per session behind an `Rc`, so the size
/// difference between the variants costs nothing).
#[allow(clippy::large_enum_variant)]
enum Loaded {
    Gpu(Dit<Gpu>),
    Cpu(Dit<Cpu>),
}

struct Inner {
    backend: BackendKind,
    gpu: Option<WgpuDevice>,
    /// Shared with running generations, so loading new weights never disturbs one.
    model: Option<Rc<(Loaded, WeightsMeta)>>,
}

/// A model session on one backend: load weights, then generate.
#[wasm_bindgen]
pub struct DitSession {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl DitSession {
    /// Opens a session on `"webgpu"` (check `navigator.gpu.requestAdapter()` first) or `"cpu"`.
    pub async fn create(backend: String) -> Result<DitSession, JsError> {
        let backend = BackendKind::parse(&backend).map_err(|e| JsError::new(&e))?;
        let gpu = match backend {
            BackendKind::WebGpu => Some(device::init_webgpu().await),
            BackendKind::Cpu => None,
        };
        Ok(DitSession {
            inner: Rc::new(RefCell::new(Inner {
                backend,
                gpu,
                model: None,
            })),
        })
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.borrow().backend.name().into()
    }

    /// The burn crate behind the backend: `"burn-wgpu"`, or the CPU fallback's library
    /// (`"burn-flex"` unless the module was built with another).
    #[wasm_bindgen(getter)]
    pub fn library(&self) -> String {
        self.inner.borrow().backend.library().into()
    }

    /// Loads a dit-web weight file (safetensors + metadata) and returns its metadata:
    /// `{format_version, model, schedule, labels, dataset, step, ema, quantization, params}`.
    /// A malformed file throws and leaves any previously loaded model in place.
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&self, bytes: &[u8]) -> Result<JsValue, JsError> {
        let mut inner = self.inner.borrow_mut();
        let file = WeightFile::from_bytes(bytes).map_err(to_js)?;
        let (loaded, meta) = match (&inner.backend, &inner.gpu) {
            (BackendKind::WebGpu, Some(device)) => {
                let (model, meta) = file.into_model::<Gpu>(device).map_err(to_js)?;
                (Loaded::Gpu(model), meta)
            }
            _ => {
                let (model, meta) = file.into_model::<Cpu>(&Default::default()).map_err(to_js)?;
                (Loaded::Cpu(model), meta)
            }
        };
        let mut json = serde_json::to_value(&meta).map_err(to_js)?;
        json["params"] = meta.model.num_params().to_string().into();
        inner.model = Some(Rc::new((loaded, meta)));
        js_sys::JSON::parse(&json.to_string()).map_err(|_| JsError::new("metadata to JS"))
    }

    /// Generates one image per label. Resolves to `[{label, width, height, rgba}]` with `rgba` a
    /// `Uint8ClampedArray` ready for `new ImageData(rgba, width, height)`. `on_step`, when given,
    /// is called after every step with `{step, total, t, timing, preview?}` (`timing`:
    /// `{networkMs, readBackMs, updateMs}`, where the step's time went; `preview`: the current
    /// prediction of the clean images, same shape as the result, when the request asks for it).
    pub fn generate(&self, request: JsValue, on_step: Option<Function>) -> js_sys::Promise {
        // The borrow ends here: nothing holds the RefCell across an await.
        let model = self.inner.borrow().model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let Some(model) = model else {
                return Err(JsError::new("no weights loaded: call loadWeights first").into());
            };
            run(&model, &request, on_step.as_ref())
                .await
                .map_err(|e| JsError::new(&e).into())
        })
    }
}

fn to_js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

async fn run(
    model: &(Loaded, WeightsMeta),
    request: &JsValue,
    on_step: Option<&Function>,
) -> Result<JsValue, String> {
    let request = parse_request(request)?;
    let config = request.sampler_config()?;
    let (loaded, meta) = model;
    let ids = resolve_labels(&meta.labels, &request.labels).map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::new(&meta.schedule);
    let shape = (meta.model.in_channels, meta.model.input_size);
    let batch = match loaded {
        Loaded::Gpu(model) => {
            sample(model, &schedule, &ids, &config, shape, &request, on_step).await
        }
        Loaded::Cpu(model) => {
            sample(model, &schedule, &ids, &config, shape, &request, on_step).await
        }
    }?;
    let names: Vec<&str> = ids.iter().map(|&i| meta.labels[i].as_str()).collect();
    Ok(images_to_js(&to_images(&batch, shape.0, shape.1), Some(&names)).into())
}

/// The native `generate::sample` loop with an asynchronous read-back per step.
async fn sample<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    ids: &[usize],
    config: &SamplerConfig,
    (channels, size): (usize, usize),
    request: &Request,
    on_step: Option<&Function>,
) -> Result<Vec<f32>, String> {
    let denoiser = Denoiser::new(model, ids, config).map_err(|e: GenerateError| e.to_string())?;
    let mut sampler = Sampler::new(schedule, config, ids.len(), model.config().image_len());
    while let Some(t) = sampler.timestep() {
        // Where a step's time goes (`timing` in the progress object, the bench page's profile):
        // the network call (on WebGPU: recording and submitting its kernels; on the CPU: all of
        // its arithmetic), waiting for the output to come back, and the host's solver update.
        let started = now_ms();
        let output = denoiser.forward(sampler.x(), t);
        let recorded = now_ms();
        let output = output
            .into_data_async()
            .await
            .map_err(|e| format!("reading the network output back from the device: {e:?}"))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| format!("network output: {e:?}"))?;
        let read = now_ms();
        let x0 = sampler.advance(&denoiser.eps_from_output(output, None, t));
        let updated = now_ms();
        if let Some(callback) = on_step {
            let progress = Object::new();
            set(&progress, "step", &(sampler.steps_done() as u32).into());
            set(&progress, "total", &(sampler.num_steps() as u32).into());
            set(&progress, "t", &(t as u32).into());
            let timing = Object::new();
            set(&timing, "networkMs", &(recorded - started).into());
            set(&timing, "readBackMs", &(read - recorded).into());
            set(&timing, "updateMs", &(updated - read).into());
            set(&progress, "timing", &timing);
            if request.preview {
                set(
                    &progress,
                    "preview",
                    &images_to_js(&to_images(&x0, channels, size), None),
                );
            }
            // A throwing callback stops the generation (the page uses this to cancel).
            callback
                .call1(&JsValue::NULL, &progress)
                .map_err(|e| format!("progress callback threw: {}", describe(&e)))?;
        }
    }
    Ok(sampler.into_output())
}

fn images_to_js(images: &[image::Rgba], labels: Option<&[&str]>) -> Array {
    images
        .iter()
        .enumerate()
        .map(|(k, image)| {
            let object = Object::new();
            if let Some(labels) = labels {
                set(&object, "label", &labels[k].into());
            }
            set(&object, "width", &(image.width as u32).into());
            set(&object, "height", &(image.height as u32).into());
            set(
                &object,
                "rgba",
                &Uint8ClampedArray::from(image.pixels.as_slice()).into(),
            );
            JsValue::from(object)
        })
        .collect()
}

/// `performance.now()` of the page or worker (0 where there is none).
fn now_ms() -> f64 {
    Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|performance| {
            let now: Function = Reflect::get(&performance, &"now".into())
                .ok()?
                .dyn_into()
                .ok()?;
            now.call0(&performance).ok()?.as_f64()
        })
        .unwrap_or(0.0)
}

fn set(object: &Object, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(object, &key.into(), value);
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}
