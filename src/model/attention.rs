use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Tensor};

use super::kernels::OwnKernels;
use super::linear::{forward_linear, xavier_linear};

/// Multi-head attention. Self-attention reads queries, keys and values from the same tokens;
/// cross-attention (the `cross-attn` block) reads keys and values from a context sequence.
///
/// The projections come in one of two layouts with identical maths: a fused `qkv` Linear(d, 3d)
/// (the paper's, output split as [q | k | v]) or separate `q`, `k`, `v` (the seed checkpoints').
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub qkv: Option<Linear<B>>,
    pub q: Option<Linear<B>>,
    pub k: Option<Linear<B>>,
    pub v: Option<Linear<B>>,
    pub out: Linear<B>,
    num_heads: usize,
    #[module(skip)]
    pub(super) kernels: OwnKernels,
}

impl<B: Backend> Attention<B> {
    pub fn new(d: usize, num_heads: usize, fused_qkv: bool, device: &B::Device) -> Self {
        let separate = || Some(xavier_linear(d, d, device));
        Self {
            qkv: fused_qkv.then(|| xavier_linear(d, 3 * d, device)),
            q: if fused_qkv { None } else { separate() },
            k: if fused_qkv { None } else { separate() },
            v: if fused_qkv { None } else { separate() },
            out: xavier_linear(d, d, device),
            num_heads,
            kernels: OwnKernels::default(),
        }
    }

    /// `x: [B, N, d]`, `context: [B, M, d]` (or `None` for self-attention) -> `[B, N, d]`.
    pub fn forward(&self, x: Tensor<B, 3>, context: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let own = self.kernels;
        let (q, k, v) = match (&self.qkv, context) {
            (Some(qkv), None) => {
                let mut parts = forward_linear(qkv, x, own).chunk(3, 2);
                let v = parts.pop().expect("three chunks");
                let k = parts.pop().expect("three chunks");
                (parts.pop().expect("three chunks"), k, v)
            }
            (_, context) => {
                let context = context.unwrap_or_else(|| x.clone());
                let proj = |layer: &Option<Linear<B>>, t: Tensor<B, 3>| {
                    layer
                        .as_ref()
                        .map(|layer| forward_linear(layer, t, own))
                        .expect("separate q/k/v projections (cross-attention never fuses)")
                };
                (
                    proj(&self.q, x),
                    proj(&self.k, context.clone()),
                    proj(&self.v, context),
                )
            }
        };
        let mixed = self.mix(q, k, v);
        forward_linear(&self.out, mixed, own)
    }

    /// softmax(q k^T / sqrt(d_head)) v per head, `[B, N, d]`: on the own kernels where the
    /// layer's setting and the backend allow, else burn's attention in slices.
    fn mix(&self, q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>) -> Tensor<B, 3> {
        let (own, heads) = (self.kernels, self.num_heads);
        if own.flex {
            if let Some(mixed) = flex_attention(&q, &k, &v, heads) {
                return mixed;
            }
            #[cfg(not(target_arch = "wasm32"))]
            if let Some(mixed) = train_attention(&q, &k, &v, heads) {
                return mixed;
            }
        }
        #[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
        if own.wgpu {
            if let Some(mixed) = wgpu_attention(&q, &k, &v, heads) {
                return mixed;
            }
        }
        let split = |t| split_heads(t, heads);
        let (q, k, v) = (split(q), split(k), split(v));
        merge_heads(sliced_attention(q, k, v, MAX_SCORE_BYTES))
    }
}

/// burn-flex tensors go to the attention of `model::kernels::flex` (two `gemm` calls per sample
/// and head on the heads where they lie, no head copies: burn-flex copied `[b, n, heads, d_head]
/// -> [b, heads, n, d_head]` element by element, 8 % of the page's CPU step). `None` for other
/// backends and layouts.
fn flex_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{flex, from_primitive, primitive};
    let [q, k, v] = [q, k, v].map(primitive::<B, burn_flex::FlexTensor, 3>);
    Some(from_primitive(flex::attention(&q?, &k?, &v?, heads)?))
}

/// Training on burn-flex: attention as one autodiff operation with its own backward
/// (`model::kernels::flex_train`), no score tensors besides the probabilities it keeps.
#[cfg(not(target_arch = "wasm32"))]
fn train_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{flex_train, from_primitive, primitive};
    let [q, k, v] = [q, k, v].map(primitive::<B, flex_train::TrainTensor, 3>);
    Some(from_primitive(flex_train::attention(&q?, &k?, &v?, heads)?))
}

/// burn-wgpu tensors go to the fused attention of `model::kernels` (four query rows per invocation,
/// heads read in place): burn-wgpu's matmul-softmax-matmul was a third of a step on Chromium's
/// software adapter once the Linear layers were fast. `None` for other backends and shapes.
#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
fn wgpu_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    use super::kernels::{
        from_primitive,
        wgpu::{attention_rows, wgpu_tensor},
    };
    let (q, k, v) = (wgpu_tensor(q)?, wgpu_tensor(k)?, wgpu_tensor(v)?);
    Some(from_primitive(attention_rows(q, k, v, heads)?))
}

/// `[b, m, heads * d_head] -> [b, heads, m, d_head]`.
fn split_heads<B: Backend>(t: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, m, d] = t.dims();
    t.reshape([b, m, heads, d / heads]).swap_dims(1, 2)
}

/// `[b, heads, n, d_head] -> [b, n, heads * d_head]`, the inverse of [`split_heads`].
fn merge_heads<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, heads, n, d_head] = t.dims();
    t.swap_dims(1, 2).reshape([b, n, heads * d_head])
}

/// Largest attention-score tensor `[b, heads, n, m]` (f32) one attention call may build, in
/// bytes: well under 2^31, where 32-bit indexing in GPU kernels breaks. CelebA at batch 112
/// would need 3.8 GB in one piece.
pub const MAX_SCORE_BYTES: usize = 1 << 30;

/// softmax(q k^T / sqrt(d_head)) v for `[b, heads, n, d_head]` inputs, over slices of the batch
/// whose score tensors stay within `max_score_bytes`. Each slice goes through burn's attention
/// op: fused kernels where the backend has them (burn-flex, CUDA inference), the plain
/// matmul-softmax-matmul elsewhere (and always under autodiff).
fn sliced_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    max_score_bytes: usize,
) -> Tensor<B, 4> {
    let [b, heads, n, d_head] = q.dims();
    let m = k.dims()[2];
    let per_image = heads * n * m * std::mem::size_of::<f32>();
    let slice = (max_score_bytes / per_image).max(1);
    // In the browser the scale is given explicitly, which is the same number but keeps burn-wgpu
    // on matmul-softmax-matmul: its flash-attention kernel declares a `u8` mask, a type WGSL does
    // not have, so Chromium rejects the shader (and autotune would try it).
    let options = AttentionModuleOptions {
        scale: cfg!(target_arch = "wasm32").then(|| 1.0 / (d_head as f64).sqrt()),
        ..Default::default()
    };
    let attend = |q, k, v| attention(q, k, v, None, None, options);
    if b <= slice {
        return attend(q, k, v);
    }
    let parts = (0..b)
        .step_by(slice)
        .map(|start| {
            let range = start..(start + slice).min(b);
            attend(
                q.clone().slice(range.clone()),
                k.clone().slice(range.clone()),
                v.clone().slice(range),
            )
        })
        .collect();
    Tensor::cat(parts, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    #[test]
    fn merging_heads_undoes_splitting_them() {
        let device = Default::default();
        let x = Tensor::<NdArray, 3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
        let heads = split_heads(x.clone(), 3);
        assert_eq!(heads.dims(), [2, 3, 5, 4]);
        // Head 1 of token 2 of sample 1 holds features 4..8 of that token.
        heads
            .clone()
            .slice([1..2, 1..2, 2..3, 0..4])
            .reshape([4])
            .to_data()
            .assert_eq(
                &x.clone().slice([1..2, 2..3, 4..8]).reshape([4]).to_data(),
                true,
            );
        merge_heads(heads).to_data().assert_eq(&x.to_data(), true);
    }

    #[test]
    fn slices_of_the_batch_give_the_whole_batch_result() {
        let device = Default::default();
        let t =
            || Tensor::<NdArray, 4>::random([5, 2, 6, 4], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (t(), t(), t());
        let whole = sliced_attention(q.clone(), k.clone(), v.clone(), usize::MAX);
        // 2 * 6 * 6 * 4 bytes per image: a limit of two images gives slices 2, 2, 1.
        let sliced = sliced_attention(q.clone(), k.clone(), v.clone(), 2 * 2 * 6 * 6 * 4);
        let diff: f32 = (whole.clone() - sliced).abs().max().into_scalar();
        assert!(diff < 1e-6, "sliced attention differs by {diff}");
        // And both are softmax(q k^T / sqrt(d)) v.
        let plain =
            burn::tensor::activation::softmax(q.matmul(k.swap_dims(2, 3)) * 0.5, 3).matmul(v);
        let diff: f32 = (whole - plain).abs().max().into_scalar();
        assert!(
            diff < 1e-5,
            "attention op differs from the formula by {diff}"
        );
    }
}
