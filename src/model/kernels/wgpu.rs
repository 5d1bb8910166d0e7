//! dit-web's own kernels for burn-wgpu (the page's WebGPU backend; natively, the `wgpu` feature),
//! where burn-wgpu's are slow on a software adapter: a matrix product that computes an 8 x 4
//! block of the output per invocation in registers (every Linear), attention that runs four query
//! rows per invocation with an online softmax (no score tensor), and adaLN's LayerNorm +
//! modulation in one pass. They read their operands four floats at a time and use no workgroup
//! memory or barriers.
//!
//! Why: on Chromium's SwiftShader adapter burn-wgpu's matmul (cubek's unit-tiled kernel, the one it
//! picks without autotune) ran at about 0.1-0.2 GFLOP/s and took 97 % of a sampler step; a
//! register-tiled kernel of this shape ran the model's shapes at 3.5-4.4 GFLOP/s in a raw-WGSL
//! probe on the same adapter (docs/browser.md, "Where a WebGPU step's time goes"). The kernels are plain
//! WGSL once compiled, so they run on any WebGPU adapter.
//!
//! The model calls them from `forward_linear`, `Attention::forward` and `norm_modulate`; tensors
//! of any other backend (burn-wgpu with fusion included), dtype or shape take burn's own path.

use burn::backend::wgpu::{CubeTensor, WgpuRuntime};
use burn::tensor::{backend::Backend, DType};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::reshape;
use cubecl::prelude::*;

use super::primitive;

/// The vector width: each tensor is read four floats at a time.
const BLOCK: usize = 4;
/// Output rows one invocation of the matmul computes (with 4 columns). A raw-WGSL probe on
/// SwiftShader: 8 rows ran the model's shapes 1.2-1.3x faster than 4.
const ROWS: usize = 8;
/// Invocations per workgroup along the output's columns and rows (64 in all; a raw-WGSL probe on
/// SwiftShader found 16x4, 8x8, 64x1 and 4x1 within a few percent of each other).
const WORKGROUP: (u32, u32) = (16, 4);
/// Query rows one invocation of the attention kernel computes, sharing each key's and value's
/// loads. On SwiftShader, `mnist` (196 tokens) at batch 4: attention 660 ms per step with 1 row,
/// 517 with 2, 358 with 4, 306 with 8; `mnist-cpu` (49 tokens) was no faster with 8 than with 4.
const QUERIES: usize = 4;

/// `out = lhs @ rhs (+ bias)` for `lhs: [m, k]`, `rhs: [k, n]`, `bias: [n]`, all contiguous,
/// `k` and `n` multiples of 4. Invocation (x, y) writes rows `rows * y ..` (up to `m`) at the 4
/// columns of vector x; each step of the loop over k reads 4 rows of rhs at those columns and one
/// vector of each lhs row.
#[cube(launch_unchecked)]
fn matmul_block_kernel<F: Float, N: Size>(
    lhs: &Tensor<Vector<F, N>>,
    rhs: &Tensor<Vector<F, N>>,
    bias: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    #[comptime] rows: usize,
    #[comptime] with_bias: bool,
    #[define(F)] _dtype: StorageType,
) {
    let m = out.shape(0);
    let k_vectors = lhs.shape(1) / 4;
    let n_vectors = out.shape(1) / 4;
    let col = ABSOLUTE_POS_X as usize;
    let row = ABSOLUTE_POS_Y as usize * rows;
    if col >= n_vectors || row >= m {
        terminate!();
    }
    // Rows past the end read the last row again (and are not written), so the loop has no branch.
    let last = m - 1;
    let mut starts = Array::<usize>::new(rows);
    let mut acc = Array::<Vector<F, N>>::new(rows);
    let mut init = Vector::<F, N>::new(F::new(0.0));
    if with_bias {
        init = bias[col];
    }
    #[unroll]
    for r in 0..rows {
        starts[r] = (row + r).min(last) * k_vectors;
        acc[r] = init;
    }
    for kv in 0..k_vectors {
        let b = kv * 4 * n_vectors + col;
        let b0 = rhs[b];
        let b1 = rhs[b + n_vectors];
        let b2 = rhs[b + 2 * n_vectors];
        let b3 = rhs[b + 3 * n_vectors];
        #[unroll]
        for r in 0..rows {
            let a = lhs[starts[r] + kv];
            acc[r] += b0 * Vector::new(a[0])
                + b1 * Vector::new(a[1])
                + b2 * Vector::new(a[2])
                + b3 * Vector::new(a[3]);
        }
    }
    let o = row * n_vectors + col;
    #[unroll]
    for r in 0..rows {
        if row + r < m {
            out[o + r * n_vectors] = acc[r];
        }
    }
}

/// A burn-wgpu f32 tensor (burn-wgpu's float primitive).
pub(crate) type WgpuTensor = CubeTensor<WgpuRuntime>;

/// The burn-wgpu f32 tensor behind `t`, or `None` when `B` is another backend (burn-flex, or
/// burn-wgpu with fusion) or the tensor is not f32.
pub(crate) fn wgpu_tensor<B: Backend, const D: usize>(
    t: &burn::Tensor<B, D>,
) -> Option<WgpuTensor> {
    primitive::<B, WgpuTensor, D>(t).filter(|tensor| tensor.dtype == DType::F32)
}

/// A new, uninitialised f32 tensor of `shape` on `like`'s device, for a kernel to write.
fn f32_output<const D: usize>(like: &WgpuTensor, shape: [usize; D]) -> WgpuTensor {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        DType::F32,
    )
}

fn dims3(t: &WgpuTensor) -> Option<[usize; 3]> {
    match t.meta.shape().as_slice() {
        &[a, b, c] => Some([a, b, c]),
        _ => None,
    }
}

/// A Linear layer, `x @ weight (+ bias)` over the last axis of `x: [.., k]`, with
/// [`matmul_block_kernel`], for `weight: [k, n]` and `bias: [n]` with `k` and `n` multiples of 4;
/// `None` for other shapes.
pub(crate) fn linear(
    x: WgpuTensor,
    weight: WgpuTensor,
    bias: Option<WgpuTensor>,
) -> Option<WgpuTensor> {
    let (&[k, n], Some(&x_k)) = (weight.meta.shape().as_slice(), x.meta.shape().last()) else {
        return None;
    };
    let rows = x.meta.num_elements() / k.max(1);
    let vectors = k.is_multiple_of(BLOCK) && n.is_multiple_of(BLOCK);
    let bias_fits = bias
        .as_ref()
        .is_none_or(|b| b.meta.shape().as_slice() == [n]);
    if !(vectors && bias_fits && x_k == k && rows > 0 && n > 0) {
        return None;
    }
    let mut out_shape = x.meta.shape().clone();
    let last = out_shape.num_dims() - 1;
    out_shape[last] = n;
    let lhs = into_contiguous(reshape(x, [rows, k].into()));
    let rhs = into_contiguous(weight);
    let out = f32_output(&lhs, [rows, n]);
    let (wx, wy) = WORKGROUP;
    let cubes = |units: usize, per: u32| units.div_ceil(per as usize) as u32;
    let count = CubeCount::Static(cubes(n / BLOCK, wx), cubes(rows.div_ceil(ROWS), wy), 1);
    let with_bias = bias.is_some();
    // Without a bias the kernel never reads its bias argument; rhs stands in.
    let bias = bias.map_or_else(|| rhs.clone(), into_contiguous);
    // Safety: for the shapes checked above every index the kernel reads or writes lies inside
    // its (contiguous) tensors.
    unsafe {
        matmul_block_kernel::launch_unchecked::<WgpuRuntime>(
            &lhs.client.clone(),
            count,
            CubeDim::new_2d(wx, wy),
            BLOCK,
            lhs.into_tensor_arg(),
            rhs.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            ROWS,
            with_bias,
            DType::F32.into(),
        )
    };
    Some(reshape(out, out_shape))
}

/// Multi-head attention, softmax(q k^T / sqrt(d_head)) v, for `q: [b, n, heads * d_head]` and
/// `k, v: [b, m, heads * d_head]` in that layout (heads side by side in each token, as the
/// projections write them; no head split or merge copies). Invocation (x, y) computes `queries`
/// query rows from `queries * x` (up to `n`) of head y % heads of image y / heads: one pass over the
/// keys, each key and value read once for all of them, with a running maximum per row, so the
/// softmax's sum and the weighted values are rescaled whenever a larger score appears.
#[cube(launch_unchecked)]
fn attention_rows_kernel<F: Float, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    #[comptime] head_vectors: usize,
    #[comptime] queries: usize,
    #[define(F)] _dtype: StorageType,
) {
    let n = q.shape(1);
    let m = k.shape(1);
    let d_vectors = q.shape(2) / 4;
    let heads = d_vectors / head_vectors;
    let row = ABSOLUTE_POS_X as usize * queries;
    let image = ABSOLUTE_POS_Y as usize / heads;
    let head = ABSOLUTE_POS_Y as usize % heads;
    if row >= n || image >= q.shape(0) {
        terminate!();
    }
    let scale = F::new(comptime!(1.0 / ((head_vectors * 4) as f32).sqrt()));
    let mut query = Array::<Vector<F, N>>::new(queries * head_vectors);
    let mut acc = Array::<Vector<F, N>>::new(queries * head_vectors);
    let mut max = Array::<F>::new(queries);
    let mut sum = Array::<F>::new(queries);
    #[unroll]
    for r in 0..queries {
        // Rows past the end read the last row again (and are not written).
        let q_at = (image * n + (row + r).min(n - 1)) * d_vectors + head * head_vectors;
        #[unroll]
        for d in 0..head_vectors {
            query[r * head_vectors + d] = q[q_at + d] * Vector::new(scale);
            acc[r * head_vectors + d] = Vector::new(F::new(0.0));
        }
        max[r] = F::new(-3.0e38);
        sum[r] = F::new(0.0);
    }
    for j in 0..m {
        let kv_at = (image * m + j) * d_vectors + head * head_vectors;
        #[unroll]
        for r in 0..queries {
            let mut dot = Vector::<F, N>::new(F::new(0.0));
            #[unroll]
            for d in 0..head_vectors {
                dot += query[r * head_vectors + d] * k[kv_at + d];
            }
            let score = dot[0] + dot[1] + dot[2] + dot[3];
            let new_max = F::max(max[r], score);
            let rescale = F::exp(max[r] - new_max);
            let weight = F::exp(score - new_max);
            sum[r] = sum[r] * rescale + weight;
            max[r] = new_max;
            #[unroll]
            for d in 0..head_vectors {
                acc[r * head_vectors + d] = acc[r * head_vectors + d] * Vector::new(rescale)
                    + v[kv_at + d] * Vector::new(weight);
            }
        }
    }
    #[unroll]
    for r in 0..queries {
        if row + r < n {
            let q_at = (image * n + row + r) * d_vectors + head * head_vectors;
            let inv = Vector::new(F::new(1.0) / sum[r]);
            #[unroll]
            for d in 0..head_vectors {
                out[q_at + d] = acc[r * head_vectors + d] * inv;
            }
        }
    }
}

/// [`attention_rows_kernel`] for `q: [b, n, d]` and `k, v: [b, m, d]` with `d_head = d / heads`
/// a multiple of 4; `None` for other shapes.
pub(crate) fn attention_rows(
    q: WgpuTensor,
    k: WgpuTensor,
    v: WgpuTensor,
    heads: usize,
) -> Option<WgpuTensor> {
    let ([b, n, d], [kb, m, kd], [vb, vm, vd]) = (dims3(&q)?, dims3(&k)?, dims3(&v)?);
    let same = kb == b && vb == b && kd == d && vd == d && vm == m && m > 0 && n > 0;
    let heads_fit = heads > 0 && d.is_multiple_of(heads) && (d / heads).is_multiple_of(BLOCK);
    if !(same && heads_fit) {
        return None;
    }
    let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
    let out = f32_output(&q, [b, n, d]);
    let rows = 64u32;
    let count = CubeCount::Static(
        (n.div_ceil(QUERIES) as u32).div_ceil(rows),
        (b * heads) as u32,
        1,
    );
    // Safety: for the shapes checked above every index lies inside the (contiguous) tensors.
    unsafe {
        attention_rows_kernel::launch_unchecked::<WgpuRuntime>(
            &q.client.clone(),
            count,
            CubeDim::new_1d(rows),
            BLOCK,
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            d / heads / BLOCK,
            QUERIES,
            DType::F32.into(),
        )
    };
    Some(out)
}

/// adaLN's input, `layer_norm(x) * (1 + scale) + shift` with the LayerNorm of `model::norm`
/// (no affine, eps 1e-6), for `x: [b, n, d]` and per-image `shift, scale: [b, d]`, `d` a
/// multiple of 4. Invocation x handles token x (of all images' tokens): the row's mean, then its
/// variance around that mean (two passes, as burn's `var_mean_bias`), then the modulated row.
#[cube(launch_unchecked)]
fn norm_modulate_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    shift: &Tensor<Vector<F, N>>,
    scale: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    #[define(F)] _dtype: StorageType,
) {
    let n = x.shape(1);
    let d_vectors = x.shape(2) / 4;
    let row = ABSOLUTE_POS;
    if row >= x.shape(0) * n {
        terminate!();
    }
    let at = row * d_vectors;
    let per_image = (row / n) * d_vectors;
    let width = F::cast_from(d_vectors * 4);
    let mut sum = Vector::<F, N>::new(F::new(0.0));
    for i in 0..d_vectors {
        sum += x[at + i];
    }
    let mean = Vector::new((sum[0] + sum[1] + sum[2] + sum[3]) / width);
    let mut squares = Vector::<F, N>::new(F::new(0.0));
    for i in 0..d_vectors {
        let centred = x[at + i] - mean;
        squares += centred * centred;
    }
    let var = (squares[0] + squares[1] + squares[2] + squares[3]) / width;
    let std = Vector::new(F::sqrt(var + F::new(1e-6)));
    let one = Vector::new(F::new(1.0));
    for i in 0..d_vectors {
        let normed = (x[at + i] - mean) / std;
        out[at + i] = normed * (one + scale[per_image + i]) + shift[per_image + i];
    }
}

/// [`norm_modulate_kernel`] for `x: [b, n, d]`, `shift, scale: [b, d]`, `d` a multiple of 4;
/// `None` for other shapes.
pub(crate) fn norm_modulate(
    x: WgpuTensor,
    shift: WgpuTensor,
    scale: WgpuTensor,
) -> Option<WgpuTensor> {
    let [b, n, d] = dims3(&x)?;
    let per_image = [shift.meta.shape().as_slice(), scale.meta.shape().as_slice()];
    if per_image != [[b, d].as_slice(); 2] || !d.is_multiple_of(BLOCK) || b * n == 0 {
        return None;
    }
    let (x, shift, scale) = (
        into_contiguous(x),
        into_contiguous(shift),
        into_contiguous(scale),
    );
    let out = f32_output(&x, [b, n, d]);
    let per_group = 64u32;
    let count = CubeCount::Static(((b * n) as u32).div_ceil(per_group), 1, 1);
    // Safety: for the shapes checked above every index lies inside the (contiguous) tensors.
    unsafe {
        norm_modulate_kernel::launch_unchecked::<WgpuRuntime>(
            &x.client.clone(),
            count,
            CubeDim::new_1d(per_group),
            BLOCK,
            x.into_tensor_arg(),
            shift.into_tensor_arg(),
            scale.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            DType::F32.into(),
        )
    };
    Some(out)
}
