#!/usr/bin/env bash
# GPU measurements in one call on a bare GPU machine (`make bench-gpu`; docs/gpu.md explains how
# the trainer binary gets there). Each step has its own time limit and later steps run when an
# earlier one fails. Writes OUT/bench-gpu.json (every result line, tagged) and OUT/logs.tar.gz.
#
#   TRAINER=gpu-bin/trainer bench/gpu.sh OUT       # on the GPU machine
#   BACKENDS=cpu QUICK=1 TRAINER=target/debug/trainer bench/gpu.sh /tmp/dry   # dry run here
#
# Environment: TRAINER (binary), TUNED (a second binary built with `--features gpu-tuned`: burn's
# autotune and fusion; its rows are tagged "build":"tuned", TRAINER's "plain"), BACKENDS (default
# "cuda wgpu"; the tuned build runs on the first only), STAGES (which parts, in this order;
# default "check train sample torch"), QUICK=1 (tiny step counts, for checking the script's logic
# on a CPU), STEPS (timed steps, 20), TRAIN_BACKENDS (the plain build's training backends;
# default BACKENDS), TORCH=0 to skip the PyTorch reference, BF16=0 to skip its bf16 rows,
# TORCH_SPECS (the PyTorch runs, words "preset,batch,sample-batch"; default "mnist,64,16
# mnist,256,100 celeba,112,16"),
# DEADLINE (seconds since 1970: no step starts after it, a running one is stopped at it).
set -u
out=${1:?usage: bench/gpu.sh OUT_DIR}
mkdir -p "$out/logs"
here=$(cd "$(dirname "$0")" && pwd)
trainer=${TRAINER:-gpu-bin/trainer}
backends=${BACKENDS:-cuda wgpu}
results="$out/results.jsonl"
: > "$results"
[ -x "$trainer" ] || { echo "no trainer binary at $trainer" >&2; exit 1; }
stages=${STAGES:-check train sample torch}
# build TAGS BINARY pairs: the plain binary on every backend, the tuned one on the first.
builds=("plain" "$trainer")
[ -n "${TUNED:-}" ] && [ -x "$TUNED" ] && builds+=("tuned" "$TUNED")

# CUDA 13 driver and NVRTC, and the NVIDIA Vulkan ICD for wgpu (see ../shared/GPU_NOTES.md).
. "$here/gpu-env.sh"
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

if [ "${QUICK:-0}" = 1 ]; then warm=1; steps=2; big=4; celeba=2; limit=300; else warm=3; steps=${STEPS:-20}; big=112; celeba=112; limit=240; fi

# step NAME TAGS COMMAND...: runs COMMAND under a time limit; every JSON line it prints is kept
# with TAGS merged in; the exit status goes into the log and the results.
step() {
  local name=$1 tags=$2; shift 2
  local started=$(date +%s) budget=$limit
  if [ -n "${DEADLINE:-}" ]; then
    budget=$(( DEADLINE - started < limit ? DEADLINE - started : limit ))
    if [ "$budget" -lt 10 ]; then echo "$name: skipped, out of time"; return; fi
  fi
  timeout "$budget" "$@" > "$out/logs/$name.log" 2>&1
  local rc=$?
  python3 - "$out/logs/$name.log" "$name" "$tags" "$rc" "$(( $(date +%s) - started ))" >> "$results" <<'PY'
import json, sys
log, name, tags, rc, seconds = sys.argv[1:]
lines = [l for l in open(log, errors="replace") if l.startswith("{")]
found = False
for line in lines:
    try:
        row = json.loads(line)
    except ValueError:
        continue
    found = True
    row.update(json.loads(tags), step=name, rc=int(rc), seconds=int(seconds))
    print(json.dumps(row))
if not found:
    tail = open(log, errors="replace").read()[-400:]
    print(json.dumps({**json.loads(tags), "step": name, "rc": int(rc), "seconds": int(seconds), "log_tail": tail}))
PY
  echo "$name: rc=$rc ($(( $(date +%s) - started )) s)"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/logs/gpu.txt" 2>&1
# What wgpu's Vulkan backend can find (session 8's call found no adapter; this says why next time).
{ echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"; ldconfig -p | grep -i -E 'vulkan|nvidia-glcore|GLX_nvidia'
  ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
  ls /usr/local/nvidia/lib64 2>&1 | grep -i -E 'vulkan|glcore|GLX' ; } > "$out/logs/vulkan.txt" 2>&1

first=${backends%% *}

# 1. Is the backend's arithmetic right? Same batch on the GPU and on the CPU; then CelebA's
#    reference batch whole against the same samples in micro-batches of 8.
check() {
  local build=$1 bin=$2 tag="{\"kind\":\"check\",\"build\":\"$1\"}"
  step "check-celeba-b8-$build" "$tag" "$bin" check-step --preset celeba --batch-size 8 \
    --backend "$first" --reference cpu --json "$out/logs/check-celeba-b8-$build.json"
  step "check-mnist-b64-$build" "$tag" "$bin" check-step --preset mnist --batch-size 64 \
    --backend "$first" --reference cpu --json "$out/logs/check-mnist-b64-$build.json"
  step "check-celeba-b$big-micro-$build" "$tag" "$bin" check-step --preset celeba \
    --batch-size "$big" --backend "$first" --reference "$first" --reference-micro-batch 8 \
    --json "$out/logs/check-celeba-micro-$build.json"
}

# 2. Training throughput (random data; every step reads its loss back, as training does).
train() {
  local build=$1 bin=$2 tag="{\"build\":\"$1\"}" b
  for b in $3; do
    step "train-mnist-b64-$b-$build" "$tag" "$bin" bench --preset mnist --batch-size 64 --backend "$b" --warmup "$warm" --steps "$steps"
    step "train-mnist-b256-$b-$build" "$tag" "$bin" bench --preset mnist --batch-size 256 --backend "$b" --warmup "$warm" --steps "$steps"
    step "train-celeba-b$celeba-$b-$build" "$tag" "$bin" bench --preset celeba --batch-size "$celeba" --backend "$b" --warmup "$warm" --steps "$steps"
  done
}

# 3. Sampler: one guided DPM-Solver++ step (network on twice the images), 16 and 100 images. On
#    wgpu and the CPU, one row with dit-web's own kernels and one with burn's (`--kernels`).
sample() {
  local build=$1 bin=$2 tag="{\"build\":\"$1\"}" b n k
  for b in $3; do
    for n in 16 100; do
      for k in own burn; do
        [ "$b" = cuda ] && [ "$k" = own ] && continue   # cuda has burn's kernels only
        step "sample-mnist-$n-$b-$build-$k" "$tag" "$bin" bench --sample --preset mnist --batch-size "$n" --backend "$b" --warmup "$warm" --steps "$steps" --kernels "$k"
      done
    done
  done
}

# 4. The PyTorch reference network on the same device, fp32 (TF32 off) and bf16 autocast; each
#    run also times the guided sampler step for its --sample-batch.
torch_reference() {
  [ "${TORCH:-1}" = 1 ] && python3 -c "import torch" 2>/dev/null || return 0
  local device precision tag spec
  device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  local precisions=("")
  [ "${BF16:-1}" = 1 ] && precisions+=("--bf16")
  for precision in "${precisions[@]}"; do
    tag="{\"kind\":\"torch\",\"precision\":\"${precision:+bf16}\"}"
    for spec in ${TORCH_SPECS:-mnist,64,16 mnist,256,100 celeba,$celeba,16}; do
      set -- ${spec//,/ }
      step "torch-$1-b$2${precision}" "$tag" python3 "$here/torch_reference.py" --device "$device" \
        --preset "$1" --batch "$2" --sample-batch "$3" --label-dropout 0.1 --iters "$steps" \
        --warmup "$warm" --threads 16 $precision
    done
  done
}

for stage in $stages; do
  case $stage in
    check|train|sample)
      for (( i = 0; i < ${#builds[@]}; i += 2 )); do
        targets=$backends
        [ "$stage" = train ] && targets=${TRAIN_BACKENDS:-$backends}
        [ "${builds[i]}" = tuned ] && targets=$first
        "$stage" "${builds[i]}" "${builds[i+1]}" "$targets"
      done ;;
    torch) torch_reference ;;
    *) echo "unknown stage $stage" >&2 ;;
  esac
done
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
