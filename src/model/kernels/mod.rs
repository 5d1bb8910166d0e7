//! dit-web's own code for the two backends the page runs, where burn's generic ops are slow for
//! this model's shapes: [`flex`] for burn-flex (the CPU backend: natively and the browser's
//! fallback), [`flex_train`] for training on it (`Autodiff<Flex>`, natively) and [`wgpu`] for
//! burn-wgpu (the page's WebGPU; natively, the `wgpu` feature).
//!
//! The model reaches them from `forward_linear`, `Attention::forward`, `norm_modulate` and the
//! MLP's GELU. A tensor is handed to them only when its backend's float primitive is theirs (told
//! apart by type, before anything is cloned) and it is f32; every other backend (autodiff over
//! other backends, ndarray, candle, CUDA, burn-wgpu with fusion), dtype or shape takes burn's path.
//! The same sums in another order, so images agree with burn's path to float rounding.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

pub(crate) mod flex;
mod flex_math;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod flex_train;
#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
pub(crate) mod wgpu;

/// `t`'s float primitive as `T` (sharing its data), or `None` when `B`'s float primitive is
/// another type.
pub(crate) fn primitive<B: Backend, T: 'static, const D: usize>(t: &Tensor<B, D>) -> Option<T> {
    is::<B, T>().then(|| cast(t.clone().into_primitive().tensor()))
}

/// `t`'s float primitive as `T`, or `t` back when `B`'s float primitive is another type.
pub(crate) fn into_primitive<B: Backend, T: 'static, const D: usize>(
    t: Tensor<B, D>,
) -> Result<T, Tensor<B, D>> {
    if is::<B, T>() {
        Ok(cast(t.into_primitive().tensor()))
    } else {
        Err(t)
    }
}

/// A kernel's output as a tensor of `B`, whose float primitive [`primitive`] found to be `T`.
pub(crate) fn from_primitive<B: Backend, T: 'static, const D: usize>(t: T) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(t)))
}

static OWN_FLEX: AtomicBool = AtomicBool::new(true);
static OWN_WGPU: AtomicBool = AtomicBool::new(true);

/// Which of dit-web's own code the model takes, per backend; where a flag is off, every op of that
/// backend takes burn's path. Both are on by default. The own burn-wgpu kernels were made for
/// software adapters (Chromium's SwiftShader), where they are 10-40x faster than burn's; on an
/// NVIDIA H200 through Vulkan burn's were 1.9-2.5x faster than them (docs/browser.md, "The same sampler
/// natively on a real GPU"), so the page and the trainer turn `wgpu` off on hardware adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnKernels {
    /// burn-flex, the CPU backend (natively and the browser's fallback).
    pub flex: bool,
    /// burn-wgpu (the page's WebGPU; natively Vulkan, Metal or DirectX 12).
    pub wgpu: bool,
}

/// Sets [`OwnKernels`] for the whole process (or wasm instance).
pub fn set_own_kernels(own: OwnKernels) {
    OWN_FLEX.store(own.flex, Ordering::Relaxed);
    OWN_WGPU.store(own.wgpu, Ordering::Relaxed);
}

/// The [`OwnKernels`] in force.
pub fn own_kernels() -> OwnKernels {
    OwnKernels {
        flex: OWN_FLEX.load(Ordering::Relaxed),
        wgpu: OWN_WGPU.load(Ordering::Relaxed),
    }
}

fn is<B: Backend, T: 'static>() -> bool {
    let flex = TypeId::of::<T>() == TypeId::of::<burn_flex::FlexTensor>();
    #[cfg(not(target_arch = "wasm32"))]
    let flex = flex || TypeId::of::<T>() == TypeId::of::<flex_train::TrainTensor>();
    let own = if flex { &OWN_FLEX } else { &OWN_WGPU };
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<T>() && own.load(Ordering::Relaxed)
}

/// `from` as `To`, which the caller checked is its own type.
fn cast<From: 'static, To: 'static>(from: From) -> To {
    let mut slot = Some(from);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<To>>()
        .and_then(Option::take)
        .expect("the types were checked to be the same")
}
