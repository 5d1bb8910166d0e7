"""Markdown tables from bench/gpu.sh's bench-gpu.json (docs/gpu.md and docs/celeba.md).

    python3 bench/gpu_table.py bench/results/bench-gpu.json
"""

import json
import sys


def checks(rows):
    print("| step checker | loss (tested / reference) | gradient norm | worst parameter (relative error) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        if r.get("kind") == "check-detail":
            worst = r["worst"][0] if r["worst"] else {"name": "-", "relative": float("nan")}
            print(f"| {r['file']} | {r['loss'][0]:.6g} / {r['loss'][1]:.6g} | "
                  f"{r['grad_norm'][0]:.4g} / {r['grad_norm'][1]:.4g} | "
                  f"{worst['name']} ({worst['relative']:.2e}) |")
    for r in rows:
        if r.get("kind") == "check":
            verdict = "passed" if r["rc"] == 0 else f"FAILED (rc {r['rc']})"
            print(f"\n- {r['step']}: {verdict}", end="")
    print("\n")


def torch_rows(rows, what):
    ref = {}
    for r in rows:
        if r.get("kind") == "torch" and what in r:
            if what == "train":
                key, value = (r["preset"], r["train"]["batch"]), r["train"]["images_per_sec"]
            else:
                key, value = (r["preset"], r["sample"]["images"]), r["sample"]["guided_ms_per_step"]
            ref[key + (r.get("precision") or "fp32",)] = value
    return ref


def training(rows):
    ref = torch_rows(rows, "train")
    print("| training, images/s | build | dit-web | PyTorch fp32 | TF32 | bf16 | / fp32 | / TF32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("kind") == "train":
            key = (r["preset"], r["batch"])
            fp32, tf32, bf16 = (ref.get(key + (p,)) for p in ("fp32", "tf32", "bf16"))
            ratio = lambda base: f"{r['images_per_sec'] / base:.2f}x" if base else "-"
            print(f"| {r['preset']} b{r['batch']} on {r['backend']} | {r.get('build', 'plain')} | "
                  f"{r['images_per_sec']:.1f} | {fp32 or '-'} | {tf32 or '-'} | {bf16 or '-'} | "
                  f"{ratio(fp32)} | {ratio(tf32)} |")
        elif "log_tail" in r and r.get("step", "").startswith("train"):
            print(f"| {r['step']} | {r.get('build', '')} | failed (rc {r['rc']}) | | | | | |")
    print()


def sampling(rows):
    ref = torch_rows(rows, "sample")
    print("| guided DPM-Solver++ step, mnist | build | dit-web ms | PyTorch fp32 ms | TF32 ms | dit-web / fp32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("kind") == "sample":
            key = (r["preset"], r["batch"])
            fp32, tf32 = ref.get(key + ("fp32",)), ref.get(key + ("tf32",))
            ratio = f"{r['ms_per_step'] / fp32:.2f}x" if fp32 else "-"
            print(f"| {r['batch']} images on {r['backend']} | {r.get('build', 'plain')} | "
                  f"{r['ms_per_step']:.1f} | {fp32 or '-'} | {tf32 or '-'} | {ratio} |")
    print()


def learning(rows):
    learn = [r for r in rows if r.get("kind") == "learn"]
    if learn:
        print("| learn stage | exit status | seconds |")
        print("| --- | --- | --- |")
        for r in learn:
            print(f"| {r['step']} | {r['rc']} | {r.get('seconds', '-')} |")
        print()


def main():
    data = json.load(open(sys.argv[1]))
    rows = data["results"]
    print(f"GPU: {data['gpu'] or 'unknown'}\n")
    checks(rows)
    training(rows)
    sampling(rows)
    learning(rows)


if __name__ == "__main__":
    main()
