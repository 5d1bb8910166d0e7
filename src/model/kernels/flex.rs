//! dit-web's own code for burn-flex, burn's CPU backend (natively `trainer ... --backend cpu`; in
//! the browser the fallback, one wasm thread with SIMD128), inference only.
//!
//! burn-flex runs the model as one pass over memory per op. A V8 profile of the page's CPU step
//! (`make bench-cpu-profile`, `mnist-cpu` at batch 16) put half of it outside the matrix products:
//! GELU's `erf` 8 %, `exp` 6 %, copies to and from attention's head layout 8 %, broadcast bias
//! adds, LayerNorm's and modulation's passes. Here:
//! - a Linear layer is one `gemm` call (the library burn-flex itself uses) that accumulates into
//!   its bias rows, so no separate bias pass;
//! - GELU is one pass in place, with `erf` from a polynomial (Abramowitz & Stegun 7.1.26, error
//!   1.5e-7 in exact arithmetic, 5.4e-7 in f32) and `exp` from a range reduction and a polynomial,
//!   branch-free: four floats at a time in wasm's SIMD128 (the same operations per lane as the
//!   scalar code, which the compiler vectorises natively), as is softmax's `exp`;
//! - attention reads each head of `q`, `k` and `v` where the projections left it: per sample and
//!   head one `gemm` for the scores, a softmax, one `gemm` into the head's columns of the output;
//!   no head copies;
//! - adaLN's LayerNorm + modulation is one pass per token.

use burn::tensor::{Shape, TensorData};
use burn_flex::FlexTensor;

use super::flex_math::{simd128, softmax, sum_by, widest, Gelu};

/// A contiguous f32 tensor's dims and values.
pub(super) fn contiguous(t: &FlexTensor) -> Option<(&[usize], &[f32])> {
    Some((t.layout().shape().as_slice(), t.as_slice::<f32>()?))
}

pub(super) fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

/// burn-flex's own rule for when `gemm` may split a product over rayon's threads (natively; in
/// the browser rayon has one thread).
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// A row-major matrix view into a slice: `rows x cols` elements from `offset`, rows `stride`
/// apart, columns adjacent.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    pub(super) data: &'a [f32],
    pub(super) offset: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) stride: usize,
}

impl<'a> Matrix<'a> {
    /// All of `data` as a `rows x cols` matrix, rows one after another.
    pub(super) fn whole(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            offset: 0,
            rows,
            cols,
            stride: cols,
        }
    }

    /// Whether every element lies inside `data` (what makes handing it to `gemm` sound).
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.stride)
                .and_then(|last_row| last_row.checked_add(self.offset + self.cols))
                .is_some_and(|end| end <= self.data.len())
    }
}

/// How [`matmul`] reads an operand: as held, or as its transpose.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    AsIs,
    Transposed,
}

/// `dst = scale * a @ b`, or `dst += scale * a @ b` with `accumulate`; an operand read
/// [`Read::Transposed`] holds its transpose (`a`: `k x m`, `b`: `n x k`). `dst` is `m x n`, rows
/// `dst_stride` apart.
pub(super) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    (a, a_read): (Matrix, Read),
    (b, b_read): (Matrix, Read),
    scale: f32,
    accumulate: bool,
) {
    let (a_t, b_t) = (a_read == Read::Transposed, b_read == Read::Transposed);
    let (m, k) = if a_t {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (b_k, n) = if b_t {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    let dst_view = Matrix {
        data: dst,
        offset: 0,
        rows: m,
        cols: n,
        stride: dst_stride,
    };
    assert!(
        b_k == k && a.in_bounds() && b.in_bounds() && dst_view.in_bounds(),
        "matmul operands out of bounds"
    );
    // Column and row strides of the operands as the product reads them (element (i, p) of `a`,
    // (p, j) of `b`): a transposed operand swaps them.
    let strides = |t: bool, stride: usize| {
        if t {
            (stride as isize, 1)
        } else {
            (1, stride as isize)
        }
    };
    let ((a_cs, a_rs), (b_cs, b_rs)) = (strides(a_t, a.stride), strides(b_t, b.stride));
    let a = Operand {
        data: a.data,
        offset: a.offset,
        along_k: a_cs,
        across: a_rs,
    };
    let b = Operand {
        data: b.data,
        offset: b.offset,
        along_k: b_rs,
        across: b_cs,
    };
    let shape = (m, n, k);
    if !split_k(m, n, k) {
        return product(dst, dst_stride, accumulate, a, b, shape, scale);
    }
    // The first half of the reduction into `dst`, the second into `rest` beside it, then added:
    // the two halves' sums in this order whatever the number of threads.
    let half = k / 2;
    let mut rest = vec![0f32; m * n];
    rayon::join(
        || product(dst, dst_stride, accumulate, a, b, (m, n, half), scale),
        || {
            let (a, b) = (a.starting_at(half), b.starting_at(half));
            product(&mut rest, n, false, a, b, (m, n, k - half), scale)
        },
    );
    for (row, rest) in dst.chunks_mut(dst_stride).zip(rest.chunks_exact(n)) {
        row[..n].iter_mut().zip(rest).for_each(|(d, r)| *d += r);
    }
}

/// Whether [`matmul`] cuts the reduction in two halves computed side by side: a weight's gradient
/// (`x^T @ dy`: a few hundred rows and columns, thousands of tokens to sum over) runs a third
/// faster that way on two cores than with `gemm` splitting rows and columns alone, and the halves
/// are still split by `gemm` on more. Natively only: in the browser rayon has one thread (and
/// sampling's products never have such a long reduction).
fn split_k(m: usize, n: usize, k: usize) -> bool {
    cfg!(not(target_arch = "wasm32"))
        && k >= 2 * m.max(n)
        && matches!(parallelism(m, n, k), gemm::Parallelism::Rayon(_))
}

/// One operand of [`product`]: its element (row or column `i`, reduction index `p`) is
/// `data[offset + p * along_k + i * across]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    offset: usize,
    along_k: isize,
    across: isize,
}

impl Operand<'_> {
    /// The operand from reduction index `p` on.
    fn starting_at(self, p: usize) -> Self {
        Self {
            offset: self.offset + p * self.along_k as usize,
            ..self
        }
    }
}

/// `dst (+)= scale * a @ b` for `shape` `(m, n, k)` through `gemm`; the caller has checked that
/// every element lies inside its slice.
fn product(
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    a: Operand,
    b: Operand,
    (m, n, k): (usize, usize, usize),
    scale: f32,
) {
    // SAFETY: `matmul` checked that every element `gemm` reads or writes through these pointers
    // and strides lies inside its slice (a part of the reduction reads a subset of those); `dst`
    // is borrowed mutably, so it does not overlap `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.along_k,
            a.across,
            b.data.as_ptr().add(b.offset),
            b.across,
            b.along_k,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// A Linear layer, `x @ weight + bias` over the last axis of `x` (`weight: [k, n]`, burn's
/// layout); `None` for tensors that are not contiguous f32.
pub(crate) fn linear(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> Option<FlexTensor> {
    let (x_dims, x) = contiguous(x)?;
    let (&[k, n], weight) = contiguous(weight)? else {
        return None;
    };
    if x_dims.last() != Some(&k) || k == 0 {
        return None;
    }
    let m = x.len() / k;
    let mut out = match bias {
        Some(bias) => match contiguous(bias)? {
            (&[len], bias) if len == n => bias.repeat(m),
            _ => return None,
        },
        None => vec![0.0; m * n],
    };
    let (lhs, rhs) = (Matrix::whole(x, m, k), Matrix::whole(weight, k, n));
    matmul(
        &mut out,
        n,
        (lhs, Read::AsIs),
        (rhs, Read::AsIs),
        1.0,
        bias.is_some(),
    );
    let mut shape = x_dims.to_vec();
    *shape.last_mut()? = n;
    Some(tensor(out, shape))
}

/// A 3-d tensor `[b, rows, cols]` whose rows are contiguous: its storage, first element and
/// strides (any, such as `q`, `k` and `v` as column ranges of one `qkv` output).
pub(super) struct Rows<'a> {
    data: &'a [f32],
    offset: usize,
    pub(super) dims: [usize; 3],
    batch_stride: usize,
    row_stride: usize,
}

impl<'a> Rows<'a> {
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let (&[b, r, c], &[sb, sr, 1]) = (layout.shape().as_slice(), layout.strides()) else {
            return None;
        };
        Some(Self {
            data: t.storage(),
            offset: layout.start_offset(),
            dims: [b, r, c],
            batch_stride: usize::try_from(sb).ok()?,
            row_stride: usize::try_from(sr).ok()?,
        })
    }

    /// Sample `b`'s columns `from..from + cols`, all rows.
    pub(super) fn columns(&self, b: usize, from: usize, cols: usize) -> Matrix<'a> {
        Matrix {
            data: self.data,
            offset: self.offset + b * self.batch_stride + from,
            rows: self.dims[1],
            cols,
            stride: self.row_stride,
        }
    }
}

/// Multi-head attention, `softmax(q k^T / sqrt(d_head)) v` per sample and head, for `q: [b, n, d]`,
/// `k, v: [b, m, d]` with heads side by side in `d`; the output `[b, n, d]` has the heads side by
/// side again. `None` for other layouts or dtypes.
pub(crate) fn attention(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    heads: usize,
) -> Option<FlexTensor> {
    let attn = Heads::of(q, k, v, heads)?;
    let [b, n, d] = attn.q.dims;
    let mut out = vec![0.0; b * n * d];
    // Samples are independent: natively on rayon's threads (each sample's floats are the same
    // whichever thread computes it), in the browser one after another.
    let sample = |s, out: &mut [f32], probabilities: &mut Vec<f32>| {
        widest(|| attn.forward_sample(s, out, probabilities, 0))
    };
    let scratch = || vec![0.0; n * attn.m];
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(n * d)
            .enumerate()
            .for_each_init(scratch, |p, (s, out)| sample(s, out, p));
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut p = scratch();
        for (s, out) in out.chunks_exact_mut(n * d).enumerate() {
            sample(s, out, &mut p);
        }
    }
    Some(tensor(out, vec![b, n, d]))
}

/// `q`, `k` and `v` of one attention call, read where they lie.
pub(super) struct Heads<'a> {
    pub(super) q: Rows<'a>,
    pub(super) k: Rows<'a>,
    pub(super) v: Rows<'a>,
    pub(super) heads: usize,
    pub(super) d_head: usize,
    /// Keys per sample.
    pub(super) m: usize,
    /// `1 / sqrt(d_head)`.
    pub(super) scale: f32,
}

impl<'a> Heads<'a> {
    /// `None` unless `q: [b, n, d]`, `k, v: [b, m, d]` are f32 with contiguous rows and `heads`
    /// divides `d`.
    pub(super) fn of(
        q: &'a FlexTensor,
        k: &'a FlexTensor,
        v: &'a FlexTensor,
        heads: usize,
    ) -> Option<Self> {
        let f32 = burn::tensor::DType::F32;
        if q.dtype() != f32 || k.dtype() != f32 || v.dtype() != f32 {
            return None;
        }
        let (q, k, v) = (Rows::of(q)?, Rows::of(k)?, Rows::of(v)?);
        let [b, _, d] = q.dims;
        let m = k.dims[1];
        if k.dims != [b, m, d] || v.dims != k.dims || heads == 0 || !d.is_multiple_of(heads) {
            return None;
        }
        let d_head = d / heads;
        Some(Self {
            q,
            k,
            v,
            heads,
            d_head,
            m,
            scale: 1.0 / (d_head as f32).sqrt(),
        })
    }

    /// Sample `s`'s output rows (`n x d`) into `out`; each head's probabilities (`n x m`) into
    /// `probabilities` from `h * head_stride` (0: one buffer reused by every head).
    pub(super) fn forward_sample(
        &self,
        s: usize,
        out: &mut [f32],
        probabilities: &mut [f32],
        head_stride: usize,
    ) {
        let (n, m, d, d_head) = (self.q.dims[1], self.m, self.q.dims[2], self.d_head);
        for h in 0..self.heads {
            let from = h * d_head;
            let p = &mut probabilities[h * head_stride..][..n * m];
            // scores = q_h k_h^T / sqrt(d_head), `n x m`.
            matmul(
                p,
                m,
                (self.q.columns(s, from, d_head), Read::AsIs),
                (self.k.columns(s, from, d_head), Read::Transposed),
                self.scale,
                false,
            );
            for row in p.chunks_exact_mut(m) {
                softmax(row);
            }
            // The head's columns of the output: rows `d` apart.
            matmul(
                &mut out[from..],
                d,
                (Matrix::whole(p, n, m), Read::AsIs),
                (self.v.columns(s, from, d_head), Read::AsIs),
                1.0,
                false,
            );
        }
    }
}

/// `layer_norm(x) * (1 + scale) + shift` for `x: [b, n, d]` and per-sample `shift, scale: [b, d]`
/// (LayerNorm without affine, eps 1e-6, as `model::norm`). `None` for tensors that are not
/// contiguous f32.
pub(crate) fn norm_modulate(
    x: &FlexTensor,
    shift: &FlexTensor,
    scale: &FlexTensor,
) -> Option<FlexTensor> {
    let (&[b, n, d], x) = contiguous(x)? else {
        return None;
    };
    let ((shift_dims, shift), (scale_dims, scale)) = (contiguous(shift)?, contiguous(scale)?);
    if shift_dims != [b, d] || scale_dims != [b, d] || d == 0 {
        return None;
    }
    let mut out = vec![0.0; x.len()];
    let mut stats = vec![(0.0, 0.0); n];
    for (s, (out, x)) in out
        .chunks_exact_mut(n * d)
        .zip(x.chunks_exact(n * d))
        .enumerate()
    {
        let (shift, scale) = (&shift[s * d..][..d], &scale[s * d..][..d]);
        norm_modulate_sample(x, shift, scale, out, &mut stats);
    }
    Some(tensor(out, vec![b, n, d]))
}

/// LayerNorm's epsilon (`model::norm`).
const EPS: f32 = 1e-6;

/// One sample's LayerNorm + modulation (inference's and training's): `out` from its rows `xs`,
/// each token's mean and 1 / sqrt(var + eps) into `stats` (training's backward reads them).
#[inline(never)]
pub(super) fn norm_modulate_sample(
    xs: &[f32],
    shift: &[f32],
    scale: &[f32],
    out: &mut [f32],
    stats: &mut [(f32, f32)],
) {
    let d = shift.len();
    let gain: Vec<f32> = scale.iter().map(|c| 1.0 + c).collect();
    for ((y, row), stat) in out.chunks_exact_mut(d).zip(xs.chunks_exact(d)).zip(stats) {
        let mean = sum_by(row, |v| v) / d as f32;
        let var = sum_by(row, |v| (v - mean) * (v - mean)) / d as f32;
        let inv_std = 1.0 / (var + EPS).sqrt();
        *stat = (mean, inv_std);
        for (((y, v), g), c) in y.iter_mut().zip(row).zip(&gain).zip(shift) {
            *y = (v - mean) * inv_std * g + c;
        }
    }
}

/// GELU, `x * Phi(x)` with the exact (erf) form, in place on a tensor this code may overwrite (a
/// contiguous f32 tensor nothing else shares); `Err` gives back any other.
pub(crate) fn gelu_in_place(mut t: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let whole = t.layout().contiguous_offsets() == Some((0, t.layout().num_elements()));
    if t.dtype() != burn::tensor::DType::F32 || !whole {
        return Err(t);
    }
    let Some(values) = t.try_storage_mut::<f32>() else {
        return Err(t);
    };
    let pass = |values: &mut [f32]| widest(Gelu(simd128::gelu_in_place(values)));
    // Natively on rayon's threads in pieces of 16 Ki values (whole groups of four, so the same
    // values take the same path as in one pass); in the browser one pass.
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        values.par_chunks_mut(1 << 14).for_each(pass);
    }
    #[cfg(target_arch = "wasm32")]
    pass(values);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `matmul` with its reduction cut in two (a weight gradient's shape: few rows and columns,
    /// a long reduction) against a plain triple loop in f64, for operands as held and transposed,
    /// a strided destination, accumulation and a scale.
    #[test]
    fn a_long_reduction_cut_in_two_is_the_whole_product() {
        let (m, n, k) = (24, 40, 8000);
        assert!(split_k(m, n, k) || cfg!(target_arch = "wasm32"));
        let value = |i: usize, salt: usize| ((i * 7 + salt) % 13) as f32 / 13.0 - 0.5;
        let a: Vec<f32> = (0..m * k + 3).map(|i| value(i, 1)).collect();
        let b: Vec<f32> = (0..k * n + 5).map(|i| value(i, 2)).collect();
        for (a_read, b_read) in [
            (Read::AsIs, Read::AsIs),
            (Read::Transposed, Read::AsIs),
            (Read::AsIs, Read::Transposed),
        ] {
            // `a` from offset 3, `b` from 5; held as the product reads them or transposed.
            let (a_rows, a_cols) = match a_read {
                Read::AsIs => (m, k),
                Read::Transposed => (k, m),
            };
            let (b_rows, b_cols) = match b_read {
                Read::AsIs => (k, n),
                Read::Transposed => (n, k),
            };
            let a_at = |i: usize, p: usize| match a_read {
                Read::AsIs => a[3 + i * k + p],
                Read::Transposed => a[3 + p * m + i],
            };
            let b_at = |p: usize, j: usize| match b_read {
                Read::AsIs => b[5 + p * n + j],
                Read::Transposed => b[5 + j * k + p],
            };
            let stride = n + 2;
            let mut dst = vec![1f32; m * stride];
            let am = Matrix {
                data: &a,
                offset: 3,
                rows: a_rows,
                cols: a_cols,
                stride: a_cols,
            };
            let bm = Matrix {
                data: &b,
                offset: 5,
                rows: b_rows,
                cols: b_cols,
                stride: b_cols,
            };
            matmul(&mut dst, stride, (am, a_read), (bm, b_read), 0.5, true);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|p| a_at(i, p) as f64 * b_at(p, j) as f64).sum();
                    let want = 1.0 + 0.5 * exact;
                    let got = dst[i * stride + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-3,
                        "({i}, {j}): {got} against {want}"
                    );
                }
                // The padding between rows is left alone.
                assert_eq!(dst[i * stride + n..i * stride + stride], [1.0, 1.0]);
            }
        }
    }
}
