//! The burn backend a command runs on, picked at run time among those compiled in.
//!
//! Commands are written once as an [`OnBackend`] task, generic over a training backend
//! (`Autodiff<X>`); inference tasks use its inner backend. [`run_on`] picks `X`. GPU backends are
//! probed first, so a missing driver or adapter is a one-line error rather than a panic.

use std::sync::{Arc, Mutex};

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use dit_web::generate::Batches;
use dit_web::model::OwnKernels;

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The CPU: burn-flex (burn-ndarray in a build without the `flex` feature).
    Cpu,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-cuda on an NVIDIA GPU (build with `--features cuda`).
    Cuda,
    /// burn-wgpu on Vulkan, Metal or DirectX 12 (build with `--features wgpu`).
    Wgpu,
    /// burn-candle on the CPU (build with `--features candle`).
    Candle,
}

impl BackendChoice {
    /// Training steps between read-backs of the loss by default: every step on the CPU backends,
    /// whose work is done when a step returns, and every 20 on the GPU ones, so the host can
    /// queue the next steps while the device runs (about 1-4 s of training at the reference's
    /// batch sizes on an H200).
    pub fn default_read_every(self) -> u64 {
        if self.is_cpu() {
            1
        } else {
            20
        }
    }

    /// Whether it computes on the CPU: there a large generation request runs its batches side by
    /// side (see `dit_web::generate::Batches`).
    pub fn is_cpu(self) -> bool {
        match self {
            Self::Cpu | Self::Ndarray | Self::Candle => true,
            Self::Cuda | Self::Wgpu => false,
        }
    }

    /// How a request of `max` images per network call is split on this backend.
    pub fn batches(self, max: usize) -> Batches {
        Batches {
            max,
            parallel: self.is_cpu(),
        }
    }
}

/// Whose kernels run the model's Linear layers, attention, adaLN and GELU where dit-web has its
/// own (burn-flex, burn-wgpu; see `dit_web::model::OwnKernels`). Every other backend runs burn's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// dit-web's own on the CPU and on software wgpu adapters (lavapipe, llvmpipe, SwiftShader),
    /// burn-wgpu's on hardware GPUs, where they were 1.9-2.5x faster (an NVIDIA H200 via Vulkan).
    #[default]
    Auto,
    /// dit-web's own wherever it has some.
    Own,
    /// burn's everywhere.
    Burn,
}

impl KernelChoice {
    /// What the choice means for a run; `software_adapter`: whether the wgpu adapter emulates a
    /// GPU on the CPU (irrelevant to other backends).
    pub fn resolve(self, software_adapter: bool) -> OwnKernels {
        match self {
            Self::Auto => OwnKernels {
                flex: true,
                wgpu: software_adapter,
            },
            Self::Own => OwnKernels::default(),
            Self::Burn => OwnKernels::NONE,
        }
    }
}

/// A piece of work that runs on whichever backend the user chose.
pub trait OnBackend {
    type Output;
    /// Runs on training backend `B` (use `B::InnerBackend` for inference) on `device`; every
    /// model it makes runs with `kernels` ([`dit_web::Dit::with_kernels`]).
    fn run<B: AutodiffBackend>(self, device: B::Device, kernels: OwnKernels) -> Self::Output;
}

/// Runs `task` on `choice` with dit-web's own kernels where they are the faster
/// ([`KernelChoice::Auto`]). `Err` says why that backend cannot run here, in one line.
pub fn run_on<T: OnBackend>(choice: BackendChoice, task: T) -> Result<T::Output, String> {
    run_with(choice, KernelChoice::Auto, task)
}

/// [`run_on`] with the kernels `kernels` picks.
pub fn run_with<T: OnBackend>(
    choice: BackendChoice,
    kernels: KernelChoice,
    task: T,
) -> Result<T::Output, String> {
    let own = kernels.resolve(false);
    match choice {
        BackendChoice::Cpu => Ok(task.run::<Autodiff<crate::Cpu>>(Default::default(), own)),
        BackendChoice::Ndarray => Ok(task.run::<Autodiff<crate::NdArray>>(Default::default(), own)),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => {
            let device = probe::<burn::backend::Cuda>("CUDA")?;
            Ok(task.run::<Autodiff<burn::backend::Cuda>>(device, own))
        }
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => {
            let (device, software) = wgpu_device()?;
            let own = kernels.resolve(software);
            Ok(task.run::<Autodiff<burn::backend::Wgpu>>(device, own))
        }
        #[cfg(feature = "candle")]
        #[allow(deprecated)]
        BackendChoice::Candle => {
            Ok(task.run::<Autodiff<burn::backend::Candle>>(Default::default(), own))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

fn not_built(choice: BackendChoice) -> String {
    let feature = format!("{choice:?}").to_lowercase();
    format!(
        "this trainer was built without {feature}: cargo build -p trainer --release --features {feature}"
    )
}

/// The devices of a data-parallel run on backend `B`, by index (`ids`): on a GPU backend the
/// devices of `first`'s kind with those indices (CUDA device numbers), on the CPU backends
/// `first` itself for every worker (they share the cores).
pub fn devices<B: Backend>(first: &B::Device, ids: &[usize], cpu: bool) -> Vec<B::Device> {
    use burn::tensor::backend::Device;
    ids.iter()
        .map(|&index| {
            if cpu {
                return first.clone();
            }
            let mut id = first.to_id();
            id.index_id = index as u16;
            B::Device::from_id(id)
        })
        .collect()
}

/// Makes the default device and reads one value back from it; a backend that panics on the way
/// (no driver, no adapter) becomes `Err` with the panic's first line.
#[allow(dead_code)] // used by the GPU features only
fn probe<B: Backend>(name: &str) -> Result<B::Device, String> {
    quietly(|| {
        let device = B::Device::default();
        let _ = Tensor::<B, 1>::zeros([1], &device).into_data();
        device
    })
    .map_err(|why| format!("no usable {name} device: {why}"))
}

/// The default wgpu device, set up once per process, and whether its adapter is a software one
/// (a CPU device type, or Mesa's llvmpipe / lavapipe, SwiftShader by name).
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<(burn::backend::wgpu::WgpuDevice, bool), String> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
    // burn-wgpu registers one compute server per device and panics when set up twice.
    static SOFTWARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let device = WgpuDevice::default();
    let software = match SOFTWARE.get() {
        Some(software) => *software,
        None => {
            let info = quietly(|| {
                init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default())
                    .adapter
                    .get_info()
            })
            .map_err(|why| format!("no usable wgpu (Vulkan, Metal or DirectX 12) device: {why}"))?;
            // `wgpu::DeviceType::Cpu`, named through Debug: the trainer does not depend on wgpu.
            let software = format!("{:?}", info.device_type) == "Cpu"
                || ["llvmpipe", "lavapipe", "swiftshader"]
                    .iter()
                    .any(|name| info.name.to_lowercase().contains(name));
            *SOFTWARE.get_or_init(|| software)
        }
    };
    let device = probe::<burn::backend::Wgpu>("wgpu (Vulkan, Metal or DirectX 12)")?;
    Ok((device, software))
}

/// Runs `f`, turning a panic (on this thread or one it waits on) into its message, unprinted.
#[allow(dead_code)]
fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = first.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        let mut slot = seen.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| text.lines().next().unwrap_or("panicked").to_string());
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.map_err(|_| {
        first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "panicked".into())
    })
}

/// Seeds `B`'s random generator, builds a module with `init` and draws its parameters while no
/// other thread of this process can. The generator is global to the backend and burn draws a
/// parameter lazily, on its first use: two runs initializing at once (tests, or a library user's
/// threads) would interleave their draws and get different weights from the same seed.
pub fn seeded<B: Backend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    init: impl FnOnce() -> M,
) -> M {
    /// Reads every float parameter, which makes burn initialize it.
    struct Draw;
    impl<B: Backend> ModuleVisitor<B> for Draw {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            param.val();
        }
    }
    static INIT: Mutex<()> = Mutex::new(());
    let _only_us = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    let module = init();
    module.visit(&mut Draw);
    module
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_first_line() {
        let err = quietly(|| -> u8 { panic!("no driver found\nsecond line") }).unwrap_err();
        assert_eq!(err, "no driver found");
        assert_eq!(quietly(|| 7).unwrap(), 7);
    }

    #[test]
    fn a_backend_left_out_of_the_build_names_its_feature() {
        struct Nothing;
        impl OnBackend for Nothing {
            type Output = ();
            fn run<B: AutodiffBackend>(self, _: B::Device, _: OwnKernels) {}
        }
        assert!(run_on(BackendChoice::Cpu, Nothing).is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(run_on(BackendChoice::Cuda, Nothing)
            .unwrap_err()
            .contains("--features cuda"));
    }
}
