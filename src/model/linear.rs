//! The model's Linear layers: how they start (the paper's inits) and how they run on each
//! backend.

use burn::module::Initializer;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};
use burn_flex::FlexTensor;

use super::kernels::OwnKernels;

/// `x W + b` over the last dimension of `x`: every Linear layer of the model runs through here.
/// On burn-flex (the CPU backend) it is one `gemm` call that accumulates into the bias; on
/// burn-wgpu (the page's WebGPU; natively, `--features wgpu`) the register-tiled matmul of
/// `model::kernels::wgpu` (burn-wgpu's own was about 40 times slower on Chromium's software
/// adapter); any other backend, and any shape those do not take, runs burn's `Linear::forward`.
/// The same sums in another order, so images agree to float rounding.
pub(crate) fn forward_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    own: OwnKernels,
) -> Tensor<B, D> {
    if own.flex {
        if let Some(y) = flex_linear(layer, &x) {
            return y;
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(y) = train_linear(layer, &x) {
            return y;
        }
    }
    #[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
    if own.wgpu {
        if let Some(y) = wgpu_linear(layer, &x) {
            return y;
        }
    }
    let dims = x.dims();
    if D <= 2 {
        return layer.forward(x);
    }
    // burn's linear multiplies a `[b, n, k]` input by the weight one sample at a time (one small
    // product each, and in training the weight's gradient built as a `[b, k, out]` stack, then
    // summed); as `[b n, k]` rows it is one product each way.
    let rows = dims[..D - 1].iter().product();
    let y = layer.forward(x.reshape([rows, dims[D - 1]]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
fn wgpu_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    use super::kernels::{
        from_primitive,
        wgpu::{linear, wgpu_tensor},
    };
    let (x, weight) = (wgpu_tensor(x)?, wgpu_tensor(&layer.weight.val())?);
    let bias = match &layer.bias {
        Some(bias) => Some(wgpu_tensor(&bias.val())?),
        None => None,
    };
    Some(from_primitive(linear(x, weight, bias)?))
}

fn flex_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    use super::kernels::{flex, from_primitive, primitive};
    let x = primitive::<B, FlexTensor, D>(x)?;
    let weight = primitive::<B, FlexTensor, 2>(&layer.weight.val())?;
    let bias = match &layer.bias {
        Some(bias) => Some(primitive::<B, FlexTensor, 1>(&bias.val())?),
        None => None,
    };
    Some(from_primitive(flex::linear(&x, &weight, bias.as_ref())?))
}

/// Training on burn-flex: one autodiff operation with its own backward
/// (`model::kernels::flex_train`).
#[cfg(not(target_arch = "wasm32"))]
fn train_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    use super::kernels::{flex_train, from_primitive, primitive};
    let x = primitive::<B, flex_train::TrainTensor, D>(x)?;
    let weight = primitive::<B, flex_train::TrainTensor, 2>(&layer.weight.val())?;
    let bias = primitive::<B, flex_train::TrainTensor, 1>(&layer.bias.as_ref()?.val())?;
    Some(from_primitive(flex_train::linear(&x, &weight, &bias)?))
}

/// A linear layer with the given weight init and a zero bias.
pub(crate) fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    weight_init: &Initializer,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: weight_init.init_with([d_in, d_out], Some(d_in), Some(d_out), device),
        bias: Some(Initializer::Zeros.init([d_out], device)),
    }
}

/// A linear layer with Xavier-uniform weights and zero bias (the paper's default init).
pub(crate) fn xavier_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Linear<B> {
    linear(
        d_in,
        d_out,
        &Initializer::XavierUniform { gain: 1.0 },
        device,
    )
}

/// A linear layer whose weight and bias start at exactly zero (adaLN-Zero, final layer).
pub(crate) fn zero_linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    linear(d_in, d_out, &Initializer::Zeros, device)
}
