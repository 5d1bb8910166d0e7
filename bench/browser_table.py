"""Markdown tables from `make bench-browser`'s JSON (tests/browser/bench.mjs prints it).

    python3 bench/browser_table.py www/bench/results/bench-browser.json

Prints, per wasm module (`pkg`) and model: ms per step for dit-web and onnxruntime-web and their
ratio; and, for rows measured with PROFILE=1, where a WebGPU step's time goes (dispatches, passes,
submits, uploads, read-backs, GPU time per kernel family, host time) for both engines.
"""

import json
import re
import sys
from collections import defaultdict


def family(name):
    """A kernel's family: its name without the type/vectorisation suffixes cubecl adds."""
    name = re.sub(r"_(lhs|rhs|acc|in|out|e|c|t|f|i|b|n|nin|nout)_\w+$", "", name)
    return re.sub(r"_(f32|f16|i32|u32|bool)\b.*$", "", name) or name


def speed_table(rows):
    print("| pkg | model | backend | batch | dit-web ms/step | onnxruntime-web ms/step | dit-web / ORT |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ort = {(r["pkg"], r["model"], r["backend"], r["batch"]): r for r in rows if r["engine"] == "onnxruntime-web"}
    for r in rows:
        if r["engine"] != "dit-web":
            continue
        o = ort.get((r["pkg"], r["model"], r["backend"], r["batch"]))
        ratio = f"{r['msPerStep'] / o['msPerStep']:.2f}" if o else "-"
        ort_ms = f"{o['msPerStep']:.1f}" if o else "-"
        print(f"| {r['pkg']} | {r['model']} | {r['backend']} | {r['batch']} | {r['msPerStep']:.1f} | {ort_ms} | {ratio} |")


def profile_table(rows):
    profiled = [r for r in rows if r.get("profile")]
    if not profiled:
        return
    print()
    print("| engine | pkg | model | batch | step ms (profiled) | dispatches | passes | submits | uploads (KiB) "
          "| read-backs | GPU ms | matmul share | host ms (network call / read-back wait / update) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in profiled:
        p = r["profile"]
        matmul = sum(k["ms"] for k in p["kernels"] if "matmul" in k["name"])
        t = r.get("timing")
        host = f"{t['networkMs']:.0f} / {t['readBackMs']:.0f} / {t['updateMs']:.1f}" if t else "-"
        print(f"| {r['engine']} | {r['pkg']} | {r['model']} | {r['batch']} | {r['msPerStep']:.0f} | {p['dispatches']} "
              f"| {p['passes']} | {p['submits']} | {p['writes']} ({p['writeBytes'] / 1024:.0f}) | {p['readBacks']} "
              f"| {p['gpuMs']:.0f} | {100 * matmul / max(p['gpuMs'], 1e-9):.0f} % | {host} |")
    print()
    print("Slowest kernel families per step (GPU ms, dispatches):")
    for r in profiled:
        families = defaultdict(lambda: [0.0, 0])
        for k in r["profile"]["kernels"]:
            f = families[family(k["name"])]
            f[0] += k["ms"]
            f[1] += k["count"]
        top = sorted(families.items(), key=lambda kv: -kv[1][0])[:5]
        text = ", ".join(f"{name} {ms:.0f} ({n})" for name, (ms, n) in top)
        print(f"- {r['engine']} {r['pkg']} {r['model']} batch {r['batch']}: {text}")


def main():
    data = json.load(open(sys.argv[1]))
    rows = data["results"] if isinstance(data, dict) else data
    for r in rows:
        r.setdefault("pkg", "pkg")
    speed_table(rows)
    profile_table(rows)


if __name__ == "__main__":
    main()
