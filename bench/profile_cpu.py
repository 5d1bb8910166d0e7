"""Where dit-web's CPU time goes: a criterion benchmark under `perf`, its samples grouped by operation.

    python3 bench/profile_cpu.py train       # one training step, mnist-cpu, batch 64, burn-flex
    python3 bench/profile_cpu.py guided      # one guided DPM-Solver++ step, 16 images (network on 32)
    python3 bench/profile_cpu.py train --seconds 30 --top 25

Builds the benchmark (`cargo bench --no-run`), runs it under `perf record` for `--seconds` with
criterion's `--profile-time` (the benchmark's loop, no analysis), and sums the samples' own time
by function into the categories of bench/torch/profile.py, as shares of the profile; prints JSON.
Needs Linux `perf` (Debian's `linux-perf`).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BENCHES = {
    "train": (["-p", "trainer", "--bench", "step"], "optimizer_step/mnist-cpu/batch64/flex"),
    "guided": (["--bench", "model"], "sampler_step/mnist-cpu/batch16/cfg2/network\\+update/flex"),
}

# Function name -> category, first match wins. dit-web's own operations are named after what
# they compute; burn's generic path spreads attention over matrix products and element-wise passes.
CATEGORIES = [
    ("matrix products", r"gemm|matmul"),
    ("attention (softmax, fused kernels)", r"attention|Attention|Heads|softmax"),
    ("normalisation", r"norm_modulate|NormModulate|layer_norm|var_mean"),
    ("GELU", r"gelu|Gelu|erf"),
    ("optimizer", r"burn_optim|adam|AdamW"),
    ("autodiff graph", r"burn_autodiff"),
    ("memory (allocation, page faults)", r"malloc|free|alloc|clear_page|page_fault|mmap|munmap|"
                                         r"\[k\]|_raw_spin|asm_exc|handle_mm|zap_|release_pages"),
    ("copies and layout", r"memcpy|memmove|copy|contiguous|strided|gather|repeat|cat_|slice|permute|"
                          r"transpose|expand"),
    ("element-wise", r"burn_flex|macerator|burn_backend|binary|unary|reduce|exp|sum"),
    ("threads (rayon, waiting)", r"rayon|crossbeam|futex|sched|yield|spin"),
]


def category(symbol):
    for label, pattern in CATEGORIES:
        if re.search(pattern, symbol):
            return label
    return "other"


def bench_binary(cargo_args):
    out = subprocess.run(["cargo", "bench", *cargo_args, "--no-run", "--message-format=json"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["kind"] == ["bench"]:
            return msg["executable"]
    sys.exit("no benchmark executable in cargo's output")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=sorted(BENCHES))
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--top", type=int, default=15, help="functions listed by name")
    ap.add_argument("--binary", help="a benchmark executable built already (skips cargo)")
    opts = ap.parse_args()
    cargo_args, bench = BENCHES[opts.what]
    binary = opts.binary or bench_binary(cargo_args)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-F", "499", "-e", "cpu-clock", "-o", data, "--", binary,
                        "--bench", "--profile-time", str(opts.seconds), f"^{bench}$"],
                       check=True, capture_output=True, cwd=tmp)
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol",
                                 "--stdio", "-q"], check=True, capture_output=True, text=True).stdout
    totals, functions = {}, []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\[.\])\s+(.*)", line)
        if not m:
            continue
        share, kind, symbol = float(m.group(1)) / 100, m.group(2), m.group(3).strip()
        label = category(f"{kind} {symbol}")
        totals[label] = totals.get(label, 0.0) + share
        functions.append((share, label, symbol[:120]))
    print(json.dumps({
        "benchmark": bench.replace("\\", ""),
        "seconds": opts.seconds,
        "share": {k: round(v, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "top_functions": [{"share": round(s, 4), "category": c, "function": f}
                          for s, c, f in functions[:opts.top]],
    }, indent=1))


if __name__ == "__main__":
    main()
