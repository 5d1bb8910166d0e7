//! dit-web's own code for the two backends the page runs, where burn's generic ops are slow for
//! this model's shapes: [`flex`] for burn-flex (the CPU backend: natively and the browser's
//! fallback) and [`wgpu`] for burn-wgpu (the page's WebGPU; natively, the `wgpu` feature).
//!
//! The model reaches them from `forward_linear`, `Attention::forward`, `norm_modulate` and the
//! MLP's GELU. A tensor is handed to them only when its backend's float primitive is theirs (told
//! apart by type, before anything is cloned) and it is f32; every other backend (autodiff for
//! training, ndarray, candle, CUDA, burn-wgpu with fusion), dtype or shape takes burn's path.
//! The same sums in another order, so images agree with burn's path to float rounding.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

pub(crate) mod flex;
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

/// Whether the model takes dit-web's own code where its backend has some (the default).
static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns dit-web's own code for burn-flex and burn-wgpu on or off for the whole process; off,
/// every op takes burn's path. For measuring one against the other on the same device (`trainer
/// bench --burn-kernels`).
pub fn set_own_kernels(enabled: bool) {
    OWN_KERNELS.store(enabled, Ordering::Relaxed);
}

fn is<B: Backend, T: 'static>() -> bool {
    OWN_KERNELS.load(Ordering::Relaxed)
        && TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<T>()
}

/// `from` as `To`, which the caller checked is its own type.
fn cast<From: 'static, To: 'static>(from: From) -> To {
    let mut slot = Some(from);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<To>>()
        .and_then(Option::take)
        .expect("the types were checked to be the same")
}
