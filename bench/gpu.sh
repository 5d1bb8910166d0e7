#!/usr/bin/env bash
# GPU measurements in one call on a bare GPU machine (`make bench-gpu`; docs/gpu.md explains how
# the trainer binary gets there). Each step has its own time limit and later steps run when an
# earlier one fails. Writes OUT/bench-gpu.json (every result line, tagged) and OUT/logs.tar.gz.
#
#   TRAINER=gpu-bin/trainer bench/gpu.sh OUT       # on the GPU machine
#   BACKENDS=cpu QUICK=1 TRAINER=target/debug/trainer bench/gpu.sh /tmp/dry   # dry run here
#
# Environment: TRAINER (binary), BACKENDS (default "cuda wgpu"), QUICK=1 (tiny step counts, for
# checking the script's logic on a CPU), TORCH=0 to skip the PyTorch reference.
set -u
out=${1:?usage: bench/gpu.sh OUT_DIR}
mkdir -p "$out/logs"
here=$(cd "$(dirname "$0")" && pwd)
trainer=${TRAINER:-gpu-bin/trainer}
backends=${BACKENDS:-cuda wgpu}
results="$out/results.jsonl"
: > "$results"
[ -x "$trainer" ] || { echo "no trainer binary at $trainer" >&2; exit 1; }

# CUDA 13 driver and NVRTC, and the NVIDIA Vulkan ICD for wgpu (see ../shared/GPU_NOTES.md).
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/targets/x86_64-linux/lib:$(ls -d /usr/local/cuda-*/targets/x86_64-linux/lib 2>/dev/null | tr '\n' ':')"
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

if [ "${QUICK:-0}" = 1 ]; then warm=1; steps=2; big=4; celeba=2; limit=300; else warm=3; steps=20; big=112; celeba=112; limit=240; fi

# step NAME TAGS COMMAND...: runs COMMAND under a time limit; every JSON line it prints is kept
# with TAGS merged in; the exit status goes into the log and the results.
step() {
  local name=$1 tags=$2; shift 2
  local started=$(date +%s)
  timeout "$limit" "$@" > "$out/logs/$name.log" 2>&1
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

first=${backends%% *}
# 1. Is the backend's arithmetic right? Same batch on the GPU and on the CPU; then CelebA's
#    reference batch whole against the same samples in micro-batches of 8.
step check-celeba-b8 '{"kind":"check"}' "$trainer" check-step --preset celeba --batch-size 8 \
  --backend "$first" --reference cpu --json "$out/logs/check-celeba-b8.json"
step check-mnist-b64 '{"kind":"check"}' "$trainer" check-step --preset mnist --batch-size 64 \
  --backend "$first" --reference cpu --json "$out/logs/check-mnist-b64.json"
step check-celeba-b112-micro '{"kind":"check"}' "$trainer" check-step --preset celeba \
  --batch-size "$big" --backend "$first" --reference "$first" --reference-micro-batch 8 \
  --json "$out/logs/check-celeba-micro.json"
for f in "$out"/logs/check-*.json; do
  [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({'kind':'check-detail','file':sys.argv[1].split('/')[-1],'loss':d['loss'],'grad_norm':d['grad_norm'],'worst':d['params'][:5]}))" "$f" >> "$results"
done

# 2. Training throughput (random data; every step reads its loss back, as training does).
for b in $backends; do
  step "train-mnist-b64-$b" '{}' "$trainer" bench --preset mnist --batch-size 64 --backend "$b" --warmup "$warm" --steps "$steps"
  step "train-mnist-b256-$b" '{}' "$trainer" bench --preset mnist --batch-size 256 --backend "$b" --warmup "$warm" --steps "$steps"
  step "train-celeba-b$celeba-$b" '{}' "$trainer" bench --preset celeba --batch-size "$celeba" --backend "$b" --warmup "$warm" --steps "$steps"
  # 3. Sampler: one guided DPM-Solver++ step (network on twice the images).
  for n in 16 100; do
    step "sample-mnist-$n-$b" '{}' "$trainer" bench --sample --preset mnist --batch-size "$n" --backend "$b" --warmup "$warm" --steps "$steps"
  done
done

# 4. The PyTorch reference network on the same device, fp32 (TF32 off) and bf16 autocast.
if [ "${TORCH:-1}" = 1 ] && python3 -c "import torch" 2>/dev/null; then
  device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  for precision in "" "--bf16"; do
    tag="{\"kind\":\"torch\",\"precision\":\"${precision:+bf16}\"}"
    for spec in "mnist 64" "mnist 256" "celeba $celeba"; do
      set -- $spec
      step "torch-$1-b$2${precision}" "$tag" python3 "$here/torch_reference.py" --device "$device" \
        --preset "$1" --batch "$2" --iters "$steps" --warmup "$warm" --threads 16 $precision
    done
    step "torch-sample-100${precision}" "$tag" python3 "$here/torch_reference.py" --device "$device" \
      --preset mnist --label-dropout 0.1 --batch 2 --sample-batch 100 --iters "$steps" --warmup "$warm" $precision
  done
fi

python3 - "$results" "$out/bench-gpu.json" "$out/logs/gpu.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gpu = open(sys.argv[3], errors="replace").read().strip()
json.dump({"gpu": gpu, "results": rows}, open(sys.argv[2], "w"), indent=1)
PY
tar czf "$out/logs.tar.gz" -C "$out" logs results.jsonl
echo "wrote $out/bench-gpu.json"
