"""The matrix products of one mnist-cpu training step (batch 64) on OpenBLAS (numpy) and MKL
(PyTorch), 2 threads each: the shapes of `cargo bench --bench products` (bench/rust/products.rs).

    python3 bench/torch/products.py    # needs numpy and torch (pip)
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
import time

import numpy as np
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# (name, m, k, n, a held transposed): dst[m x n] = a[m x k] @ b[k x n]
SHAPES = [
    ("qkv forward", 3136, 192, 576, False),
    ("proj forward", 3136, 192, 192, False),
    ("mlp1 forward", 3136, 192, 768, False),
    ("mlp2 forward", 3136, 768, 192, False),
    ("qkv input gradient", 3136, 576, 192, False),
    ("qkv weight gradient", 192, 3136, 576, True),
    ("mlp2 weight gradient", 768, 3136, 192, True),
]


def best_ms(f, reps=20, rounds=3):
    f()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - start) / reps * 1e3)
    return best


total = {"openblas": 0.0, "mkl": 0.0}
for name, m, k, n, transposed in SHAPES:
    a = np.random.rand(k, m).astype(np.float32) if transposed else np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(k, n).astype(np.float32)
    a_view = a.T if transposed else a
    out = np.empty((m, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ta_view = ta.t() if transposed else ta
    tout = torch.empty(m, n)
    blas = best_ms(lambda: np.matmul(a_view, b, out=out))
    mkl = best_ms(lambda: torch.matmul(ta_view, tb, out=tout))
    total["openblas"] += blas
    total["mkl"] += mkl
    print(f"{name:22s} {m}x{k}x{n}: OpenBLAS {blas:.2f} ms, MKL {mkl:.2f} ms")
print(f"all seven: OpenBLAS {total['openblas']:.2f} ms, MKL {total['mkl']:.2f} ms")
