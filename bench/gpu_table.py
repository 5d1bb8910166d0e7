"""Markdown tables from bench/gpu.sh's bench-gpu.json (the README's GPU section).

    python3 bench/gpu_table.py docs/bench-gpu.json
"""

import json
import sys


def main():
    data = json.load(open(sys.argv[1]))
    rows = data["results"]
    print(f"GPU: {data['gpu'] or 'unknown'}\n")
    print("| step checker | loss (tested / reference) | gradient norm | worst parameter (relative error) | result |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("kind") == "check-detail":
            worst = r["worst"][0] if r["worst"] else {"name": "-", "relative": float("nan")}
            print(f"| {r['file']} | {r['loss'][0]:.6g} / {r['loss'][1]:.6g} | "
                  f"{r['grad_norm'][0]:.4g} / {r['grad_norm'][1]:.4g} | "
                  f"{worst['name']} ({worst['relative']:.2e}) | |")
        elif r.get("kind") == "check":
            print(f"| {r['step']} | | | | rc {r['rc']} |")
    print()
    torch = {}
    for r in rows:
        if r.get("kind") == "torch" and "train" in r:
            key = (r["preset"], r["train"]["batch"], r.get("precision") or "fp32")
            torch[key] = r["train"]["images_per_sec"]
    print("| training, images/s | build | dit-web | PyTorch fp32 | PyTorch bf16 | dit-web / PyTorch fp32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("kind") == "train":
            fp32 = torch.get((r["preset"], r["batch"], "fp32"))
            bf16 = torch.get((r["preset"], r["batch"], "bf16"))
            ratio = f"{r['images_per_sec'] / fp32:.2f}x" if fp32 else "-"
            print(f"| {r['preset']} b{r['batch']} on {r['backend']} | {r.get('build', 'plain')} | "
                  f"{r['images_per_sec']:.1f} | {fp32 or '-'} | {bf16 or '-'} | {ratio} |")
        elif "log_tail" in r and r.get("step", "").startswith(("train", "sample")):
            print(f"| {r['step']} | {r.get('build', '')} | failed (rc {r['rc']}) | | | |")
    print()
    print("| guided DPM-Solver++ step, mnist | build | kernels | dit-web ms | PyTorch fp32 ms | PyTorch bf16 ms | dit-web / PyTorch fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ref = {}
    for r in rows:
        if r.get("kind") == "torch" and "sample" in r:
            key = (r["preset"], r["sample"]["images"], r.get("precision") or "fp32")
            ref[key] = r["sample"]["guided_ms_per_step"]
    for r in rows:
        if r.get("kind") == "sample":
            n = r["batch"]
            fp32 = ref.get((r["preset"], n, "fp32"))
            ratio = f"{r['ms_per_step'] / fp32:.2f}x" if fp32 else "-"
            # `own_kernels`: dit-web's own code (wgpu, cpu) or burn's (`--kernels`); rows from
            # before the flag have no field, and cuda has only burn's.
            own = r.get("own_kernels")
            kernels = "burn's" if own is False or r["backend"] == "cuda" else ("dit-web's" if own else "-")
            print(f"| {n} images on {r['backend']} | {r.get('build', 'plain')} | {kernels} | {r['ms_per_step']:.1f} | "
                  f"{fp32 or '-'} | {ref.get((r['preset'], n, 'bf16'), '-')} | {ratio} |")

if __name__ == "__main__":
    main()
