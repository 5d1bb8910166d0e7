//! The element-wise maths of dit-web's burn-flex code ([`super::flex`] for inference,
//! [`super::flex_train`] for training): `exp`, `erf` and GELU from polynomials, softmax rows and
//! lane-wise sums, with wasm SIMD128 versions that compute the same floats as the scalar code.

/// Softmax of one row, in place.
pub(super) fn softmax(row: &mut [f32]) {
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

/// The sum of `f` over `values` in eight lanes (the compiler keeps a plain float sum in order,
/// one add at a time).
#[inline(always)]
pub(super) fn sum_by(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (chunks, tail) = values.as_chunks::<8>();
    let mut lanes = [0.0f32; 8];
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().map(|v| f(*v)).sum::<f32>()
}

/// Runs `pass` compiled for the widest vector instructions the CPU has (natively on x86-64:
/// AVX-512 or AVX2, asked at run time; elsewhere as it is). The floats are the same whichever
/// runs: Rust never fuses a multiply and an add unless told to.
#[inline(always)]
pub(super) fn widest<P: Pass>(pass: P) -> P::Out {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(pass) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2(pass) };
        }
    }
    pass.run()
}

/// Work for [`widest`]. Its copies for AVX-512 and AVX2 hold the work itself only where `run` is
/// inlined into them: a closure is, when the compiler judges it small enough, but a loop of GELUs
/// was not (both copies called the closure, compiled for SSE2). The element-wise passes are
/// therefore types whose `run` is `#[inline(always)]`.
pub(super) trait Pass {
    type Out;
    fn run(self) -> Self::Out;
}

impl<R, F: FnOnce() -> R> Pass for F {
    type Out = R;
    #[inline(always)]
    fn run(self) -> R {
        self()
    }
}

/// GELU, `x Phi(x)`, in place.
pub(super) struct Gelu<'a>(pub(super) &'a mut [f32]);

impl Pass for Gelu<'_> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        for v in self.0 {
            *v = gelu(*v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<P: Pass>(pass: P) -> P::Out {
    pass.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<P: Pass>(pass: P) -> P::Out {
    pass.run()
}

/// `sum(a * b)` in eight lanes, like [`sum_by`] (training's backward passes).
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a_chunks, a_tail) = a.as_chunks::<8>();
    let (b_chunks, b_tail) = b[..a.len()].as_chunks::<8>();
    let mut lanes = [0.0f32; 8];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum::<f32>()
}

#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26: `1 - (a1 t + ... + a5 t^5) exp(-x^2)`, `t = 1 / (1 + p|x|)`,
/// absolute error 1.5e-7 in exact arithmetic (5.4e-7 measured in f32); odd.
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
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
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest, ties to even, by adding and taking away 1.5 * 2^23 (exact for |x| < 2^22;
    // `round_ties_even` is a libm call on x86-64 without SSE4.1, a fifth of GELU's time).
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let j = shifted - ROUND;
    let r = (x - j * LN2_HI) - j * LN2_LO;
    let mut p = r / EXP_TAYLOR[7];
    for c in EXP_TAYLOR[..7].iter().rev() {
        p = c + r * p;
    }
    // 2^j through the exponent bits (j in -126..=127 after the clamp): `shifted`'s bits are
    // ROUND's plus j, so integer operations alone (which vectorise) make 2^j's exponent field.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// 1.5 * 2^23: a float this large has no fraction bits, so adding it rounds.
const ROUND: f32 = 12_582_912.0;
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
pub(super) mod simd128 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(in crate::model::kernels) use lanes::{exp_in_place, gelu_in_place};

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(in crate::model::kernels) fn exp_in_place(values: &mut [f32]) -> &mut [f32] {
        values
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(in crate::model::kernels) fn gelu_in_place(values: &mut [f32]) -> &mut [f32] {
        values
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    mod lanes {
        use core::arch::wasm32::*;

        pub(in crate::model::kernels) fn exp_in_place(values: &mut [f32]) -> &mut [f32] {
            map_in_place(values, exp)
        }

        pub(in crate::model::kernels) fn gelu_in_place(values: &mut [f32]) -> &mut [f32] {
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
