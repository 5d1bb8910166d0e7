//! The wasm-bindgen API. JavaScript sees one class and a few functions:
//!
//! ```js
//! const session = await DitSession.create("webgpu");          // or "cpu"
//! const info = session.loadWeights(bytes);                     // ModelInfo: {model, labels, ...}
//! const images = await session.generate(
//!   { labels: ["3", "7"], sampler: "dpm++", steps: 20, cfg: 1.5, seed: 42, preview: true },
//!   (p) => console.log(p.step, p.total, p.preview),            // optional progress callback
//! );                                                           // GeneratedImage[]
//! ```
//!
//! Requests, results, progress events and model metadata are Rust types ([`Request`],
//! [`GeneratedImage`], [`Progress`], [`ModelInfo`]) that cross the boundary through
//! serde-wasm-bindgen, pixels as typed arrays; `tsify` writes their TypeScript definitions into
//! `dit_web.d.ts` from the same types. Inputs are checked before any work starts; a bad request, a
//! malformed weight file or a failed GPU read-back is a rejected promise / thrown `Error` with a
//! message, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::wgpu::WgpuDevice;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use js_sys::{Function, Promise, Uint8ClampedArray};
use serde::Serialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::device::{self, BackendKind, Cpu, Gpu};
use crate::diffusion::{NoiseSchedule, Sampler, SamplerConfig, StepInfo};
use crate::generate::{
    check_steps, max_steps, resolve_labels, sampling_loop, to_images, Denoiser, StepTimes,
};
use crate::image;
use crate::model::{Dit, OwnKernels};
use crate::request::{Request, MAX_BATCH};
use crate::weights::{WeightFile, WeightsMeta};

#[wasm_bindgen(start)]
fn start() {
    // Should anything still panic, the console shows where instead of "unreachable".
    console_error_panic_hook::set_once();
}

/// One generated image: `new ImageData(rgba, width, height)` draws it.
#[derive(Serialize, Tsify)]
pub struct GeneratedImage {
    /// The label it was drawn for (absent on previews).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub width: u32,
    pub height: u32,
    /// Row-major RGBA, 4 bytes a pixel.
    #[serde(with = "serde_wasm_bindgen::preserve")]
    #[tsify(type = "Uint8ClampedArray<ArrayBuffer>")]
    pub rgba: Uint8ClampedArray,
}

/// Where one sampler step's time went, in milliseconds.
#[derive(Serialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct StepTiming {
    /// The network call: on WebGPU recording and submitting its kernels, on the CPU all of its
    /// arithmetic.
    pub network_ms: f64,
    /// Waiting for the network's output to come back to the host.
    pub read_back_ms: f64,
    /// The solver's update on the host.
    pub update_ms: f64,
}

/// What the progress callback receives after every step.
#[derive(Serialize, Tsify)]
pub struct Progress {
    /// Steps done (1 after the first).
    pub step: u32,
    pub total: u32,
    /// The timestep this step denoised.
    pub t: u32,
    pub timing: StepTiming,
    /// The current prediction of the clean images, when the request asked for `preview`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<GeneratedImage>>,
}

/// A loaded weight file's metadata, its parameter count (a decimal string: it can pass 2^53) and
/// the most sampler steps its schedule gives (`steps` above it is refused).
#[derive(Serialize, Tsify)]
pub struct ModelInfo {
    #[serde(flatten)]
    pub meta: WeightsMeta,
    pub params: String,
    pub max_steps: usize,
}

#[wasm_bindgen(typescript_custom_section)]
const PROGRESS_CALLBACK: &str = r#"
/** Called after every step; a returned promise is awaited before the next step, and a throw
 *  or a rejection stops the generation with that error (how a page cancels one). */
export type ProgressCallback = (progress: Progress) => void | Promise<void>;
export type BackendName = "webgpu" | "cpu";
"#;

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
    /// Whose kernels the session's models run.
    kernels: OwnKernels,
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
    /// `ownKernels` (WebGPU only; default true): whether its models run dit-web's own kernels for
    /// the Linear layers, attention and adaLN, or burn-wgpu's. The worker turns them off on a
    /// hardware adapter: they were made for software adapters like SwiftShader, and on an NVIDIA
    /// GPU burn's were 1.9-2.5x faster.
    pub async fn create(
        #[wasm_bindgen(unchecked_param_type = "BackendName")] backend: String,
        #[wasm_bindgen(js_name = ownKernels)] own_kernels: Option<bool>,
    ) -> Result<DitSession, JsError> {
        let backend = BackendKind::parse(&backend).map_err(|e| JsError::new(&e))?;
        let gpu = match backend {
            BackendKind::WebGpu => Some(device::init_webgpu().await),
            BackendKind::Cpu => None,
        };
        Ok(DitSession {
            inner: Rc::new(RefCell::new(Inner {
                backend,
                gpu,
                kernels: OwnKernels {
                    wgpu: own_kernels.unwrap_or(true),
                    ..OwnKernels::default()
                },
                model: None,
            })),
        })
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter, unchecked_return_type = "BackendName")]
    pub fn backend(&self) -> String {
        self.inner.borrow().backend.name().into()
    }

    /// The burn crate behind the backend: `"burn-wgpu"`, or the CPU fallback's library
    /// (`"burn-flex"` unless the module was built with another).
    #[wasm_bindgen(getter)]
    pub fn library(&self) -> String {
        self.inner.borrow().backend.library().into()
    }

    /// Loads a dit-web weight file (safetensors + metadata) and returns its metadata. A malformed
    /// file throws and leaves any previously loaded model in place.
    #[wasm_bindgen(js_name = loadWeights, unchecked_return_type = "ModelInfo")]
    pub fn load_weights(&self, bytes: &[u8]) -> Result<JsValue, JsError> {
        let mut inner = self.inner.borrow_mut();
        let file = WeightFile::from_bytes(bytes).map_err(to_js)?;
        let (loaded, meta) = match (&inner.backend, &inner.gpu) {
            (BackendKind::WebGpu, Some(device)) => {
                let (model, meta) = file.into_model::<Gpu>(device).map_err(to_js)?;
                (Loaded::Gpu(model.with_kernels(inner.kernels)), meta)
            }
            _ => {
                let (model, meta) = file.into_model::<Cpu>(&Default::default()).map_err(to_js)?;
                (Loaded::Cpu(model.with_kernels(inner.kernels)), meta)
            }
        };
        let info = ModelInfo {
            params: meta.model.num_params().to_string(),
            max_steps: max_steps(&NoiseSchedule::new(&meta.schedule)),
            meta: meta.clone(),
        };
        inner.model = Some(Rc::new((loaded, meta)));
        to_js_value(&info).map_err(to_js)
    }

    /// Generates one image per label. Resolves to one [`GeneratedImage`] per label, in order.
    /// `on_step`, when given, is called after every step with a [`Progress`].
    #[wasm_bindgen(unchecked_return_type = "Promise<GeneratedImage[]>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Request")] request: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ProgressCallback")] on_step: Option<
            Function,
        >,
    ) -> Promise {
        // The borrow ends here: nothing holds the RefCell across an await.
        let model = self.inner.borrow().model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let Some(model) = model else {
                return Err(JsError::new("no weights loaded: call loadWeights first").into());
            };
            let images = run(&model, request, on_step.as_ref())
                .await
                .map_err(|e| JsValue::from(JsError::new(&e)))?;
            to_js_value(&images).map_err(|e| to_js(e).into())
        })
    }
}

fn to_js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A value as plain JavaScript: objects for structs and maps (a flattened struct is a map to
/// serde), numbers for integers, typed arrays where a field keeps one.
fn to_js_value(value: &impl Serialize) -> Result<JsValue, serde_wasm_bindgen::Error> {
    value.serialize(&serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true))
}

async fn run(
    model: &(Loaded, WeightsMeta),
    request: JsValue,
    on_step: Option<&Function>,
) -> Result<Vec<GeneratedImage>, String> {
    let request: Request =
        serde_wasm_bindgen::from_value(request).map_err(|e| format!("bad request: {e}"))?;
    let config = request.sampler_config()?;
    let (loaded, meta) = model;
    let ids = resolve_labels(&meta.labels, &request.labels).map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::new(&meta.schedule);
    check_steps(&schedule, &config).map_err(|e| e.to_string())?;
    let shape = (meta.model.in_channels, meta.model.input_size);
    let batch = match loaded {
        Loaded::Gpu(model) => {
            sample(model, &schedule, &ids, &config, shape, &request, on_step).await
        }
        Loaded::Cpu(model) => {
            sample(model, &schedule, &ids, &config, shape, &request, on_step).await
        }
    }?;
    let names = ids.iter().map(|&i| meta.labels[i].clone());
    Ok(images(
        &to_images(&batch, shape.0, shape.1),
        names.map(Some),
    ))
}

/// [`sampling_loop`] with an asynchronous read-back per step, and each step's progress (its
/// times, and on request the images it predicts) handed to the page's callback.
async fn sample<B: Backend>(
    model: &Dit<B>,
    schedule: &NoiseSchedule,
    ids: &[usize],
    config: &SamplerConfig,
    (channels, size): (usize, usize),
    request: &Request,
    on_step: Option<&Function>,
) -> Result<Vec<f32>, String> {
    let denoiser = Denoiser::new(model, ids, config).map_err(|e| e.to_string())?;
    let mut sampler = Sampler::new(schedule, config, ids.len(), model.config().image_len());
    let clock = Clock::new();
    let read = async |output: Tensor<B, 4>| {
        let data = output
            .into_data_async()
            .await
            .map_err(|e| format!("reading the network output back from the device: {e:?}"))?;
        let values = data.convert::<f32>().into_vec::<f32>();
        values.map_err(|e| format!("network output: {e:?}"))
    };
    let step = async |info: &StepInfo<'_>, timing: StepTimes| {
        let Some(callback) = on_step else {
            return Ok(());
        };
        let progress = Progress {
            step: info.step as u32,
            total: info.total as u32,
            t: info.t as u32,
            timing: StepTiming {
                network_ms: timing.network_ms,
                read_back_ms: timing.read_back_ms,
                update_ms: timing.update_ms,
            },
            preview: request
                .preview
                .then(|| images(&to_images(info.x0, channels, size), std::iter::repeat(None))),
        };
        let progress = to_js_value(&progress).map_err(|e| e.to_string())?;
        let stopped = |e: JsValue| format!("progress callback threw: {}", describe(&e));
        let answer = callback.call1(&JsValue::NULL, &progress).map_err(stopped)?;
        // A promise from the callback is awaited: the worker yields there, so a cancel message
        // can reach it, and rejects to stop.
        if let Some(pending) = answer.dyn_ref::<Promise>() {
            JsFuture::from(pending.clone()).await.map_err(stopped)?;
        }
        Ok(())
    };
    sampling_loop(&denoiser, &mut sampler, || clock.now(), read, step).await?;
    Ok(sampler.into_output())
}

fn images(
    pictures: &[image::Rgba],
    labels: impl Iterator<Item = Option<String>>,
) -> Vec<GeneratedImage> {
    pictures
        .iter()
        .zip(labels)
        .map(|(picture, label)| GeneratedImage {
            label,
            width: picture.width as u32,
            height: picture.height as u32,
            rgba: Uint8ClampedArray::from(picture.pixels.as_slice()),
        })
        .collect()
}

/// `performance.now()` of the page or the worker, through web-sys (0 where there is neither).
struct Clock(Option<web_sys::Performance>);

impl Clock {
    fn new() -> Self {
        let global = js_sys::global();
        let performance = match global.dyn_ref::<web_sys::Window>() {
            Some(window) => window.performance(),
            None => global
                .dyn_ref::<web_sys::WorkerGlobalScope>()
                .and_then(|worker| worker.performance()),
        };
        Self(performance)
    }

    fn now(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |p| p.now())
    }
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}
