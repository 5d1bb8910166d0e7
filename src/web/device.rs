//! Which burn backend runs the network in the browser.
//!
//! JavaScript decides: it asks `navigator.gpu.requestAdapter()` first, because burn-wgpu's
//! WebGPU initialisation panics (and so kills the wasm instance) when there is no adapter.

use std::cell::Cell;

use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions, WgpuDevice};

/// The WebGPU backend, f32 throughout (many adapters, SwiftShader included, lack `shader-f16`).
pub type Gpu = burn::backend::Wgpu<f32, i32, u32>;

// The CPU fallback, single-threaded with SIMD128: burn-flex, the fastest of burn's CPU backends
// in wasm here (docs/browser-speed.md, "Which CPU backend": `make bench-cpu-backends` builds the
// module with each of them and measures them in one run). The features below build the other
// two for that comparison.
/// The CPU fallback: burn-flex.
#[cfg(not(any(feature = "web-cpu-ndarray", feature = "web-cpu-candle")))]
pub type Cpu = burn::backend::Flex<f32>;
/// The CPU fallback: burn-ndarray (`--features web-cpu-ndarray`).
#[cfg(feature = "web-cpu-ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;
/// The CPU fallback: burn-candle (`--features web-cpu-candle`; deprecated in burn 0.21).
#[cfg(all(feature = "web-cpu-candle", not(feature = "web-cpu-ndarray")))]
#[allow(deprecated)]
pub type Cpu = burn::backend::Candle<f32, i64>;

/// The library behind [`Cpu`], as the page reports it.
pub const CPU_LIBRARY: &str = if cfg!(feature = "web-cpu-ndarray") {
    "burn-ndarray"
} else if cfg!(feature = "web-cpu-candle") {
    "burn-candle"
} else {
    "burn-flex"
};

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

    /// The burn backend crate that runs it.
    pub fn library(self) -> &'static str {
        match self {
            Self::WebGpu => "burn-wgpu",
            Self::Cpu => CPU_LIBRARY,
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
