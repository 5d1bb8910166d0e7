//! Training on burn-flex (`Autodiff<Flex>`, the trainer's CPU backend): the model's Linear layers,
//! attention, adaLN's LayerNorm + modulation and the exact GELU each as one autodiff operation with
//! its own backward, computed with the `gemm` calls and passes of [`super::flex`].
//!
//! burn's autodiff records each of them as a chain of generic operations, each with its own
//! intermediate tensors and backward: attention is a matmul, softmax's passes and a matmul over
//! `[b, heads, n, m]` score tensors; LayerNorm + modulation eleven passes; GELU's `erf` seven.
//! Here attention keeps only the softmax probabilities, LayerNorm + modulation one mean and
//! inverse deviation per token, GELU its input, and each backward is one pass (or one `gemm` per
//! operand). Work runs per sample on rayon's threads where samples are independent.

use burn::tensor::backend::BackendTypes;
use burn::tensor::DType;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::flex::{self, contiguous, matmul, norm_modulate_sample, tensor, Heads, Matrix, Read};
use super::flex_math::{dot, erf, exp, sum_by, widest, Gelu, Pass};

/// The trainer's CPU training backend.
pub(crate) type Train = burn_autodiff::Autodiff<Flex>;
/// [`Train`]'s float tensor: a burn-flex tensor and its node in the autodiff graph.
pub(crate) type TrainTensor = <Train as BackendTypes>::FloatTensorPrimitive;

/// `t` as a contiguous f32 tensor (shared when it already is one); `None` for other dtypes.
fn dense(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| t.to_contiguous())
}

/// The values of a tensor [`dense`] returned.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// Records `output` as the result of `op` on `parents`, with `state` for its backward when any
/// parent needs a gradient.
fn record<const N: usize, Op: Backward<Flex, N>>(
    op: Op,
    parents: [&TrainTensor; N],
    state: Op::State,
    output: FlexTensor,
) -> TrainTensor {
    match op
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// `x @ weight + bias` over the last axis of `x` (`weight: [k, n]`).
pub(crate) fn linear(
    x: &TrainTensor,
    weight: &TrainTensor,
    bias: &TrainTensor,
) -> Option<TrainTensor> {
    let (xp, wp) = (dense(&x.primitive)?, dense(&weight.primitive)?);
    let out = flex::linear(&xp, &wp, Some(&dense(&bias.primitive)?))?;
    Some(record(LinearBackward, [x, weight, bias], (xp, wp), out))
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = dense(&grads.consume::<Flex>(&ops.node)).expect("f32 gradient");
        let (x, w) = ops.state;
        let (x_dims, xs) = contiguous(&x).expect("dense");
        let (&[k, n], ws) = contiguous(&w).expect("dense") else {
            unreachable!("a [k, n] weight, checked in the forward pass")
        };
        let (dys, m) = (values(&dy), xs.len() / k);
        if let Some(node) = node_x {
            // dx = dy w^T
            let mut dx = vec![0.0; m * k];
            let (dy_m, w_m) = (Matrix::whole(dys, m, n), Matrix::whole(ws, k, n));
            matmul(
                &mut dx,
                k,
                (dy_m, Read::AsIs),
                (w_m, Read::Transposed),
                1.0,
                false,
            );
            grads.register::<Flex>(node.id, tensor(dx, x_dims.to_vec()));
        }
        if let Some(node) = node_w {
            // dw = x^T dy, over every row of every sample at once.
            let mut dw = vec![0.0; k * n];
            let (x_m, dy_m) = (Matrix::whole(xs, m, k), Matrix::whole(dys, m, n));
            matmul(
                &mut dw,
                n,
                (x_m, Read::Transposed),
                (dy_m, Read::AsIs),
                1.0,
                false,
            );
            grads.register::<Flex>(node.id, tensor(dw, vec![k, n]));
        }
        if let Some(node) = node_b {
            let mut db = vec![0.0; n];
            for row in dys.chunks_exact(n) {
                for (acc, g) in db.iter_mut().zip(row) {
                    *acc += g;
                }
            }
            grads.register::<Flex>(node.id, tensor(db, vec![n]));
        }
    }
}

/// Multi-head attention as [`flex::attention`], for `q: [b, n, d]`, `k, v: [b, m, d]`.
pub(crate) fn attention(
    q: &TrainTensor,
    k: &TrainTensor,
    v: &TrainTensor,
    heads: usize,
) -> Option<TrainTensor> {
    let attn = Heads::of(&q.primitive, &k.primitive, &v.primitive, heads)?;
    let [b, n, d] = attn.q.dims;
    let per_sample = heads * n * attn.m;
    let mut out = vec![0.0; b * n * d];
    let mut probabilities = vec![0.0; b * per_sample];
    out.par_chunks_mut(n * d)
        .zip(probabilities.par_chunks_mut(per_sample))
        .enumerate()
        .for_each(|(s, (out, p))| attn.forward_sample(s, out, p, n * attn.m));
    let state = AttentionState {
        qkv: [&q.primitive, &k.primitive, &v.primitive].map(Clone::clone),
        heads,
        probabilities,
    };
    Some(record(
        AttentionBackward,
        [q, k, v],
        state,
        tensor(out, vec![b, n, d]),
    ))
}

#[derive(Clone, Debug)]
struct AttentionState {
    qkv: [FlexTensor; 3],
    heads: usize,
    /// softmax(q k^T / sqrt(d_head)) per sample and head, `[b, heads, n, m]`.
    probabilities: Vec<f32>,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = dense(&grads.consume::<Flex>(&ops.node)).expect("f32 gradient");
        let state = ops.state;
        let [q, k, v] = &state.qkv;
        let attn = Heads::of(q, k, v, state.heads).expect("checked in the forward pass");
        let ([b, n, d], m) = (attn.q.dims, attn.m);
        let douts = values(&dout);
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; b * n * d],
            vec![0.0; b * m * d],
            vec![0.0; b * m * d],
        );
        dq.par_chunks_mut(n * d)
            .zip(dk.par_chunks_mut(m * d))
            .zip(dv.par_chunks_mut(m * d))
            .zip(state.probabilities.par_chunks(state.heads * n * m))
            .enumerate()
            .for_each(|(s, (((dq, dk), dv), p))| {
                attention_backward_sample(&attn, s, douts, [dq, dk, dv], p)
            });
        for (node, (g, rows)) in ops.parents.into_iter().zip([(dq, n), (dk, m), (dv, m)]) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(g, vec![b, rows, d]));
            }
        }
    }
}

/// A `[b, d]` tensor's values in order, whatever its strides (`shift` and `scale` are column
/// ranges of one adaLN output).
fn per_sample(t: &FlexTensor) -> Option<(usize, usize, Vec<f32>)> {
    let t = dense(t)?;
    let (&[b, d], values) = contiguous(&t)? else {
        return None;
    };
    Some((b, d, values.to_vec()))
}

/// `layer_norm(x) * (1 + scale) + shift` for `x: [b, n, d]` and per-sample `shift, scale: [b, d]`.
pub(crate) fn norm_modulate(
    x: &TrainTensor,
    shift: &TrainTensor,
    scale: &TrainTensor,
) -> Option<TrainTensor> {
    let xp = dense(&x.primitive)?;
    let (&[b, n, d], xs) = contiguous(&xp)? else {
        return None;
    };
    let (shift_v, scale_v) = (per_sample(&shift.primitive)?, per_sample(&scale.primitive)?);
    if (shift_v.0, shift_v.1) != (b, d) || (scale_v.0, scale_v.1) != (b, d) || d == 0 {
        return None;
    }
    let (shifts, scales) = (shift_v.2, scale_v.2);
    let mut out = vec![0.0; b * n * d];
    // Per token: mean and 1 / sqrt(var + eps).
    let mut stats = vec![(0.0f32, 0.0f32); b * n];
    out.par_chunks_mut(n * d)
        .zip(stats.par_chunks_mut(n))
        .zip(xs.par_chunks(n * d))
        .enumerate()
        .for_each(|(s, ((out, stats), xs))| {
            norm_modulate_sample(xs, &shifts[s * d..][..d], &scales[s * d..][..d], out, stats)
        });
    let state = NormState {
        x: xp,
        scales,
        stats,
    };
    Some(record(
        NormModulateBackward,
        [x, shift, scale],
        state,
        tensor(out, vec![b, n, d]),
    ))
}

#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    /// `scale`, `[b, d]`.
    scales: Vec<f32>,
    /// Per token: mean and 1 / sqrt(var + eps).
    stats: Vec<(f32, f32)>,
}

#[derive(Debug)]
struct NormModulateBackward;

impl Backward<Flex, 3> for NormModulateBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(&grads.consume::<Flex>(&ops.node)).expect("f32 gradient");
        let NormState { x, scales, stats } = ops.state;
        let (&[b, n, d], xs) = contiguous(&x).expect("dense") else {
            unreachable!("checked in the forward pass")
        };
        let dys = values(&dy);
        let mut dx = vec![0.0; b * n * d];
        let (mut dshift, mut dscale) = (vec![0.0; b * d], vec![0.0; b * d]);
        dx.par_chunks_mut(n * d)
            .zip(dshift.par_chunks_mut(d))
            .zip(dscale.par_chunks_mut(d))
            .enumerate()
            .for_each(|(s, ((dx, dshift), dscale))| {
                let (tokens, scale) = (s * n * d..(s + 1) * n * d, &scales[s * d..][..d]);
                let grads = [dx, dshift, dscale];
                norm_backward_sample(
                    &xs[tokens.clone()],
                    &dys[tokens],
                    scale,
                    &stats[s * n..][..n],
                    grads,
                )
            });
        let [node_x, node_shift, node_scale] = ops.parents;
        for (node, g, shape) in [
            (node_x, dx, vec![b, n, d]),
            (node_shift, dshift, vec![b, d]),
            (node_scale, dscale, vec![b, d]),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(g, shape));
            }
        }
    }
}

/// Elements per rayon task of the element-wise passes.
const CHUNK: usize = 1 << 14;

/// The exact GELU, `x Phi(x)`.
pub(crate) fn gelu_exact(x: &TrainTensor) -> Option<TrainTensor> {
    let xp = dense(&x.primitive)?;
    let mut out = values(&xp).to_vec();
    out.par_chunks_mut(CHUNK).for_each(gelu_forward);
    let dims = xp.layout().shape().to_vec();
    Some(record(GeluBackward, [x], xp, tensor(out, dims)))
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(&grads.consume::<Flex>(&ops.node)).expect("f32 gradient");
        let x = ops.state;
        let [Some(node)] = ops.parents else {
            return;
        };
        let mut dx = values(&dy).to_vec();
        dx.par_chunks_mut(CHUNK)
            .zip(values(&x).par_chunks(CHUNK))
            .for_each(|(g, x)| gelu_backward(g, x));
        let dims = x.layout().shape().to_vec();
        grads.register::<Flex>(node.id, tensor(dx, dims));
    }
}

#[inline(never)]
fn gelu_forward(values: &mut [f32]) {
    widest(Gelu(values))
}

#[inline(never)]
fn gelu_backward(grad: &mut [f32], x: &[f32]) {
    widest(GeluGradient { grad, x })
}

/// `grad *= d/dx x Phi(x) = Phi(x) + x phi(x)`, `phi(x) = exp(-x^2 / 2) / sqrt(2 pi)`.
struct GeluGradient<'a> {
    grad: &'a mut [f32],
    x: &'a [f32],
}

impl Pass for GeluGradient<'_> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (g, &x) in self.grad.iter_mut().zip(self.x) {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            *g *= cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x);
        }
    }
}

/// Sample `s`'s gradients of `q`, `k` and `v` (`[dq, dk, dv]`, its rows of each) from the output's
/// gradient `douts` and its probabilities `p` (`[heads, n, m]`).
#[inline(never)]
fn attention_backward_sample(
    attn: &Heads,
    s: usize,
    douts: &[f32],
    [dq, dk, dv]: [&mut [f32]; 3],
    p: &[f32],
) {
    let ([_, n, d], m, dh) = (attn.q.dims, attn.m, attn.d_head);
    let mut ds = vec![0.0; n * m];
    for h in 0..attn.heads {
        let from = h * dh;
        let p = Matrix::whole(&p[h * n * m..], n, m);
        let d_o = Matrix {
            data: douts,
            offset: s * n * d + from,
            rows: n,
            cols: dh,
            stride: d,
        };
        // dv = p^T do
        matmul(
            &mut dv[from..],
            d,
            (p, Read::Transposed),
            (d_o, Read::AsIs),
            1.0,
            false,
        );
        // dp = do v^T, then ds = p * (dp - rowsum(p * dp)): softmax's backward.
        let v_h = attn.v.columns(s, from, dh);
        matmul(
            &mut ds,
            m,
            (d_o, Read::AsIs),
            (v_h, Read::Transposed),
            1.0,
            false,
        );
        for (ds, p) in ds.chunks_exact_mut(m).zip(p.data[..n * m].chunks_exact(m)) {
            let dot = dot(ds, p);
            for (g, p) in ds.iter_mut().zip(p) {
                *g = p * (*g - dot);
            }
            // A row of ds sums to zero in exact arithmetic (softmax ignores a constant added to
            // its scores); taking the rounding's sum out keeps the keys' bias gradient at zero
            // rather than at noise the size of the row's values.
            let mean = sum_by(ds, |v| v) / m as f32;
            ds.iter_mut().for_each(|g| *g -= mean);
        }
        let ds_m = Matrix::whole(&ds, n, m);
        // dq = scale ds k, dk = scale ds^T q
        let (k_h, q_h) = (attn.k.columns(s, from, dh), attn.q.columns(s, from, dh));
        matmul(
            &mut dq[from..],
            d,
            (ds_m, Read::AsIs),
            (k_h, Read::AsIs),
            attn.scale,
            false,
        );
        matmul(
            &mut dk[from..],
            d,
            (ds_m, Read::Transposed),
            (q_h, Read::AsIs),
            attn.scale,
            false,
        );
    }
}

/// One sample's gradients `[dx, dshift, dscale]` of LayerNorm + modulation from its rows `xs`,
/// their gradient `dys`, its `scale` and each token's `stats`.
#[inline(never)]
fn norm_backward_sample(
    xs: &[f32],
    dys: &[f32],
    scale: &[f32],
    stats: &[(f32, f32)],
    [dx, dshift, dscale]: [&mut [f32]; 3],
) {
    let d = scale.len();
    let gain: Vec<f32> = scale.iter().map(|c| 1.0 + c).collect();
    let (mut g, mut xhat) = (vec![0.0; d], vec![0.0; d]);
    let rows = xs.chunks_exact(d).zip(dys.chunks_exact(d));
    for (((row, dy), dx), &(mean, inv_std)) in rows.zip(dx.chunks_exact_mut(d)).zip(stats) {
        // g = dy (1 + scale); dx = inv_std (g - mean(g) - xhat mean(g xhat)).
        for j in 0..d {
            xhat[j] = (row[j] - mean) * inv_std;
            g[j] = dy[j] * gain[j];
            dshift[j] += dy[j];
            dscale[j] += dy[j] * xhat[j];
        }
        let g_mean = sum_by(&g, |v| v) / d as f32;
        let gx_mean = dot(&g, &xhat) / d as f32;
        for j in 0..d {
            dx[j] = inv_std * (g[j] - g_mean - xhat[j] * gx_mean);
        }
    }
}
