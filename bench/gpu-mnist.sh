#!/usr/bin/env bash
# Trains the reference-scale MNIST model (`mnist` preset) on a lent GPU within a time budget,
# exports it (f16, int8, int4), draws digit grids and scores it (bench/gpu-eval.sh): issue 13's
# GPU run in one command.
#
#   TRAINER=gpu-bin/trainer DATA=path/to/mnist bench/gpu-mnist.sh OUT     # on the GPU machine
#   BACKEND=cpu BUDGET=20 BATCH=8 PER_CLASS=1 GUIDANCES=3 TRAINER=... DATA=... \
#     CLASSIFIER=... bench/gpu-mnist.sh /tmp/dry                            # logic check here
#
# The step count is chosen from the measured speed so that training takes about BUDGET seconds
# with a whole cosine schedule (a time limit that cut the schedule short would leave the learning
# rate high). Environment: TRAINER, DATA (the four MNIST files), BACKEND (cuda), BUDGET (training
# seconds, 270), BATCH (128), LR (5e-4), WARMUP (100), SEED (1), INIT (a weight file to continue
# from; unset: random weights), CLASSIFIER, PER_CLASS, GUIDANCES and DEADLINE (passed to
# gpu-eval.sh), GRIDS (guidances to draw grids at; default "2 3"), COMPARE (more weight files
# scored beside the new ones), SAMPLE_EVERY (steps between sample grids; default a tenth).
# Writes OUT/run (the run folder), OUT/mnist-{f16,int8,int4}.safetensors, OUT/grid-cfgG.png,
# OUT/eval (the sweep) and OUT/train.json (the step count, the measured speed, the wall time).
set -u
out=${1:?usage: bench/gpu-mnist.sh OUT_DIR}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
trainer=${TRAINER:-gpu-bin/trainer}
data=${DATA:?DATA must name the MNIST folder}
backend=${BACKEND:-cuda}
budget=${BUDGET:-270}
batch=${BATCH:-128}
lr=${LR:-5e-4}
warmup=${WARMUP:-100}
seed=${SEED:-1}
[ -x "$trainer" ] || { echo "no trainer binary at $trainer" >&2; exit 1; }
. "$root/bench/gpu-env.sh"

# 1. Speed at this batch (kernels compiled and tuned in the warm-up steps), then the step count.
"$trainer" bench --preset mnist --batch-size "$batch" --backend "$backend" --warmup 3 --steps 10 \
  > "$out/speed.json" || { echo "trainer bench failed" >&2; exit 1; }
steps=$(python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(max(int(r['images_per_sec'] * $budget / $batch), $warmup + 10))" "$out/speed.json")
echo "training $steps steps of $batch ($(tail -1 "$out/speed.json"))"

# 2. Train. The schedule's length is fixed up front; a run stopped by the limit below still has
#    its checkpoints (every 500 steps) to export from.
started=$(date +%s)
timeout $(( budget * 2 + 120 )) "$trainer" train --preset mnist --label-dropout 0.1 \
  --backend "$backend" --data "$data" --run "$out/run" --steps "$steps" --batch-size "$batch" \
  --lr "$lr" --warmup "$warmup" --ema-warmup --grad-clip 1.0 --checkpoint-every 500 \
  --keep-every 1000000 --sample-every "${SAMPLE_EVERY:-$(( (steps + 9) / 10 ))}" --seed "$seed" \
  ${INIT:+--init-weights "$INIT"} > "$out/train.log" 2>&1
rc=$?
seconds=$(( $(date +%s) - started ))
echo "train: rc=$rc, $seconds s"
python3 - "$out" "$steps" "$batch" "$lr" "$rc" "$seconds" "${INIT:-}" <<'PY'
import json, sys
out, steps, batch, lr, rc, seconds, init = sys.argv[1:]
speed = json.loads(open(f"{out}/speed.json").read().splitlines()[-1])
json.dump({"steps": int(steps), "batch": int(batch), "lr": float(lr), "rc": int(rc),
           "wall_seconds": int(seconds), "init_weights": init or None, "speed": speed},
          open(f"{out}/train.json", "w"), indent=1)
PY

# 3. Export the EMA weights as the page loads them.
for q in f16 int8 int4; do
  "$trainer" export --run "$out/run" --quant "$q" --out "$out/mnist-$q.safetensors" \
    > "$out/export-$q.log" 2>&1 || echo "export $q failed"
done

# 4. Ten of each digit at each guidance, for people to look at.
labels=$(for i in $(seq 0 9); do for d in $(seq 0 9); do printf '%s ' "$d"; done; done)
for g in ${GRIDS:-2 3}; do
  "$trainer" generate --weights "$out/mnist-int8.safetensors" --labels $labels --cfg "$g" \
    --seed 7 --backend "$backend" --out "$out/grid-cfg$g" > "$out/grid-cfg$g.log" 2>&1 &&
    cp "$out/grid-cfg$g/grid.png" "$out/grid-cfg$g.png"
  rm -rf "$out/grid-cfg$g"
done

# 5. The judge: the new files, and whatever COMPARE names, at each guidance.
WEIGHTS="$out/mnist-f16.safetensors $out/mnist-int8.safetensors $out/mnist-int4.safetensors ${COMPARE:-}" \
  TRAINER="$trainer" DATA="$data" BACKEND="$backend" "$root/bench/gpu-eval.sh" "$out/eval"
