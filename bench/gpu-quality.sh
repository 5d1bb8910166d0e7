#!/usr/bin/env bash
# Issue 13's quality sweep, issue 12's native sampler speed and the sampler study, in one call on
# a lent GPU (what session 10 ran; docs/gpu.md): bench/gpu-eval.sh and bench/gpu.sh, each under
# the call's deadline.
#
#   TRAINER=gpu-bin/trainer DATA=data/mnist CLASSIFIER=classifier.mpk \
#     F16=mnist-f16.safetensors bench/gpu-quality.sh OUT            # on the GPU machine
#   BACKEND=cpu SPEED_BACKENDS=cpu QUICK=1 TORCH=0 PER_CLASS=1 GUIDANCES=1 STUDY="ddpm 2 1.5 S" \
#     TRAINER=... DATA=... CLASSIFIER=... bench/gpu-quality.sh /tmp/dry   # logic check here
#
# Writes OUT/sweep (bench/gpu-eval.sh: both models, f16/int8/int4, DPM-Solver++ 20 steps),
# OUT/speed (bench/gpu.sh's sampler and PyTorch stages: bench-gpu.json for bench/gpu_table.py) and
# OUT/study/<sampler>-<steps>-g<guidance> (bench/gpu-eval.sh on the shipped files). Only JSON, logs
# and pictures: the sweep's copies of the weight files are deleted at the end, so OUT packs small.
set -u
out=${1:?usage: bench/gpu-quality.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
: "${TRAINER:?TRAINER must name the trainer binary}" "${DATA:?DATA must name the MNIST folder}"
: "${CLASSIFIER:?CLASSIFIER must name a trainer classifier file}"
export TRAINER DATA CLASSIFIER BACKEND=${BACKEND:-cuda}
deadline=${DEADLINE:-$(( $(date +%s) + 560 ))}
mkdir -p "$out/study"

# 1. The sweep: both models, f16/int8/int4, guidance 1 2 5 3 (then 1.5 if time is left).
GUIDANCES="${GUIDANCES:-1 2 5 3 1.5}" DEADLINE=$(( deadline - ${RESERVE:-320} )) \
  "$root/bench/gpu-eval.sh" "$out/sweep" > "$out/sweep.log" 2>&1
tail -30 "$out/sweep.log"

# 2. One guided DPM-Solver++ step for 16 and 100 images on each backend; PyTorch in the same call.
STAGES="sample torch" BACKENDS="${SPEED_BACKENDS:-wgpu cuda}" BF16=0 \
  DEADLINE=$(( deadline - ${STUDY_RESERVE:-200} )) "$root/bench/gpu.sh" "$out/speed"

# 3. The sampler study: the shipped files under ancestral DDPM at fewer steps and guidances.
# STUDY: "sampler steps guidance files [lo,hi]; ..." (files: M for mnist, S for mnist-cpu, M,S for
# both; lo,hi: guide only those timesteps). The default: guidance on part of the steps for mnist
# (session 11 measured it for mnist-cpu on the CPU; docs/eval-guidance-interval.json). Needs a
# trainer built from session 11 on (--cfg-interval).
M=$root/www/weights/mnist.safetensors; S=$root/www/weights/mnist-cpu.safetensors
IFS=';' read -r -a specs <<< "${STUDY:-ddpm 20 3 M 0,330;ddpm 20 2 M 0,330;ddpm 20 2 M 0,250;ddpm 20 1.5 M 0,330;ddpm 20 4 M 0,250;ddpm 20 1.25 M;ddpm 20 3 S 0,300;ddpm 20 4 S 0,250}"
for spec in "${specs[@]}"; do
  set -- $spec
  files=(); [[ $4 == *M* ]] && files+=("$M"); [[ $4 == *S* ]] && files+=("$S")
  name=$1-$2-g$3${5:+-t${5/,/-}}
  SAMPLER=$1 SAMPLER_STEPS=$2 GUIDANCES=$3 CFG_INTERVAL=${5:-} WEIGHTS="${files[*]}" BATCH=1000 \
    DEADLINE=$deadline "$root/bench/gpu-eval.sh" "$out/study/$name" > "$out/study/$name.log" 2>&1
  tail -n "${#files[@]}" "$out/study/$name.log"
done
rm -f "$out"/sweep/*.safetensors
