use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Tensor};

use super::embed::xavier_linear;

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
        }
    }

    /// `x: [B, N, d]`, `context: [B, M, d]` (or `None` for self-attention) -> `[B, N, d]`.
    pub fn forward(&self, x: Tensor<B, 3>, context: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let (q, k, v) = match (&self.qkv, context) {
            (Some(qkv), None) => {
                let mut parts = qkv.forward(x).chunk(3, 2);
                let v = parts.pop().expect("three chunks");
                let k = parts.pop().expect("three chunks");
                (parts.pop().expect("three chunks"), k, v)
            }
            (_, context) => {
                let context = context.unwrap_or_else(|| x.clone());
                let proj = |layer: &Option<Linear<B>>, t: Tensor<B, 3>| {
                    layer
                        .as_ref()
                        .expect("separate q/k/v projections (cross-attention never fuses)")
                        .forward(t)
                };
                (
                    proj(&self.q, x),
                    proj(&self.k, context.clone()),
                    proj(&self.v, context),
                )
            }
        };
        let [b, n, d] = q.dims();
        let heads = |t: Tensor<B, 3>| {
            let m = t.dims()[1];
            t.reshape([b, m, self.num_heads, d / self.num_heads])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(q), heads(k), heads(v));
        // softmax(q k^T / sqrt(d_head)) v, per head.
        let scale = 1.0 / ((d / self.num_heads) as f64).sqrt();
        let weights = softmax(q.matmul(k.swap_dims(2, 3)) * scale, 3);
        let mixed = weights.matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        self.out.forward(mixed)
    }
}
