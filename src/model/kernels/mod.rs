//! dit-web's own code for the two backends the page runs, where burn's generic ops are slow for
//! this model's shapes: [`flex`] for burn-flex (the CPU backend: natively and the browser's
//! fallback), [`flex_train`] for training on it (`Autodiff<Flex>`, natively) and [`wgpu`] for
//! burn-wgpu (the page's WebGPU; natively, the `wgpu` feature).
//!
//! The model reaches them from `forward_linear`, `Attention::forward`, `norm_modulate` and the
//! MLP's GELU, each asked with the layer's [`OwnKernels`]. A tensor is handed to them only when
//! that setting allows, its backend's float primitive is theirs (told apart by type, before
//! anything is cloned) and it is f32; every other backend (autodiff over other backends, ndarray,
//! candle, CUDA, burn-wgpu with fusion), dtype or shape takes burn's path.
//! The same sums in another order, so images agree with burn's path to float rounding.

use std::any::{Any, TypeId};

use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

pub(crate) mod flex;
mod flex_math;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod flex_train;
#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
pub(crate) mod wgpu;

/// Whether the model takes dit-web's own code, per backend; where a flag is off, every op of
/// that backend takes burn's path. A setting of each model ([`crate::Dit::with_kernels`]), not of
/// the process: a layer runs the same whatever ran before it. Both are on by default. The own
/// burn-wgpu kernels were made for software adapters (Chromium's SwiftShader), where they are
/// 10-40x faster than burn's; on an NVIDIA H200 through Vulkan burn's were 1.9-2.5x faster than
/// them (docs/browser.md, "The same sampler natively on a real GPU"), so the page and the trainer
/// turn `wgpu` off on hardware adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnKernels {
    /// burn-flex, the CPU backend (natively and the browser's fallback).
    pub flex: bool,
    /// burn-wgpu (the page's WebGPU; natively Vulkan, Metal or DirectX 12).
    pub wgpu: bool,
}

impl Default for OwnKernels {
    fn default() -> Self {
        Self {
            flex: true,
            wgpu: true,
        }
    }
}

impl OwnKernels {
    /// Burn's path everywhere.
    pub const NONE: Self = Self {
        flex: false,
        wgpu: false,
    };
}

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

fn is<B: Backend, T: 'static>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<T>()
}

/// `from` as `To`, which the caller checked is its own type.
fn cast<From: 'static, To: 'static>(from: From) -> To {
    let mut slot = Some(from);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<To>>()
        .and_then(Option::take)
        .expect("the types were checked to be the same")
}
