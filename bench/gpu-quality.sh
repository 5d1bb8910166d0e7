#!/usr/bin/env bash
# Issue 13's quality sweep, issue 12's native sampler speed and the sampler study, in one call on
# a lent GPU (what session 10 ran; docs/gpu.md). Each step has its own time limit; later steps run
# when one fails; nothing runs past DEADLINE.
#
#   TRAINER=gpu-bin/trainer DATA=data/mnist CLASSIFIER=classifier.mpk \
#     F16=mnist-f16.safetensors bench/gpu-quality.sh OUT            # on the GPU machine
#   BACKEND=cpu PER_CLASS=1 GUIDANCES=1 STUDY_PER_CLASS=1 STUDY_LIMIT=20 TRAINER=... DATA=... \
#     CLASSIFIER=... bench/gpu-quality.sh /tmp/dry                  # logic check here
#
# Writes OUT/sweep (bench/gpu-eval.sh), OUT/speed/*.log (`trainer bench --sample` on cuda and
# wgpu, PyTorch), OUT/study/*.json (`trainer eval` per sampler) and OUT/logs. Only JSON, logs and
# pictures: the sweep's copies of the weight files are deleted at the end, so OUT packs small.
set -u
out=${1:?usage: bench/gpu-quality.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
T=${TRAINER:?TRAINER must name the trainer binary}; D=${DATA:?DATA must name the MNIST folder}
C=${CLASSIFIER:?CLASSIFIER must name a trainer classifier file}
backend=${BACKEND:-cuda}
deadline=${DEADLINE:-$(( $(date +%s) + 560 ))}
mkdir -p "$out/logs" "$out/speed" "$out/study"
. "$root/bench/gpu-env.sh"
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

# run NAME LIMIT CMD...: one step under its own limit, never past the deadline.
run() {
  local name=$1 limit=$2; shift 2
  local left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 15 ]; then echo "$name: skipped, out of time"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local started=$(date +%s)
  timeout "$limit" "$@" > "$out/logs/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $(( $(date +%s) - started )) s"
  return $rc
}

# 1. The sweep: both models, f16/int8/int4, guidance 1 2 5 3 (then 1.5 if time is left).
BACKEND=$backend TRAINER=$T DATA=$D CLASSIFIER=$C GUIDANCES="${GUIDANCES:-1 2 5 3 1.5}" \
  DEADLINE=$(( deadline - ${RESERVE:-320} )) "$root/bench/gpu-eval.sh" "$out/sweep" \
  > "$out/logs/sweep.log" 2>&1
tail -30 "$out/logs/sweep.log"

# 2. One guided DPM-Solver++ step, 20 timed, for 16 and 100 images; PyTorch in the same call.
for b in ${SPEED_BACKENDS:-wgpu cuda}; do
  for n in 16 100; do
    run sample-$b-$n 75 "$T" bench --sample --preset mnist --batch-size $n --backend $b \
      --warmup 3 --steps 20 && cp "$out/logs/sample-$b-$n.log" "$out/speed/"
  done
done
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for n in 16 100; do
    run torch-sample-$n 90 python3 "$root/bench/torch_reference.py" --device cuda --preset mnist \
      --batch 64 --sample-batch $n --label-dropout 0.1 --iters 20 --warmup 3 --threads 16 &&
      cp "$out/logs/torch-sample-$n.log" "$out/speed/"
  done
fi

# 3. The sampler study: the shipped files under ancestral DDPM at fewer steps and guidances.
M=$root/www/weights/mnist.safetensors; S=$root/www/weights/mnist-cpu.safetensors
# STUDY: "sampler steps guidance files; ..." (files: M for mnist, S for mnist-cpu, M,S for both).
IFS=';' read -r -a specs <<< "${STUDY:-ddpm 20 1.5 M;ddpm 20 1.25 M;ddpm 100 1 M,S;ddpm 100 1.5 M,S;ddpm 50 1.25 M;ddpm 100 2 M,S;ddpm 20 2 S;ddpm 20 3 S}"
for spec in "${specs[@]}"; do
  set -- $spec
  files=(); [[ $4 == *M* ]] && files+=("$M"); [[ $4 == *S* ]] && files+=("$S")
  run study-$1-$2-g$3 "${STUDY_LIMIT:-120}" "$T" eval --weights "${files[@]}" --data "$D" \
    --classifier "$C" --per-class "${STUDY_PER_CLASS:-100}" --sampler $1 --steps $2 --cfg $3 \
    --batch 1000 --backend "$backend" --json "$out/study/$1-$2-g$3.json"
done
rm -f "$out"/sweep/*.safetensors
