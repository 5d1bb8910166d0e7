use burn::tensor::{backend::Backend, Tensor};

/// LayerNorm over the last axis without a learned affine (the DiT's `elementwise_affine=False`,
/// eps 1e-6); burn's `LayerNorm` always carries a gamma, so this is its own function.
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const EPS: f64 = 1e-6;
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + EPS).sqrt()
}

/// adaLN's modulation: `x * (1 + scale) + shift`, with per-sample `shift`/`scale` of shape
/// `[B, d]` broadcast over the tokens of `x: [B, N, d]`.
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
) -> Tensor<B, 3> {
    x * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim::<3>(1)
}
