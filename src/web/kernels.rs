//! Two kernels for burn-wgpu in the browser, where its own versions are slow on a software
//! adapter: a matrix product that computes a 4 x 4 block of the output per invocation in
//! registers (every Linear), and attention that runs one query row per invocation with an online
//! softmax (no score tensor). Both read their operands four floats at a time and use no workgroup
//! memory or barriers.
//!
//! Why: on Chromium's SwiftShader adapter burn-wgpu's matmul (cubek's unit-tiled kernel, the one it
//! picks without autotune) ran at about 0.1-0.2 GFLOP/s and took 97 % of a sampler step; a
//! register-tiled kernel of this shape ran the model's shapes at 3.5-4.4 GFLOP/s in a raw-WGSL
//! probe on the same adapter (README, "Where a WebGPU step's time goes"). The kernels are plain
//! WGSL once compiled, so they run on any WebGPU adapter.
//!
//! The model calls them through [`crate::model`]'s `forward_linear` and its attention; tensors of
//! any other backend, dtype or shape take burn's own path.

use burn::backend::wgpu::{CubeTensor, WgpuRuntime};
use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::*;
use std::any::Any;

/// Rows and columns of the output block one invocation computes; also the vector width.
const BLOCK: usize = 4;
/// Invocations per workgroup along the output's columns and rows (64 in all; a raw-WGSL probe on
/// SwiftShader found 16x4, 8x8, 64x1 and 4x1 within a few percent of each other).
const WORKGROUP: (u32, u32) = (16, 4);

/// `out[z] = lhs[z] @ rhs[z] (+ bias)` for `lhs: [batch, m, k]`, `rhs: [batch or 1, k, n]`,
/// `bias: [n]`, all contiguous, `k` and `n` multiples of 4 (each tensor is read as vectors of 4).
/// Invocation (x, y, z) writes rows 4y..4y+4 (clamped at `m`) and the 4 columns at vector x of
/// batch z.
#[cube(launch_unchecked)]
fn matmul_block_kernel<F: Float, N: Size>(
    lhs: &Tensor<Vector<F, N>>,
    rhs: &Tensor<Vector<F, N>>,
    bias: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    #[comptime] with_bias: bool,
    #[define(F)] _dtype: StorageType,
) {
    let m = out.shape(1);
    let k_vectors = lhs.shape(2) / 4;
    let n_vectors = out.shape(2) / 4;
    let col = ABSOLUTE_POS_X as usize;
    let row = ABSOLUTE_POS_Y as usize * 4;
    let batch = ABSOLUTE_POS_Z as usize;
    if col >= n_vectors || row >= m {
        terminate!();
    }
    let lhs_base = batch * m * k_vectors;
    let rhs_base = (batch % rhs.shape(0)) * k_vectors * 4 * n_vectors;
    let out_base = batch * m * n_vectors;
    // Rows past the end read the last row again (and are not written), so the loop has no branch.
    let last = m - 1;
    let r0 = lhs_base + row * k_vectors;
    let r1 = lhs_base + (row + 1).min(last) * k_vectors;
    let r2 = lhs_base + (row + 2).min(last) * k_vectors;
    let r3 = lhs_base + (row + 3).min(last) * k_vectors;

    let mut c0 = Vector::<F, N>::new(F::new(0.0));
    if with_bias {
        c0 = bias[col];
    }
    let mut c1 = c0;
    let mut c2 = c0;
    let mut c3 = c0;
    for kv in 0..k_vectors {
        // Four rows of rhs (k = 4kv .. 4kv+3) at this invocation's four columns.
        let b = rhs_base + kv * 4 * n_vectors + col;
        let b0 = rhs[b];
        let b1 = rhs[b + n_vectors];
        let b2 = rhs[b + 2 * n_vectors];
        let b3 = rhs[b + 3 * n_vectors];
        let a0 = lhs[r0 + kv];
        let a1 = lhs[r1 + kv];
        let a2 = lhs[r2 + kv];
        let a3 = lhs[r3 + kv];
        c0 += b0 * Vector::new(a0[0])
            + b1 * Vector::new(a0[1])
            + b2 * Vector::new(a0[2])
            + b3 * Vector::new(a0[3]);
        c1 += b0 * Vector::new(a1[0])
            + b1 * Vector::new(a1[1])
            + b2 * Vector::new(a1[2])
            + b3 * Vector::new(a1[3]);
        c2 += b0 * Vector::new(a2[0])
            + b1 * Vector::new(a2[1])
            + b2 * Vector::new(a2[2])
            + b3 * Vector::new(a2[3]);
        c3 += b0 * Vector::new(a3[0])
            + b1 * Vector::new(a3[1])
            + b2 * Vector::new(a3[2])
            + b3 * Vector::new(a3[3]);
    }
    let o = out_base + row * n_vectors + col;
    out[o] = c0;
    if row + 1 < m {
        out[o + n_vectors] = c1;
    }
    if row + 2 < m {
        out[o + 2 * n_vectors] = c2;
    }
    if row + 3 < m {
        out[o + 3 * n_vectors] = c3;
    }
}

/// `lhs @ rhs (+ bias)` with [`matmul_block_kernel`] when the primitives are burn-wgpu's f32
/// tensors of the shapes it handles (`lhs: [batch, m, k]`, `rhs: [batch or 1, k, n]`, `bias:
/// [n]`, `k` and `n` multiples of 4); otherwise the inputs come back untouched.
pub(crate) fn matmul_block<T: 'static>(
    lhs: T,
    rhs: T,
    bias: Option<T>,
) -> Result<T, (T, T, Option<T>)> {
    let (Some(l), Some(r)) = (peek(&lhs), peek(&rhs)) else {
        return Err((lhs, rhs, bias));
    };
    let bias_ok = bias
        .as_ref()
        .is_none_or(|b| peek(b).is_some_and(|b| fits_bias(b, r)));
    if !(fits(l, r) && bias_ok) {
        return Err((lhs, rhs, bias));
    }
    let lhs = into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(lhs));
    let rhs = into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(rhs));
    let bias = bias.map(|b| into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(b)));
    let [batch, m, _] = dims3(&lhs);
    let n = rhs.meta.shape()[2];
    let out = empty_device_dtype(
        lhs.client.clone(),
        lhs.device.clone(),
        [batch, m, n].into(),
        DType::F32,
    );
    let (wx, wy) = WORKGROUP;
    let cubes = |units: usize, per: u32| units.div_ceil(per as usize) as u32;
    let count = CubeCount::Static(
        cubes(n / BLOCK, wx),
        cubes(m.div_ceil(BLOCK), wy),
        batch as u32,
    );
    let with_bias = bias.is_some();
    // Without a bias the kernel never reads its bias argument; rhs stands in.
    let bias_arg = bias.unwrap_or_else(|| rhs.clone());
    // Safety: every index the kernel reads or writes lies inside its tensors for these shapes,
    // which `fits` checked (contiguous after `into_contiguous`).
    unsafe {
        matmul_block_kernel::launch_unchecked::<WgpuRuntime>(
            &lhs.client.clone(),
            count,
            CubeDim::new_2d(wx, wy),
            BLOCK,
            lhs.into_tensor_arg(),
            rhs.into_tensor_arg(),
            bias_arg.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            with_bias,
            DType::F32.into(),
        )
    };
    Ok(downcast(out))
}

/// The burn-wgpu tensor behind a float primitive, if that is what it is.
fn peek<T: 'static>(t: &T) -> Option<&CubeTensor<WgpuRuntime>> {
    (t as &dyn Any).downcast_ref()
}

/// `t` as `U`, for two names of one type (checked by [`peek`] before).
fn downcast<T: 'static, U: 'static>(t: T) -> U {
    let mut slot = Some(t);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("the same type, checked before")
}

fn dims3(t: &CubeTensor<WgpuRuntime>) -> [usize; 3] {
    let s = t.meta.shape();
    [s[0], s[1], s[2]]
}

fn fits(lhs: &CubeTensor<WgpuRuntime>, rhs: &CubeTensor<WgpuRuntime>) -> bool {
    let f32s = lhs.dtype == DType::F32 && rhs.dtype == DType::F32;
    if !f32s || lhs.meta.num_dims() != 3 || rhs.meta.num_dims() != 3 {
        return false;
    }
    let ([batch, m, k], [rhs_batch, rhs_k, n]) = (dims3(lhs), dims3(rhs));
    let batches = rhs_batch == batch || rhs_batch == 1;
    batches && k == rhs_k && m > 0 && k.is_multiple_of(BLOCK) && n.is_multiple_of(BLOCK) && n > 0
}

fn fits_bias(bias: &CubeTensor<WgpuRuntime>, rhs: &CubeTensor<WgpuRuntime>) -> bool {
    bias.dtype == DType::F32
        && bias.meta.num_dims() == 1
        && bias.meta.shape()[0] == rhs.meta.shape()[2]
}

/// Multi-head attention, softmax(q k^T / sqrt(d_head)) v, for `q: [b, n, heads * d_head]` and
/// `k, v: [b, m, heads * d_head]` in that layout (heads side by side in each token, as the
/// projections write them; no head split or merge copies). Invocation (x, y) computes query row x
/// of head y % heads of image y / heads: one pass over the keys with a running maximum, so the
/// softmax's sum and the weighted values are rescaled whenever a larger score appears.
#[cube(launch_unchecked)]
fn attention_rows_kernel<F: Float, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    #[comptime] head_vectors: usize,
    #[define(F)] _dtype: StorageType,
) {
    let n = q.shape(1);
    let m = k.shape(1);
    let d_vectors = q.shape(2) / 4;
    let heads = d_vectors / head_vectors;
    let row = ABSOLUTE_POS_X as usize;
    let image = ABSOLUTE_POS_Y as usize / heads;
    let head = ABSOLUTE_POS_Y as usize % heads;
    if row >= n || image >= q.shape(0) {
        terminate!();
    }
    let scale = F::new(comptime!(1.0 / ((head_vectors * 4) as f32).sqrt()));
    let q_at = (image * n + row) * d_vectors + head * head_vectors;
    let mut query = Array::<Vector<F, N>>::new(head_vectors);
    let mut acc = Array::<Vector<F, N>>::new(head_vectors);
    #[unroll]
    for d in 0..head_vectors {
        query[d] = q[q_at + d] * Vector::new(scale);
        acc[d] = Vector::new(F::new(0.0));
    }
    let mut max = F::new(-3.0e38);
    let mut sum = F::new(0.0);
    for j in 0..m {
        let kv_at = (image * m + j) * d_vectors + head * head_vectors;
        let mut dot = Vector::<F, N>::new(F::new(0.0));
        #[unroll]
        for d in 0..head_vectors {
            dot += query[d] * k[kv_at + d];
        }
        let score = dot[0] + dot[1] + dot[2] + dot[3];
        let new_max = F::max(max, score);
        let rescale = F::exp(max - new_max);
        let weight = F::exp(score - new_max);
        sum = sum * rescale + weight;
        #[unroll]
        for d in 0..head_vectors {
            acc[d] = acc[d] * Vector::new(rescale) + v[kv_at + d] * Vector::new(weight);
        }
        max = new_max;
    }
    let inv = Vector::new(F::new(1.0) / sum);
    #[unroll]
    for d in 0..head_vectors {
        out[q_at + d] = acc[d] * inv;
    }
}

/// [`attention_rows_kernel`] when the primitives are burn-wgpu's f32 tensors it handles (`q: [b,
/// n, d]`, `k, v: [b, m, d]`, `d_head = d / heads` a multiple of 4); otherwise the inputs come
/// back untouched.
pub(crate) fn attention_rows<T: 'static>(q: T, k: T, v: T, heads: usize) -> Result<T, (T, T, T)> {
    let (Some(qt), Some(kt), Some(vt)) = (peek(&q), peek(&k), peek(&v)) else {
        return Err((q, k, v));
    };
    let f32s = [qt, kt, vt]
        .iter()
        .all(|t| t.dtype == DType::F32 && t.meta.num_dims() == 3);
    if !f32s || heads == 0 {
        return Err((q, k, v));
    }
    let ([b, n, d], [kb, m, kd], [vb, vm, vd]) = (dims3(qt), dims3(kt), dims3(vt));
    let same = kb == b && vb == b && kd == d && vd == d && vm == m && m > 0 && n > 0;
    if !same || !d.is_multiple_of(heads) || !(d / heads).is_multiple_of(BLOCK) {
        return Err((q, k, v));
    }
    let q = into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(q));
    let k = into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(k));
    let v = into_contiguous(downcast::<_, CubeTensor<WgpuRuntime>>(v));
    let out = empty_device_dtype(
        q.client.clone(),
        q.device.clone(),
        [b, n, d].into(),
        DType::F32,
    );
    let rows = 64u32;
    let count = CubeCount::Static((n as u32).div_ceil(rows), (b * heads) as u32, 1);
    // Safety: every index lies inside the tensors for the shapes checked above (contiguous).
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
            DType::F32.into(),
        )
    };
    Ok(downcast(out))
}
