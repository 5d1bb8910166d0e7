"""dit-web (burn-flex, the trainer's CPU backend, and burn-ndarray) against the PyTorch reference of the same network, on this CPU, in one run.

    python3 bench/compare.py            # needs torch (pip) and cargo; ~8 minutes on 2 cores
    python3 bench/compare.py --reuse    # criterion's last results, PyTorch measured again

Runs bench/torch_reference.py (mnist-cpu preset, 2 threads) and the matching criterion benches:
- training: one optimizer step, batch 64 (host batch, forward, eps-MSE, backward, AdamW) on
  burn-flex (the trainer's CPU backend) and burn-ndarray: `cargo bench -p trainer --bench step`
- sampling: one network call for 16 images, and one guided DPM-Solver++ step for 16 images
  (network on 32, guidance 2, solver update), on burn-flex (what `trainer generate` and `trainer
  eval` run on the CPU) and burn-ndarray: `cargo bench --bench model -- mnist-cpu`
and prints each pair and the ratio dit-web / PyTorch (above 1: dit-web is slower).
"""

import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def criterion_ms(group, name):
    # BenchmarkId(name, parameter) nests folders; bench_function("a/b") flattens to a_b.
    pattern = os.path.join(TARGET, "criterion", group, *name.split("/"), "new", "estimates.json")
    flat = os.path.join(TARGET, "criterion", group, name.replace("/", "_"), "new", "estimates.json")
    # BenchmarkId(name, "a/b") keeps one folder for the name and flattens the parameter.
    first, *rest = name.split("/")
    nested = os.path.join(TARGET, "criterion", group, first, "_".join(rest), "new", "estimates.json")
    paths = glob.glob(pattern) + glob.glob(flat) + glob.glob(nested)
    if not paths:
        sys.exit(f"no criterion result at {pattern}")
    with open(paths[0]) as f:
        return json.load(f)["mean"]["point_estimate"] / 1e6


def main():
    torch_out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "torch", "torch_reference.py"), "--preset", "mnist-cpu",
         "--threads", "2", "--iters", "20"],
        check=True, capture_output=True, text=True).stdout
    torch = json.loads(torch_out)
    # --reuse: criterion's last results instead of running the benches again.
    for args in ([] if "--reuse" in sys.argv[1:] else
                 (["bench", "-p", "trainer", "--bench", "step"],
                  ["bench", "--bench", "model", "--", "mnist-cpu"])):
        subprocess.run(["cargo", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    rows = [
        ("training step, batch 64, flex (ms)",
         criterion_ms("optimizer_step", "mnist-cpu/batch64/flex"), torch["train"]["ms_per_step"]),
        ("training step, batch 64, ndarray (ms)",
         criterion_ms("optimizer_step", "mnist-cpu/batch64/ndarray"), torch["train"]["ms_per_step"]),
        ("network call, 16 images, flex (ms)", criterion_ms("forward", "mnist-cpu/batch16/flex"),
         torch["sample"]["ms_per_step"]),
        ("network call, 16 images, ndarray (ms)",
         criterion_ms("forward", "mnist-cpu/batch16/ndarray"), torch["sample"]["ms_per_step"]),
        ("guided DPM++ step, 16 images, flex (ms)",
         criterion_ms("sampler_step", "mnist-cpu/batch16/cfg2/network+update/flex"),
         torch["sample"]["guided_ms_per_step"]),
        ("guided DPM++ step, 16 images, ndarray (ms)",
         criterion_ms("sampler_step", "mnist-cpu/batch16/cfg2/network+update/ndarray"),
         torch["sample"]["guided_ms_per_step"]),
    ]
    print(f"torch {torch['torch']}, {torch['threads']} threads, preset mnist-cpu")
    print(f"{'':44}{'dit-web':>10}{'PyTorch':>10}{'ratio':>8}")
    for name, ours, theirs in rows:
        print(f"{name:44}{ours:10.1f}{theirs:10.1f}{ours / theirs:8.2f}")
    print(f"training images/s: dit-web {64e3 / rows[0][1]:.1f} (flex), {64e3 / rows[1][1]:.1f} (ndarray), "
          f"PyTorch {64e3 / rows[0][2]:.1f}")


if __name__ == "__main__":
    main()
