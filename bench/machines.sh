#!/usr/bin/env bash
# Training throughput of one machine's cores as one process, as one process of two devices and as
# two MPI ranks (`mpirun -np 2`, one device each): `trainer train --preset mnist-cpu --batch-size
# 64`, the median images/s of steps 3-12, and the loss at step 12 (the same in all three).
# Needs a release trainer built with `--features mpi` and Open MPI's `mpirun`.
#
#   bench/machines.sh MNIST_DIR [TRAINER] > bench/results/machines-cpu.json
set -euo pipefail
data=${1:?usage: bench/machines.sh MNIST_DIR [TRAINER]}
trainer=${2:-${CARGO_TARGET_DIR:-target}/release/trainer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args=(train --preset mnist-cpu --data "$data" --steps 12 --batch-size 64 --sample-every 0
  --checkpoint-every 1000)
mpirun=(mpirun -np 2 --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo)

"$trainer" "${args[@]}" --run "$work/one-device" >/dev/null 2>&1
"$trainer" "${args[@]}" --run "$work/two-devices" --devices 2 >/dev/null 2>&1
"${mpirun[@]}" "$trainer" "${args[@]}" --run "$work/two-ranks" >/dev/null 2>&1
"${mpirun[@]}" -x RAYON_NUM_THREADS=1 "$trainer" "${args[@]}" --run "$work/two-ranks-one-thread" \
  >/dev/null 2>&1

python3 - "$work" <<'PY'
import json, os, platform, statistics, sys
work = sys.argv[1]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
runs = {}
for name in ["one-device", "two-devices", "two-ranks", "two-ranks-one-thread"]:
    rows = {}
    for line in open(os.path.join(work, name, "metrics.jsonl")):
        row = json.loads(line)
        rows[row["step"]] = row
    runs[name] = {
        "images_per_sec": round(statistics.median(rows[s]["images_per_sec"] for s in range(3, 13)), 1),
        "loss_at_12": rows[12]["loss"],
    }
print(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "command": "bench/machines.sh", "runs": runs}, indent=2))
PY
