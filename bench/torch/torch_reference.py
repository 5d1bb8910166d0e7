"""PyTorch CPU timings of the reference DiT, for comparison with dit-web's own benchmarks.

    python3 bench/torch/torch_reference.py                    # mnist-cpu, 2 threads, prints JSON
    python3 bench/torch/torch_reference.py --preset mnist --iters 5

Measures, with torch.set_num_threads(2) (the 2-core machine dit-web's figures come from):
- training: one step = noising at uniform timesteps, forward, epsilon-MSE, backward, AdamW step
  (0.9, 0.999, eps 1e-8, no weight decay), batch 64 -> images/s and ms/step;
- sampling: one network evaluation at batch 16 (no guidance) and at batch 32 (16 images with
  classifier-free guidance: conditional and null halves in one batch, then combined) -> ms/step
  (`--sample-batch N` for another count).

On a GPU: `--device cuda` (TF32 off, so fp32 is fp32), `--tf32` for TF32 tensor-core matrix
products (what cubecl's CUDA matmul does with f32 inputs), `--bf16` for bf16 autocast.

Model configs are dit-web's presets (src/config.rs), seed flavour (= the reference network).
"""

import argparse
import json
import time

import torch
from torch.nn import functional as F

from reference_dit import DiT, model_args

# src/config.rs: (image, channels, patch, width, depth, heads, classes, label dropout, T)
PRESETS = {
    "mnist": (28, 1, 2, 288, 6, 6, 10, 0.0, 400),
    "mnist-cpu": (28, 1, 4, 192, 6, 6, 10, 0.1, 400),
    "celeba": (128, 3, 4, 512, 8, 8, 2, 0.1, 1000),
}


def timed(fn, iters, warmup, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="mnist-cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20, help="timed iterations of each measurement")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="training batch")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--sample-batch", type=int, default=16, help="images per sampler step")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (f32 master weights)")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products for f32 (CUDA)")
    ap.add_argument("--label-dropout", type=float, default=None,
                    help="override the preset's (a null label makes the guided step possible)")
    opts = ap.parse_args()

    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    device = torch.device(opts.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        # Plain fp32 matmuls unless --tf32 (or --bf16).
        torch.backends.cuda.matmul.allow_tf32 = opts.tf32
        torch.backends.cudnn.allow_tf32 = opts.tf32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16)
    size, channels, patch, width, depth, heads, classes, dropout, steps = PRESETS[opts.preset]
    if opts.label_dropout is not None:
        dropout = opts.label_dropout
    args = model_args(size, channels, patch, width, depth, heads, classes,
                      cfg_dropout_rate=dropout, num_timesteps=steps)
    model = DiT(args).to(device)
    params = sum(p.numel() for p in model.parameters())
    rows = classes + int(dropout > 0)
    betas = torch.linspace(1e-4, 2e-2, steps, device=device)
    alpha_bar = torch.cumprod(1 - betas, 0)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0)
    x0 = torch.randn(opts.batch, channels, size, size, device=device)
    labels = torch.randint(0, rows, (opts.batch,), device=device)

    def train_step():
        t = torch.randint(0, steps, (opts.batch,), device=device)
        noise = torch.randn_like(x0)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        with autocast:
            loss = F.mse_loss(model(xt, t, labels).float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_s = timed(train_step, opts.iters, opts.warmup, sync)

    model.eval()
    n = opts.sample_batch
    xs16 = torch.randn(n, channels, size, size, device=device)
    t16 = torch.full((n,), steps // 2, device=device)
    y16 = torch.randint(0, classes, (n,), device=device)

    def sample_step():
        with torch.inference_mode(), autocast:
            model(xs16, t16, y16)

    def guided_step():
        with torch.inference_mode(), autocast:
            null = torch.full_like(y16, rows - 1)
            eps = model(torch.cat([xs16, xs16]), torch.cat([t16, t16]), torch.cat([y16, null]))
            cond, uncond = eps.chunk(2)
            return uncond + 2.0 * (cond - uncond)

    sample_s = timed(sample_step, opts.iters, opts.warmup, sync)
    guided_s = timed(guided_step, opts.iters, opts.warmup, sync) if dropout > 0 else None

    print(json.dumps({
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
        "bf16": opts.bf16,
        "tf32": opts.tf32,
        "threads": opts.threads,
        "preset": opts.preset,
        "model_args": args,
        "parameters": params,
        "iters": opts.iters,
        "train": {
            "batch": opts.batch,
            "ms_per_step": round(train_s * 1e3, 2),
            "images_per_sec": round(opts.batch / train_s, 2),
        },
        "sample": {
            "images": n,
            "ms_per_step": round(sample_s * 1e3, 2),
            "guided_ms_per_step": None if guided_s is None else round(guided_s * 1e3, 2),
        },
    }))


if __name__ == "__main__":
    main()
