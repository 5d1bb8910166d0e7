use burn::tensor::{backend::Backend, Tensor};

use super::kernels::OwnKernels;

/// LayerNorm over the last axis without a learned affine (the DiT's `elementwise_affine=False`,
/// eps 1e-6); burn's `LayerNorm` always carries a gamma, so this is its own function.
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const EPS: f64 = 1e-6;
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + EPS).sqrt()
}

/// adaLN's modulation: `x * (1 + scale) + shift`, with per-sample `shift`/`scale` of shape
/// `[B, d]` applied to every token of `x: [B, N, d]`.
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let tokens = x.dims()[1];
    x * per_token(scale + 1.0, tokens) + per_token(shift, tokens)
}

/// `modulate(layer_norm(x), shift, scale)`, adaLN's input to a branch. On burn-wgpu it is one
/// kernel of `model::kernels::wgpu` instead of the nine element-wise and reduction dispatches
/// burn-wgpu runs for it (on Chromium's software adapter its broadcasts are scalar loops); on
/// burn-flex one pass per token instead of as many passes over the tensor; everywhere else it is
/// exactly those two functions.
pub fn norm_modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
    own: OwnKernels,
) -> Tensor<B, 3> {
    if own.flex {
        if let Some(y) = flex_norm_modulate(&x, &shift, &scale) {
            return y;
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(y) = train_norm_modulate(&x, &shift, &scale) {
            return y;
        }
    }
    #[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
    if own.wgpu {
        if let Some(y) = wgpu_norm_modulate(&x, &shift, &scale) {
            return y;
        }
    }
    modulate(layer_norm(x), shift, scale)
}

fn flex_norm_modulate<B: Backend>(
    x: &Tensor<B, 3>,
    shift: &Tensor<B, 2>,
    scale: &Tensor<B, 2>,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{flex, from_primitive, primitive};
    let x = primitive::<B, burn_flex::FlexTensor, 3>(x)?;
    let shift = primitive::<B, burn_flex::FlexTensor, 2>(shift)?;
    let scale = primitive::<B, burn_flex::FlexTensor, 2>(scale)?;
    Some(from_primitive(flex::norm_modulate(&x, &shift, &scale)?))
}

/// Training on burn-flex: one autodiff operation with its own backward
/// (`model::kernels::flex_train`).
#[cfg(not(target_arch = "wasm32"))]
fn train_norm_modulate<B: Backend>(
    x: &Tensor<B, 3>,
    shift: &Tensor<B, 2>,
    scale: &Tensor<B, 2>,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{flex_train, from_primitive, primitive};
    let x = primitive::<B, flex_train::TrainTensor, 3>(x)?;
    let shift = primitive::<B, flex_train::TrainTensor, 2>(shift)?;
    let scale = primitive::<B, flex_train::TrainTensor, 2>(scale)?;
    Some(from_primitive(flex_train::norm_modulate(
        &x, &shift, &scale,
    )?))
}

#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
fn wgpu_norm_modulate<B: Backend>(
    x: &Tensor<B, 3>,
    shift: &Tensor<B, 2>,
    scale: &Tensor<B, 2>,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{
        from_primitive,
        wgpu::{norm_modulate, wgpu_tensor},
    };
    let (x, shift, scale) = (wgpu_tensor(x)?, wgpu_tensor(shift)?, wgpu_tensor(scale)?);
    Some(from_primitive(norm_modulate(x, shift, scale)?))
}

/// A per-sample vector `[B, d]` repeated for each of `tokens` tokens: `[B, tokens, d]`, the same
/// values a broadcast would give. burn-flex (the CPU backend, natively and in the browser) runs a
/// `[B, 1, d]` broadcast with B > 1 through a scalar index-walking loop, about a third of a guided
/// mnist-cpu step; written out, the products and sums take its SIMD path. On the GPU backends
/// (burn-cubecl) repeating a size-1 axis is a stride-0 view: no copy, no extra kernel.
pub fn per_token<B: Backend>(v: Tensor<B, 2>, tokens: usize) -> Tensor<B, 3> {
    v.unsqueeze_dim::<3>(1).repeat_dim(1, tokens)
}
