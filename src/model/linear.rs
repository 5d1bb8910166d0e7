use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

/// `x W + b` over the last dimension of `x`: every Linear layer of the model runs through here.
/// In the browser, burn-wgpu tensors go to the register-tiled kernel of `web::kernels` (burn-wgpu's
/// own matmul is about 40 times slower on Chromium's software adapter); any other backend, and
/// any shape that kernel does not take, runs burn's `Linear::forward`. The same sums either way,
/// in another order, so images agree to float rounding.
pub(crate) fn forward_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(target_arch = "wasm32")]
    if let Some(y) = browser_linear(layer, &x) {
        return y;
    }
    layer.forward(x)
}

#[cfg(target_arch = "wasm32")]
fn browser_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    use crate::web::kernels::{from_wgpu, matmul_block, wgpu_tensor};
    let dims = x.dims();
    let [k, n] = layer.weight.dims();
    let rows = dims[..D - 1].iter().product();
    let lhs = wgpu_tensor(&x.clone().reshape([1, rows, k]))?;
    let rhs = wgpu_tensor(&layer.weight.val().reshape([1, k, n]))?;
    let bias = match &layer.bias {
        Some(bias) => Some(wgpu_tensor(&bias.val())?),
        None => None,
    };
    let mut shape = dims;
    shape[D - 1] = n;
    Some(from_wgpu::<B, 3>(matmul_block(lhs, rhs, bias)?).reshape(shape))
}
