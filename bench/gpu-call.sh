#!/usr/bin/env bash
# One device call, run in the repository root on a lent GPU machine with `gpu-run/` carried
# (docs/gpu.md, "Session 16"): unpacks the trainer and the Vulkan loader, runs one part, and
# leaves at most 8 files of at most 16 MiB in OUT (what comes back from a call).
#
#   bash bench/gpu-call.sh kernels   # issues 12 and 13: sampler steps on cuda, wgpu with the
#                                    # page's own kernels and with burn's, PyTorch; `generate`
#                                    # of 1,000 digits on cuda
#   bash bench/gpu-call.sh train     # issue 13: trains `mnist` on from gpu-run/mnist-f16, exports,
#                                    # and judges the new files beside the shipped one
#   bash bench/gpu-call.sh long      # issue 13: one schedule of STEPS steps over several calls on
#                                    # a machine kept warm (call again within 30 s): each call
#                                    # resumes /tmp/g/long, trains until RESERVE s before its
#                                    # end, exports; STUDY's cells judge (give them to the last);
#                                    # the first call also checks and times burn's fusion
#                                    # when gpu-run/trainer-fusion.xz is there (READ_AB=1:
#                                    # --read-every 1 against 20 and a profile as well)
#   OUT=/tmp/dry GPU_RUN=... BACKENDS=cpu BACKEND=cpu QUICK=1 bash bench/gpu-call.sh ...  # here
#
# gpu-run/ holds trainer.xz (the stripped `--features cuda,wgpu` build), gl/*.deb (libvulkan1
# and libglvnd: docs/gpu.md), data/mnist/, classifier.mpk and mnist-f16.safetensors (the f16
# export of the latest GPU run, the one the page's int8 file came from: session 16's). Files
# unpacked into /tmp/g stay there while the machine stays warm, so a second call skips that.
# Environment: SECONDS_LEFT (the call's time limit, 560; parts stop early enough to pack),
# BUDGET (training seconds, 360), for `long` STEPS (2700), RESERVE (seconds kept for export,
# judging and packing, 60) and INIT (the weights a new run starts from: gpu-run/mnist-f16, else
# the shipped int8 file), and for a dry run GPU_RUN, BACKENDS, BACKEND, QUICK, STUDY.
set -u
part=${1:?usage: bench/gpu-call.sh kernels|train|long}
out=${OUT:?OUT must name the folder that comes back}
run=${GPU_RUN:-gpu-run}
root=$(pwd)
started=$(date +%s)
ends=$(( started + ${SECONDS_LEFT:-560} ))
work=${WORK:-/tmp/g}
mkdir -p "$work" "$out"

if [ ! -x "$work/trainer" ]; then
  if [ -f "$run/trainer.xz" ]; then xz -dc "$run/trainer.xz" > "$work/trainer"; else cp "$run/trainer" "$work/trainer"; fi
  chmod +x "$work/trainer"
fi
if [ -d "$run/gl" ] && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$run"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
. "$root/bench/gpu-env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
export TRAINER=$work/trainer

case $part in
kernels)
  # Sampler steps: cuda, wgpu (own kernels and burn's), PyTorch fp32 (TF32 off), 16 and 100 images.
  STAGES="sample torch" BF16=0 TORCH_SPECS="mnist,64,16 mnist,256,100" DEADLINE=$(( ends - 40 )) \
    bench/gpu.sh "$work/kernels"
  cp "$work/kernels/bench-gpu.json" "$out/" 2>/dev/null
  # `trainer generate` of 1,000 digits (100 of each) on cuda, per network batch size: the same
  # images whatever the batch, so the first and last PNGs are compared too.
  labels=$(for _ in $(seq "${GEN_PER_CLASS:-100}"); do echo 0 1 2 3 4 5 6 7 8 9; done)
  : > "$work/generate.jsonl"
  batches=${GEN_BATCHES:-32 250 1000}
  for batch in $batches; do
    [ $(( $(date +%s) + 30 )) -lt "$ends" ] || break
    t0=$(date +%s%N)
    timeout $(( ends - $(date +%s) - 10 )) "$TRAINER" generate --backend "${BACKEND:-cuda}" \
      --weights www/weights/mnist.safetensors --labels $labels --sampler ddpm --steps 20 --cfg 1.25 \
      --seed 7 --batch "$batch" --out "$work/gen-$batch" > "$work/gen-$batch.log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    sum=$(cat "$work/gen-$batch"/0*.png 2>/dev/null | sha256sum | cut -c1-16)
    echo "{\"kind\":\"generate\",\"backend\":\"${BACKEND:-cuda}\",\"images\":$(echo $labels | wc -w),\"batch\":$batch,\"rc\":$rc,\"seconds\":$(( (t1 - t0) / 1000000 ))e-3,\"png_sha256_16\":\"$sum\"}" | tee -a "$work/generate.jsonl"
  done
  cp "$work/generate.jsonl" "$out/"
  cp "$work/gen-${batches%% *}/grid.png" "$out/generate-grid.png" 2>/dev/null
  tar czf "$out/kernels-logs.tar.gz" -C "$work" kernels/logs $(cd "$work" && ls gen-*.log)
  ;;
train)
  # Training `mnist` on from gpu-run/mnist-f16 (the latest GPU run's f16 export), alone on the GPU.
  MODELS=mnist MNIST_INIT=$run/mnist-f16.safetensors DATA=$run/data/mnist \
    CLASSIFIER=$run/classifier.mpk BUDGET=${BUDGET:-360} GRACE=${GRACE:-30} \
    DEADLINE=$(( ends - 35 )) CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-250} \
    STUDY="${STUDY:-ddpm 20 1.25 M,O;ddpm 20 1 M;ddpm 20 1.5 M;ddpm 20 1.5 M 0,330;ddpm 20 1.25 I,F;ddpm 20 1.25 M 0,330;ddpm 20 2 M 0,330}" \
    bench/gpu-continue.sh "$work/train"
  # Back: the new int8 and int4 files, the f16 one in xz parts, and one archive of the rest.
  cp "$work"/train/new/mnist-int8.safetensors "$work"/train/new/mnist-int4.safetensors "$out/" 2>/dev/null
  if [ -f "$work/train/new/mnist-f16.safetensors" ]; then
    xz -T0 -c "$work/train/new/mnist-f16.safetensors" | split -b 15M - "$out/mnist-f16.safetensors.xz.part-"
  fi
  tar czf "$out/train.tar.gz" -C "$work/train" --exclude='*.safetensors' --exclude=checkpoints .
  ;;
long)
  # `trainer bench` of `mnist` at the training batch: at most $1 seconds of binary $2, then the
  # rest of the arguments.
  bench_mnist() {
    local seconds=$1 bin=$2; shift 2
    timeout "$seconds" "$bin" bench --preset mnist --backend "${BACKEND:-cuda}" --batch-size "${BATCH_M:-256}" "$@"
  }
  # One schedule across calls: the trainer resumes $work/long/mnist when a checkpoint is there (a
  # machine still warm from the last call), else starts from INIT. `timeout`'s SIGTERM at the
  # budget's end makes it checkpoint the step in flight and stop (exit 130).
  # With READ_AB=1, first call only (no checkpoint yet): the trainer's step time reading the loss
  # back every step against every 20 (the cuda default since session 18), alternating, in one
  # process (~40 s), then a profile of the step (`trainer bench --profile`), all in
  # read-every.jsonl. Session 19 measured both (docs/gpu-session19/), so it is off by default.
  if [ "${READ_AB:-0}" != 0 ] && [ ! -e "$work/long/mnist/checkpoints/latest" ]; then
    bench_mnist 90 "$TRAINER" --warmup 10 --steps "${AB_STEPS:-30}" --read-every 1,20,1,20 \
      > "$out/read-every.jsonl" 2> "$work/read-every.log"
    echo "read-every A/B: rc $?"; cat "$out/read-every.jsonl"
    # Where a step's time goes: each phase alone between device synchronisations (~20 s).
    bench_mnist 60 "$TRAINER" --profile --warmup 3 --steps "${PROFILE_STEPS:-10}" \
      >> "$out/read-every.jsonl" 2>> "$work/read-every.log"
    echo "profile: rc $?"; tail -1 "$out/read-every.jsonl"
  fi
  # burn's fusion (gpu-run/trainer-fusion.xz, built with --features cuda,wgpu,burn/fusion), first
  # call only: its gradients against the CPU's, its step time beside this binary's, and a
  # profile, all in fusion.jsonl. Training uses it from then on (this call and the next, recorded
  # in $work/train-binary) when the check passes and its step is at least 10 % shorter, for a
  # schedule as much longer as its step is shorter.
  if [ -f "$run/trainer-fusion.xz" ] && [ ! -e "$work/long/mnist/checkpoints/latest" ]; then
    [ -x "$work/trainer-fusion" ] || { xz -dc "$run/trainer-fusion.xz" > "$work/trainer-fusion"; chmod +x "$work/trainer-fusion"; }
    timeout "${FUSION_CHECK_S:-150}" "$work/trainer-fusion" check-step --preset mnist --backend "${BACKEND:-cuda}" \
      --reference cpu --batch-size 8 --json "$work/fusion-check.json" > "$work/fusion-check.log" 2>&1
    check=$?
    tail -2 "$work/fusion-check.log"
    python3 - "$work/fusion-check.json" "$check" >> "$out/fusion.jsonl" <<'PY'
import json, sys
row = {"kind": "check-step", "build": "fusion", "rc": int(sys.argv[2])}
try:
    d = json.load(open(sys.argv[1]))
    row.update(loss=d["loss"], grad_norm=d["grad_norm"],
               worst_relative_gradient_error=max(p["relative"] for p in d["params"]))
except (OSError, ValueError, KeyError):
    pass
print(json.dumps(row))
PY
    for build in plain fusion; do
      bin=$TRAINER; [ "$build" = fusion ] && bin=$work/trainer-fusion
      bench_mnist 90 "$bin" --warmup 10 --steps "${AB_STEPS:-30}" 2>> "$work/fusion.log" |
        sed "s/^{/{\"build\":\"$build\",/" >> "$out/fusion.jsonl"
    done
    bench_mnist 60 "$work/trainer-fusion" --profile --warmup 3 --steps "${PROFILE_STEPS:-10}" 2>> "$work/fusion.log" |
      sed 's/^{/{"build":"fusion",/' >> "$out/fusion.jsonl"
    cat "$out/fusion.jsonl"
    # The schedule grows with the speed: STEPS is for the plain binary's step time.
    python3 - "$out/fusion.jsonl" "$work/trainer-fusion" "$TRAINER" "${STEPS:-2700}" > "$work/train-binary" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
check = next((r for r in rows if r.get("kind") == "check-step"), {})
ms = {r["build"]: r["ms_per_step"] for r in rows if r.get("kind") == "train"}
fast = "plain" in ms and "fusion" in ms and ms["fusion"] < 0.9 * ms["plain"]
steps = int(sys.argv[4])
if check.get("rc") == 0 and fast:
    print(sys.argv[2], round(steps * ms["plain"] / ms["fusion"] / 100) * 100)
else:
    print(sys.argv[3], steps)
PY
    echo "training with: $(cat "$work/train-binary") (binary, steps)"
  fi
  if [ -s "$work/train-binary" ]; then read -r TRAINER STEPS < "$work/train-binary"; export TRAINER; fi
  left=$(( ends - ${RESERVE:-60} - $(date +%s) ))
  [ "$left" -gt 30 ] || { echo "no time to train: $left s" >&2; exit 1; }
  init=${INIT:-$run/mnist-f16.safetensors}
  [ -f "$init" ] || init=www/weights/mnist.safetensors
  MODELS=mnist MNIST_INIT=$init DATA=$run/data/mnist \
    CLASSIFIER=$run/classifier.mpk BUDGET=$left GRACE=0 FIXED_STEPS=${STEPS:-2700} \
    BATCH_M=${BATCH_M:-256} LR_M=${LR_M:-1e-3} DEADLINE=$(( ends - 35 )) \
    CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-500} STUDY="${STUDY-}" \
    bench/gpu-continue.sh "$work/long"
  cp "$work"/long/new/mnist-int8.safetensors "$work"/long/new/mnist-int4.safetensors "$out/" 2>/dev/null
  if [ -f "$work/long/new/mnist-f16.safetensors" ]; then
    xz -T0 -c "$work/long/new/mnist-f16.safetensors" | split -b 15M - "$out/mnist-f16.safetensors.xz.part-"
  fi
  tar czf "$out/train.tar.gz" -C "$work/long" --exclude='*.safetensors' --exclude=checkpoints .
  ;;
*) echo "unknown part $part" >&2; exit 2 ;;
esac
ls -la "$out"
echo "gpu-call $part: $(( $(date +%s) - started )) s"
