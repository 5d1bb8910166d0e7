//! The matrix products of one `mnist-cpu` training step (batch 64: 3,136 tokens of width 192) on
//! `gemm`, the library the model's own CPU code calls: each Linear's forward shape, an input
//! gradient and the weight gradients (a long reduction over the tokens), with the weight
//! gradients also as two halves of the reduction side by side (what `matmul` does for them).
//! `bench/torch/products.py` times the same shapes on OpenBLAS (numpy) and MKL (PyTorch).

use criterion::{criterion_group, criterion_main, Criterion};

/// (name, m, k, n, a held transposed): `dst[m x n] = a[m x k] @ b[k x n]`.
const SHAPES: [(&str, usize, usize, usize, bool); 7] = [
    ("qkv forward", 3136, 192, 576, false),
    ("proj forward", 3136, 192, 192, false),
    ("mlp1 forward", 3136, 192, 768, false),
    ("mlp2 forward", 3136, 768, 192, false),
    ("qkv input gradient", 3136, 576, 192, false),
    ("qkv weight gradient", 192, 3136, 576, true),
    ("mlp2 weight gradient", 768, 3136, 192, true),
];

/// `dst = a @ b` over reduction indices `ks` (row-major `b`; `a` held `k x m` when transposed).
fn product(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n, t): (usize, usize, usize, bool),
    ks: std::ops::Range<usize>,
) {
    let (a_cs, a_rs) = if t { (m as isize, 1) } else { (1, k as isize) };
    let a_from = ks.start * a_cs as usize;
    assert!(ks.end <= k && dst.len() == m * n && a.len() == m * k && b.len() == k * n);
    // SAFETY: the assertion above keeps every element gemm reads or writes inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            ks.len(),
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr().add(a_from),
            a_cs,
            a_rs,
            b.as_ptr().add(ks.start * n),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

fn products(c: &mut Criterion) {
    let mut group = c.benchmark_group("products");
    group.sample_size(20);
    for (name, m, k, n, t) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut dst = vec![0f32; m * n];
        group.bench_function(name, |bench| {
            bench.iter(|| product(&mut dst, &a, &b, (m, k, n, t), 0..k))
        });
        if t {
            let mut rest = vec![0f32; m * n];
            group.bench_function(format!("{name}, two halves"), |bench| {
                bench.iter(|| {
                    rayon::join(
                        || product(&mut dst, &a, &b, (m, k, n, t), 0..k / 2),
                        || product(&mut rest, &a, &b, (m, k, n, t), k / 2..k),
                    );
                    dst.iter_mut().zip(&rest).for_each(|(d, r)| *d += r);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, products);
criterion_main!(benches);
