#!/usr/bin/env bash
# The quality sweep of the shipped MNIST models (issue 13) in one call: `trainer eval` on both
# models at guidance 1, 2, 3 and 5, f16 against int8 against int4, 100 digits per class. On a
# GPU it takes minutes; on this project's 2-core CPU one guidance of the large model alone takes
# about 70 minutes, which is why it is a script for a lent GPU.
#
#   TRAINER=gpu-bin/trainer DATA=path/to/mnist bench/gpu-eval.sh OUT          # on the GPU machine
#   BACKEND=cpu PER_CLASS=1 GUIDANCES=3 TRAINER=target/debug/trainer \
#     DATA=../shared/data/mnist bench/gpu-eval.sh /tmp/dry                     # logic check here
#
# Environment: TRAINER, DATA (the four MNIST files), BACKEND (default cuda), PER_CLASS (100),
# GUIDANCES ("1 2 3 5"), SAMPLER and SAMPLER_STEPS (dpm++, 20), CFG_INTERVAL (LO,HI: guide only
# those timesteps; default every step), BATCH (images per network call, 200), CLASSIFIER (a
# `trainer classifier` file; trained into OUT first when absent, about a minute on 16 cores), F16
# (the large model's f16 export; default ../shared/runs/mnist-h200/mnist-f16.safetensors), WEIGHTS
# (the weight files to score, space-separated, instead of the list above), DEADLINE (a time in
# seconds since 1970 after which no eval runs; one still running then is stopped), SEED (the
# noise's seed, 0).
# Writes OUT/eval-cfgG.json per guidance and OUT/eval-sweep.json (all rows, tagged).
set -eu
out=${1:?usage: bench/gpu-eval.sh OUT_DIR}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
trainer=${TRAINER:-gpu-bin/trainer}
data=${DATA:?DATA must name the MNIST folder}
backend=${BACKEND:-cuda}
per_class=${PER_CLASS:-100}
guidances=${GUIDANCES:-1 2 3 5}
batch=${BATCH:-200}
sampler=${SAMPLER:-dpm++}
steps=${SAMPLER_STEPS:-20}
seed=${SEED:-0}
interval=()
[ -n "${CFG_INTERVAL:-}" ] && interval=(--cfg-interval "$CFG_INTERVAL")
f16=${F16:-$root/../shared/runs/mnist-h200/mnist-f16.safetensors}
[ -x "$trainer" ] || { echo "no trainer binary at $trainer" >&2; exit 1; }

. "$root/bench/gpu-env.sh"

classifier=${CLASSIFIER:-$out/classifier.mpk}
if [ ! -f "$classifier" ]; then
  "$trainer" classifier --data "$data" --out "$classifier" | tee "$out/classifier.log"
fi

# The files scored: what the page ships (int8), and the same weights as f16 and int4.
weights=()
if [ -n "${WEIGHTS:-}" ]; then
  read -r -a weights <<< "$WEIGHTS"
else
  mnist_cpu=$out/mnist-cpu-int8.safetensors
  cp "$root/www/weights/mnist-cpu.safetensors" "$mnist_cpu"
  "$trainer" export --weights "$mnist_cpu" --quant int4 --out "$out/mnist-cpu-int4-from-int8.safetensors"
  weights+=("$mnist_cpu" "$out/mnist-cpu-int4-from-int8.safetensors")
  cp "$root/www/weights/mnist.safetensors" "$out/mnist-int8.safetensors"
  weights+=("$out/mnist-int8.safetensors")
  if [ -f "$f16" ]; then
    cp "$f16" "$out/mnist-f16.safetensors"
    "$trainer" export --weights "$f16" --quant int4 --out "$out/mnist-int4.safetensors"
    weights+=("$out/mnist-f16.safetensors" "$out/mnist-int4.safetensors")
  else
    echo "no f16 export at $f16: the large model is scored as int8 only" >&2
  fi
fi

for g in $guidances; do
  started=$(date +%s)
  left=$(( ${DEADLINE:-$(( started + 100000 ))} - started ))
  if [ "$left" -lt 20 ]; then echo "guidance $g: skipped, out of time"; continue; fi
  timeout "$left" "$trainer" eval --weights "${weights[@]}" --data "$data" \
    --classifier "$classifier" --sampler "$sampler" --steps "$steps" --cfg "$g" "${interval[@]}" \
    --per-class "$per_class" --batch "$batch" --seed "$seed" \
    --backend "$backend" --json "$out/eval-cfg$g.json" > "$out/eval-cfg$g.log" 2>&1 ||
    echo "guidance $g: failed or stopped (rc $?)"
  cat "$out/eval-cfg$g.log"
  echo "guidance $g: $(( $(date +%s) - started )) s"
done

python3 - "$out" "$backend" $guidances <<'PY'
import json, sys
out, backend, guidances = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for g in guidances:
    try:
        scored = json.load(open(f"{out}/eval-cfg{g}.json"))
    except (OSError, ValueError):
        continue
    for row in scored:
        row["images"] = row["images"].replace(out + "/", "")
        rows.append({"guidance": float(g), "backend": backend, **row})
json.dump(rows, open(f"{out}/eval-sweep.json", "w"), indent=1)
for r in rows:
    s = r["scores"]
    print(f'{r["guidance"]:>4} {r["images"]:<60} {100 * s["accuracy"]:6.1f} % {s["fid"]:8.1f}')
PY
