//! Which burn backend runs the network in the browser.
//!
//! JavaScript decides: it asks `navigator.gpu.requestAdapter()` first, because burn-wgpu's
//! WebGPU initialisation panics (and so kills the wasm instance) when there is no adapter.

use std::cell::Cell;

use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions, WgpuDevice};
// burn-candle is deprecated in burn 0.21 (removed in 0.22), but it is the fastest CPU backend
// in wasm here (README, "Browser"); a move to burn 0.22 would switch this to burn-flex.
#[allow(deprecated)]
use burn::backend::Candle;

/// The WebGPU backend, f32 throughout (many adapters, SwiftShader included, lack `shader-f16`).
pub type Gpu = burn::backend::Wgpu<f32, i32, u32>;
/// The CPU fallback: burn-candle, single-threaded, SIMD128.
#[allow(deprecated)]
pub type Cpu = Candle<f32, i64>;

/// The backends a page can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    WebGpu,
    Cpu,
}

impl BackendKind {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "webgpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!(
                "unknown backend `{other}` (expected `webgpu` or `cpu`)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::WebGpu => "webgpu",
            Self::Cpu => "cpu",
        }
    }
}

thread_local! {
    // burn-wgpu registers one compute server per device and panics when asked twice.
    static WEBGPU_READY: Cell<bool> = const { Cell::new(false) };
}

/// Sets up the WebGPU device once per wasm instance. The caller must have checked that an
/// adapter exists.
pub async fn init_webgpu() -> WgpuDevice {
    let device = WgpuDevice::default();
    if !WEBGPU_READY.with(Cell::get) {
        init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
        WEBGPU_READY.with(|ready| ready.set(true));
    }
    device
}
