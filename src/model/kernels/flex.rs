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

/// A contiguous f32 tensor's dims and values.
fn contiguous(t: &FlexTensor) -> Option<(&[usize], &[f32])> {
    Some((t.layout().shape().as_slice(), t.as_slice::<f32>()?))
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
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
struct Matrix<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> Matrix<'a> {
    /// All of `data` as a `rows x cols` matrix, rows one after another.
    fn whole(data: &'a [f32], rows: usize, cols: usize) -> Self {
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

/// `dst = scale * a @ b`, or `dst += scale * a @ b` with `accumulate`. `b_transposed` reads `b`
/// as its transpose (`b` holds `n x k`). `dst` is `m x n`, rows `dst_stride` apart.
fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    a: Matrix,
    b: Matrix,
    b_transposed: bool,
    scale: f32,
    accumulate: bool,
) {
    let (m, k) = (a.rows, a.cols);
    let n = if b_transposed { b.rows } else { b.cols };
    let dst_view = Matrix {
        data: dst,
        offset: 0,
        rows: m,
        cols: n,
        stride: dst_stride,
    };
    let b_k = if b_transposed { b.cols } else { b.rows };
    assert!(
        b_k == k && a.in_bounds() && b.in_bounds() && dst_view.in_bounds(),
        "matmul operands out of bounds"
    );
    // `b`'s strides for element (row p of the product's k, column j): transposed, b[j][p].
    let (b_cs, b_rs) = if b_transposed {
        (b.stride as isize, 1)
    } else {
        (1, b.stride as isize)
    };
    // SAFETY: the assertion above checked that every element `gemm` reads or writes through
    // these pointers and strides lies inside its slice; `dst` is borrowed mutably, so it does not
    // overlap `a` or `b`.
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
            1,
            a.stride as isize,
            b.data.as_ptr().add(b.offset),
            b_cs,
            b_rs,
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
    matmul(&mut out, n, lhs, rhs, false, 1.0, bias.is_some());
    let mut shape = x_dims.to_vec();
    *shape.last_mut()? = n;
    Some(tensor(out, shape))
}

/// A 3-d tensor `[b, rows, cols]` whose rows are contiguous: its storage, first element and
/// strides (any, such as `q`, `k` and `v` as column ranges of one `qkv` output).
struct Rows<'a> {
    data: &'a [f32],
    offset: usize,
    dims: [usize; 3],
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
    fn columns(&self, b: usize, from: usize, cols: usize) -> Matrix<'a> {
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
    if q.dtype() != burn::tensor::DType::F32 || k.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return None;
    }
    let (q, k, v) = (Rows::of(q)?, Rows::of(k)?, Rows::of(v)?);
    let [b, n, d] = q.dims;
    let m = k.dims[1];
    if k.dims != [b, m, d] || v.dims != k.dims || heads == 0 || !d.is_multiple_of(heads) {
        return None;
    }
    let d_head = d / heads;
    let scale = 1.0 / (d_head as f32).sqrt();
    let mut out = vec![0.0; b * n * d];
    let mut scores = vec![0.0; n * m];
    for s in 0..b {
        for h in 0..heads {
            let from = h * d_head;
            // scores = q_h k_h^T / sqrt(d_head), `n x m`.
            let keys = k.columns(s, from, d_head);
            matmul(
                &mut scores,
                m,
                q.columns(s, from, d_head),
                keys,
                true,
                scale,
                false,
            );
            for row in scores.chunks_exact_mut(m) {
                softmax(row);
            }
            let probabilities = Matrix::whole(&scores, n, m);
            // The head's columns of the output: rows `d` apart from sample s's first row.
            let dst = &mut out[s * n * d + from..];
            matmul(
                dst,
                d,
                probabilities,
                v.columns(s, from, d_head),
                false,
                1.0,
                false,
            );
        }
    }
    Some(tensor(out, vec![b, n, d]))
}

/// Softmax of one row, in place.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in row.iter_mut() {
        *x -= max;
    }
    for x in simd128::exp_in_place(row) {
        *x = exp(*x);
    }
    let inverse = 1.0 / row.iter().sum::<f32>();
    for x in row.iter_mut() {
        *x *= inverse;
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
    const EPS: f32 = 1e-6;
    let (&[b, n, d], x) = contiguous(x)? else {
        return None;
    };
    let ((shift_dims, shift), (scale_dims, scale)) = (contiguous(shift)?, contiguous(scale)?);
    if shift_dims != [b, d] || scale_dims != [b, d] || d == 0 {
        return None;
    }
    let mut out = vec![0.0; x.len()];
    for s in 0..b {
        let shift = &shift[s * d..(s + 1) * d];
        let gain: Vec<f32> = scale[s * d..(s + 1) * d].iter().map(|c| 1.0 + c).collect();
        let tokens = s * n * d..(s + 1) * n * d;
        for (row, y) in x[tokens.clone()]
            .chunks_exact(d)
            .zip(out[tokens].chunks_exact_mut(d))
        {
            let mean = sum_by(row, |v| v) / d as f32;
            let var = sum_by(row, |v| (v - mean) * (v - mean)) / d as f32;
            let inv_std = 1.0 / (var + EPS).sqrt();
            for (((y, v), g), c) in y.iter_mut().zip(row).zip(&gain).zip(shift) {
                *y = (v - mean) * inv_std * g + c;
            }
        }
    }
    Some(tensor(out, vec![b, n, d]))
}

/// The sum of `f` over `values` in eight lanes (the compiler keeps a plain float sum in order,
/// one add at a time).
#[inline(always)]
fn sum_by(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (chunks, tail) = values.as_chunks::<8>();
    let mut lanes = [0.0f32; 8];
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().map(|v| f(*v)).sum::<f32>()
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
    for x in simd128::gelu_in_place(values) {
        *x = gelu(*x);
    }
    Ok(t)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26: `1 - (a1 t + ... + a5 t^5) exp(-x^2)`, `t = 1 / (1 + p|x|)`,
/// absolute error 1.5e-7 in exact arithmetic (5.4e-7 measured in f32); odd.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let mut poly = ERF_A[4];
    for c in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
        poly = c + t * poly;
    }
    (1.0 - (t * poly) * exp(-a * a)).copysign(x)
}

const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152_1,
    1.061_405_4,
];

/// `e^x` for x <= 88: `2^j e^r` with `j = round(x / ln 2)`, `|r| <= ln 2 / 2`, and `e^r` from its
/// Taylor series to r^7 (relative error about 1e-8 there); below -87 it is 0.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let j = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (x - j * LN2_HI) - j * LN2_LO;
    let mut p = r / EXP_TAYLOR[7];
    for c in EXP_TAYLOR[..7].iter().rev() {
        p = c + r * p;
    }
    // 2^j through the exponent bits (j in -126..=127 after the clamp).
    p * f32::from_bits(((j as i32 + 127) as u32) << 23)
}

/// ln 2 split so that `j * LN2_HI` is exact for the `j` [`exp`] meets.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1, 1, 1/2!, ..., 1/6! and 7!: e^r = 1 + r(1 + r(1/2 + ... + r(1/6! + r/7!))).
const EXP_TAYLOR: [f32; 8] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    5040.0,
];

/// [`gelu`] and [`exp`] over a slice in place, four floats at a time in wasm's SIMD128, with the
/// scalar code's operations in the same order in each lane (so the browser computes the same floats
/// as `trainer generate`). Each returns the values it left for the scalar code: the last one to
/// three, or all of them where there is no SIMD128. rustc leaves loops unvectorised at the browser
/// build's opt-level "s", and building dit-web at 3 instead made the module half as large again.
mod simd128 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(super) use lanes::{exp_in_place, gelu_in_place};

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn exp_in_place(values: &mut [f32]) -> &mut [f32] {
        values
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn gelu_in_place(values: &mut [f32]) -> &mut [f32] {
        values
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    mod lanes {
        use core::arch::wasm32::*;

        pub(in super::super) fn exp_in_place(values: &mut [f32]) -> &mut [f32] {
            map_in_place(values, exp)
        }

        pub(in super::super) fn gelu_in_place(values: &mut [f32]) -> &mut [f32] {
            map_in_place(values, gelu)
        }

        /// Applies `f` to whole groups of four and returns the rest.
        #[inline(always)]
        fn map_in_place(values: &mut [f32], f: impl Fn(v128) -> v128) -> &mut [f32] {
            let (groups, rest) = values.as_chunks_mut::<4>();
            for group in groups {
                let p = group.as_mut_ptr().cast::<v128>();
                // SAFETY: `group` is four f32, 16 bytes; wasm loads and stores need no alignment.
                unsafe { v128_store(p, f(v128_load(p))) };
            }
            rest
        }

        #[inline(always)]
        fn splat(x: f32) -> v128 {
            f32x4_splat(x)
        }

        /// [`super::super::gelu`].
        #[inline(always)]
        fn gelu(x: v128) -> v128 {
            let half_x = f32x4_mul(splat(0.5), x);
            let e = erf(f32x4_mul(x, splat(std::f32::consts::FRAC_1_SQRT_2)));
            f32x4_mul(half_x, f32x4_add(splat(1.0), e))
        }

        /// [`super::super::erf`].
        #[inline(always)]
        fn erf(x: v128) -> v128 {
            use super::super::{ERF_A as A, ERF_P};
            let a = f32x4_abs(x);
            let t = f32x4_div(
                splat(1.0),
                f32x4_add(splat(1.0), f32x4_mul(splat(ERF_P), a)),
            );
            let mut poly = splat(A[4]);
            for c in [A[3], A[2], A[1], A[0]] {
                poly = f32x4_add(splat(c), f32x4_mul(t, poly));
            }
            let poly = f32x4_mul(t, poly);
            let y = f32x4_sub(splat(1.0), f32x4_mul(poly, exp(f32x4_mul(f32x4_neg(a), a))));
            // copysign(y, x): the sign bit from x, the rest from y.
            v128_bitselect(x, y, u32x4_splat(0x8000_0000))
        }

        /// [`super::super::exp`].
        #[inline(always)]
        fn exp(x: v128) -> v128 {
            use super::super::{EXP_TAYLOR, LN2_HI, LN2_LO};
            let x = f32x4_pmin(f32x4_pmax(x, splat(-87.0)), splat(88.0));
            let j = f32x4_nearest(f32x4_mul(x, splat(std::f32::consts::LOG2_E)));
            let r = f32x4_sub(
                f32x4_sub(x, f32x4_mul(j, splat(LN2_HI))),
                f32x4_mul(j, splat(LN2_LO)),
            );
            let mut p = f32x4_div(r, splat(EXP_TAYLOR[7]));
            for c in EXP_TAYLOR[..7].iter().rev() {
                p = f32x4_add(splat(*c), f32x4_mul(r, p));
            }
            let two_j = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(j), i32x4_splat(127)), 23);
            f32x4_mul(p, two_j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_agree_with_libm() {
        let mut worst = (0.0f32, 0.0f32);
        for i in -40_000..=40_000 {
            let x = i as f32 / 1000.0;
            let e = (exp(x) - libm::expf(x)).abs() / libm::expf(x);
            let r = (erf(x) - libm::erff(x)).abs();
            worst = (worst.0.max(e), worst.1.max(r));
        }
        assert!(worst.0 < 5e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 1e-6, "erf absolute error {}", worst.1);
        assert_eq!(exp(-200.0), exp(-87.0), "clamped below");
        assert_eq!(erf(-9.0), -1.0);
    }
}
