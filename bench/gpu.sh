#!/usr/bin/env bash
# What dit-web measures on a GPU machine, in named stages (`make bench-gpu`; docs/gpu.md):
#
#   bench/gpu.sh OUT [STAGE ...]
#
#   check   the step checker: celeba batch 8 and mnist batch 64 against the CPU, celeba batch
#           112 against the same batch in micro-batches of 8 on the GPU (`trainer check-step`)
#   train   training throughput: mnist batch 64 and 256, celeba batch 112 (`trainer bench`)
#   learn   a short celeba run on generated shapes (`trainer shapes`), stopped half-way with
#           Ctrl-C's signal and resumed, then one sample grid per label (`trainer generate`)
#   sample  guided sampler steps of 16 and 100 mnist images (`trainer bench --sample`)
#   eval    `trainer eval` of the weight files in www/weights (needs DATA)
#   torch   the PyTorch reference network on the same GPU: fp32, TF32 and bf16 autocast
#
# Default stages: check train learn sample torch. Every step has its own time limit; a failed
# step is recorded and the next one runs. Writes OUT/bench-gpu.json (every result line, tagged
# with its step and build), OUT/learn/ (the run's loss curve, progress GIF, metrics and grids)
# and OUT/logs.tar.gz; `python3 bench/gpu_table.py OUT/bench-gpu.json` prints the ratios.
#
# Environment:
#   TRAINER   the trainer binary (`make cuda`; default target/release/trainer): build "plain"
#   FUSED     optional, a trainer built with `--features cuda,gpu-fusion` (burn's kernel fusion,
#             no autotune): build "fusion"
#   TUNED     optional, a trainer built with `--features cuda,gpu-tuned` (autotune and fusion),
#             run twice: "tuned" pays for the tuning, "tuned-cached" reads the cache it wrote
#   BACKEND   cuda (default), wgpu, or cpu to check this script's logic on a machine without a GPU
#   QUICK=1   small sizes and a small network, for that check
#   LEARN_STEPS  steps of the learn stage's run (default 400; stopped at half and resumed)
#   DATA, CLASSIFIER  for eval: the MNIST folder and a `trainer classifier` file (trained into
#             OUT when absent)
#   DEADLINE  seconds since 1970: no step starts after it and a running one stops at it
set -u
out=${1:?usage: bench/gpu.sh OUT [check train learn sample eval torch]}
shift
stages=${*:-check train learn sample torch}
here=$(cd "$(dirname "$0")" && pwd)
trainer=${TRAINER:-target/release/trainer}
backend=${BACKEND:-cuda}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
results="$out/results.jsonl"
: > "$results"
[ -x "$trainer" ] || { echo "no trainer binary at $trainer (make cuda)" >&2; exit 1; }

# Where a GPU machine keeps the CUDA driver and NVRTC that burn-cuda loads at run time, and the
# NVIDIA Vulkan driver for wgpu.
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/targets/x86_64-linux/lib:$(ls -d /usr/local/cuda-*/targets/x86_64-linux/lib 2>/dev/null | tr '\n' ':')"
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

# The builds: name and binary, in pairs. The tuned build runs twice on purpose (see above).
builds=(plain "$trainer")
[ -n "${FUSED:-}" ] && builds+=(fusion "$FUSED")
[ -n "${TUNED:-}" ] && builds+=(tuned "$TUNED" tuned-cached "$TUNED")

if [ "${QUICK:-0}" = 1 ]; then
  warm=1 steps=2 big=4 micro=2 mnist_big=8 limit=600 learn_steps=${LEARN_STEPS:-200}
  net=(--hidden-size 32 --depth 1 --num-heads 2 --patch-size 16)
else
  warm=3 steps=20 big=112 micro=8 mnist_big=256 limit=300 learn_steps=${LEARN_STEPS:-400}
  net=()
fi

# step NAME TAGS COMMAND...: runs COMMAND under a time limit; every JSON line it prints is kept
# with TAGS (a JSON object) merged in; its exit status and seconds go into the results too.
step() {
  local name=$1 tags=$2; shift 2
  local started budget=$limit
  started=$(date +%s)
  if [ -n "${DEADLINE:-}" ]; then
    budget=$(( DEADLINE - started < limit ? DEADLINE - started : limit ))
    if [ "$budget" -lt 10 ]; then echo "$name: skipped, out of time"; return; fi
  fi
  timeout -s INT -k 10 "$budget" "$@" > "$out/logs/$name.log" 2>&1
  local rc=$?
  python3 - "$out/logs/$name.log" "$name" "$tags" "$rc" "$(( $(date +%s) - started ))" >> "$results" <<'PY'
import json, sys
log, name, tags, rc, seconds = sys.argv[1:]
text = open(log, errors="replace").read()
tags = {**json.loads(tags), "step": name, "rc": int(rc), "seconds": int(seconds)}
rows = []
for line in text.splitlines():
    if line.startswith("{"):
        try:
            rows.append({**json.loads(line), **tags})
        except ValueError:
            pass
print("\n".join(json.dumps(r) for r in rows) or json.dumps({**tags, "log_tail": text[-600:]}))
PY
  echo "$name: rc=$rc ($(( $(date +%s) - started )) s)"
}

check() {
  local build=$1 bin=$2 tag="{\"kind\":\"check\",\"build\":\"$1\"}"
  step "check-celeba-b8-$build" "$tag" "$bin" check-step --preset celeba "${net[@]}" \
    --batch-size 8 --backend "$backend" --reference cpu --json "$out/logs/check-celeba-b8-$build.json"
  step "check-mnist-b64-$build" "$tag" "$bin" check-step --preset mnist --batch-size 64 \
    --backend "$backend" --reference cpu --json "$out/logs/check-mnist-b64-$build.json"
  step "check-celeba-b$big-micro-$build" "$tag" "$bin" check-step --preset celeba "${net[@]}" \
    --batch-size "$big" --backend "$backend" --reference "$backend" --reference-micro-batch "$micro" \
    --json "$out/logs/check-celeba-micro-$build.json"
}

train() {
  local build=$1 bin=$2 tag="{\"build\":\"$1\"}"
  step "train-mnist-b64-$build" "$tag" "$bin" bench --preset mnist --batch-size 64 \
    --backend "$backend" --warmup "$warm" --steps "$steps"
  step "train-mnist-b$mnist_big-$build" "$tag" "$bin" bench --preset mnist --batch-size "$mnist_big" \
    --backend "$backend" --warmup "$warm" --steps "$steps"
  step "train-celeba-b$big-$build" "$tag" "$bin" bench --preset celeba "${net[@]}" --batch-size "$big" \
    --backend "$backend" --warmup "$warm" --steps "$steps"
}

sample() {
  local build=$1 bin=$2 tag="{\"build\":\"$1\"}" n
  for n in 16 100; do
    step "sample-mnist-$n-$build" "$tag" "$bin" bench --sample --preset mnist --batch-size "$n" \
      --backend "$backend" --warmup "$warm" --steps "$steps"
  done
}

# The run is stopped with SIGINT (what Ctrl-C sends) once half its steps are in metrics.jsonl,
# which checkpoints the step in flight; `--resume` then finishes the same schedule.
learn() {
  local work=$out/learn run=$out/learn/run half=$(( learn_steps / 2 )) pid
  local tag='{"kind":"learn","build":"plain"}'
  mkdir -p "$work"
  step learn-shapes "$tag" "$trainer" shapes --out "$work/shapes" --images 2000
  local args=(train --preset celeba "${net[@]}" --data "$work/shapes" --run "$run"
    --backend "$backend" --steps "$learn_steps" --batch-size "$big" --lr 3e-4 --warmup 50
    --ema-decay 0.999 --ema-warmup --sample-every $(( learn_steps / 4 ))
    --checkpoint-every 100 --read-every 10)
  "$trainer" "${args[@]}" > "$out/logs/learn-first.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [ "$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)" -ge "$half" ] && kill -INT "$pid" && break
    sleep 0.2
  done
  wait "$pid"
  local rc=$? rows
  rows=$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)
  echo "{\"kind\":\"learn\",\"step\":\"learn-first\",\"rc\":$rc,\"rows\":$rows}" >> "$results"
  step learn-resume "$tag" "$trainer" "${args[@]}" --resume
  step learn-generate "$tag" "$trainer" generate --run "$run" --labels female female female \
    female male male male male --sampler ddpm --steps 100 --cfg 2 --clip-x0 --seed 3 --backend "$backend" \
    --out "$work/grid"
  cp "$run/metrics.jsonl" "$run/run.json" "$run/loss.png" "$run/progress.gif" "$work/" 2>/dev/null
  cp "$work/grid/grid.png" "$work/generated.png" 2>/dev/null
  rm -rf "$work/shapes" "$work/grid" "$run"
}

eval_models() {
  [ -n "${DATA:-}" ] || { echo "eval: skipped, no DATA"; return; }
  local classifier=${CLASSIFIER:-$out/classifier.mpk}
  [ -f "$classifier" ] || step classifier '{"kind":"eval"}' "$trainer" classifier --data "$DATA" --out "$classifier"
  step eval '{"kind":"eval"}' "$trainer" eval --weights www/weights/*.safetensors --data "$DATA" \
    --classifier "$classifier" --backend "$backend" --batch 1000 --json "$out/eval.json"
}

torch_reference() {
  python3 -c "import torch" 2>/dev/null || { echo "torch: skipped, no PyTorch"; return; }
  local device precision spec
  device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  for precision in fp32 tf32 bf16; do
    local flag=()
    [ "$precision" = fp32 ] || flag=("--$precision")
    for spec in "mnist 64 16" "mnist $mnist_big 100" "celeba $big 16"; do
      set -- $spec
      step "torch-$1-b$2-$precision" "{\"kind\":\"torch\",\"precision\":\"$precision\"}" \
        python3 "$here/torch/torch_reference.py" --device "$device" --preset "$1" --batch "$2" \
        --sample-batch "$3" --label-dropout 0.1 --iters "$steps" --warmup "$warm" --threads 16 "${flag[@]}"
    done
  done
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/logs/gpu.txt" 2>&1 ||
  echo "no GPU ($backend)" > "$out/logs/gpu.txt"
for stage in $stages; do
  case $stage in
    check|train|sample)
      for (( i = 0; i < ${#builds[@]}; i += 2 )); do "$stage" "${builds[i]}" "${builds[i+1]}"; done ;;
    learn) learn ;;
    eval) eval_models ;;
    torch) torch_reference ;;
    *) echo "unknown stage $stage (check train learn sample eval torch)" >&2 ;;
  esac
done

# The step checker's worst parameters, from the JSON each check wrote.
for f in "$out"/logs/check-*.json; do
  [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({'kind':'check-detail','file':sys.argv[1].split('/')[-1],'loss':d['loss'],'grad_norm':d['grad_norm'],'worst':d['params'][:5]}))" "$f" >> "$results"
done
python3 - "$results" "$out/bench-gpu.json" "$out/logs/gpu.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gpu = open(sys.argv[3], errors="replace").read().strip()
json.dump({"gpu": gpu, "results": rows}, open(sys.argv[2], "w"), indent=1)
PY
tar czf "$out/logs.tar.gz" -C "$out" logs results.jsonl
echo "wrote $out/bench-gpu.json"
