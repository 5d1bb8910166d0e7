"""Where PyTorch's CPU time goes in one training step and one guided sampling step of the reference DiT.

    python3 bench/torch/torch_profile.py                 # mnist-cpu, 2 threads; prints JSON
    python3 bench/torch/torch_profile.py --steps 10

torch.profiler's self CPU time per operator over `--steps` training steps (batch 64: noising, forward,
eps-MSE, backward, AdamW) and as many guided DPM-Solver++-shaped network calls (16 images, the network on
32), grouped into the categories bench/profile_cpu.py uses for dit-web, as shares of the profiled time.
"""

import argparse
import json
import re

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from reference_dit import DiT, model_args
from torch_reference import PRESETS

# Operator name -> category, first match wins (aten names; backward ops end in _backward).
CATEGORIES = [
    ("matrix products", r"aten::(mm|addmm|bmm|matmul|linear|baddbmm)$"),
    ("attention (softmax, fused kernels)", r"softmax|scaled_dot_product|flash|_efficient_attention"),
    ("normalisation", r"layer_norm"),
    ("GELU", r"gelu"),
    ("optimizer", r"adam|_foreach|lerp|addcdiv|addcmul"),
    ("copies and layout", r"copy_|clone|contiguous|cat$|_to_copy|index|narrow|slice|expand|as_strided|"
                          r"unsafe_split|split|chunk|view|reshape|permute|transpose|empty|zero_|fill_|t$"),
    ("element-wise", r"add|mul|sub|div|sqrt|rsqrt|silu|elu|selu|exp|pow|neg|sin|cos|randn|normal|"
                     r"where|mse|sum|mean|randint|ones|full|threshold|sigmoid"),
]


def category(name):
    for label, pattern in CATEGORIES:
        if re.search(pattern, name):
            return label
    return "other"


def profiled(fn, steps):
    for _ in range(3):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    totals, ops = {}, {}
    for event in prof.key_averages():
        us = event.self_cpu_time_total
        if us <= 0:
            continue
        label = category(event.key)
        totals[label] = totals.get(label, 0.0) + us
        ops[event.key] = ops.get(event.key, 0.0) + us
    whole = sum(totals.values())
    return {
        "ms_per_step": round(whole / steps / 1e3, 1),
        "share": {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "top_ops": {k: round(v / whole, 4) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:15]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="mnist-cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    size, channels, patch, width, depth, heads, classes, dropout, steps = PRESETS[opts.preset]
    args = model_args(size, channels, patch, width, depth, heads, classes,
                      cfg_dropout_rate=dropout, num_timesteps=steps)
    model = DiT(args)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, steps), 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0)
    x0 = torch.randn(64, channels, size, size)
    labels = torch.randint(0, classes + 1, (64,))

    def train_step():
        t = torch.randint(0, steps, (64,))
        noise = torch.randn_like(x0)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, labels), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    xs = torch.randn(16, channels, size, size)
    ts = torch.full((16,), steps // 2)
    ys = torch.randint(0, classes, (16,))

    def guided_step():
        with torch.inference_mode():
            null = torch.full_like(ys, classes)
            eps = model(torch.cat([xs, xs]), torch.cat([ts, ts]), torch.cat([ys, null]))
            cond, uncond = eps.chunk(2)
            return uncond + 2.0 * (cond - uncond)

    model.train()
    train = profiled(train_step, opts.steps)
    model.eval()
    guided = profiled(guided_step, opts.steps * 4)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": opts.threads,
        "preset": opts.preset,
        "training_step_batch64": train,
        "guided_step_16_images": guided,
    }, indent=1))


if __name__ == "__main__":
    main()
