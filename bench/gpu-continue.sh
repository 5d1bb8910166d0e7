#!/usr/bin/env bash
# Continues training both shipped MNIST models at once on a lent GPU for a fixed time, exports
# them as the page loads them and judges the new files (issue 13): one device call.
#
#   TRAINER=gpu-bin/trainer DATA=data/mnist CLASSIFIER=classifier.mpk \
#     MNIST_INIT=mnist-f16.safetensors bench/gpu-continue.sh OUT          # on the GPU machine
#   BACKEND=cpu BUDGET=150 GRACE=60 WARMUP=10 BATCH_M=8 BATCH_S=8 PER_CLASS=1 \
#     STUDY="ddpm 2 1.5 M,O;ddpm 2 3 S 0,330" TRAINER=... DATA=... CLASSIFIER=... \
#     bench/gpu-continue.sh /tmp/dry                                      # logic check here
#
# Both runs start from weight files (`trainer train --init-weights`: fresh optimizer, warm-up and
# cosine), share the GPU, and train with `--time-budget BUDGET`: each times its steps 50-100 while
# the other runs too and cuts its cosine to the steps that fit the rest, so each ends its whole
# schedule inside the budget. A run still going at BUDGET + GRACE (90) s is stopped; its latest
# checkpoint (every CHECKPOINT_EVERY = 200 steps, written atomically) is exported all the same,
# and train.json says so. (Session 12 ran an earlier version that set the steps from two short
# side-by-side benches instead; the large run got a third less speed than they promised.)
# With FIXED_STEPS, a run trains one schedule of that many steps instead, across calls: it resumes
# OUT/<model>'s latest checkpoint when there is one (checkpoints are then kept), and at BUDGET +
# GRACE s `timeout`'s SIGTERM makes the trainer checkpoint the step in flight and stop.
#
# Environment: TRAINER, DATA, CLASSIFIER, BACKEND (cuda), BUDGET (training seconds, 300),
# DEADLINE (seconds since 1970 after which no eval starts; default start + 520), MODELS (which to
# train, "mnist mnist-cpu"; STUDY cells on a model not trained fail at once, naming the missing
# file), MNIST_INIT (the `mnist` weights to start from, f16 best; default
# www/weights/mnist.safetensors, int8, as mnist-cpu started in session 12), CPU_INIT (default
# www/weights/mnist-cpu.safetensors), BATCH_M / BATCH_S (256 / 256), LR_M / LR_S (6e-4 / 1e-3),
# WARMUP (100 steps), MAX_STEPS (the most steps either run may take, 100000), SAMPLE_EVERY
# (steps between sample grids, 400), SEED (the training seed, 2), EVAL_SEED (the judge's noise
# seed, 0), PER_CLASS (100), STUDY ("sampler steps guidance
# files [lo,hi]; ..." as in bench/gpu-quality.sh, where M is the new `mnist` int8 file, F its
# f16 file, I its int4 file (group 32), S the new `mnist-cpu` int8 file, O and P the shipped
# `mnist` and `mnist-cpu` files; set but empty: no judging), FIXED_STEPS (above), READ_EVERY
# (`trainer train --read-every`; default: the trainer's, 20 on cuda).
# Writes OUT/{mnist,mnist-cpu}/ (the run folders: run.json, metrics.jsonl, samples, plots; the
# checkpoints are deleted at the end unless FIXED_STEPS is set),
# OUT/new/{mnist,mnist-cpu}-{f16,int8,int4}.safetensors, OUT/train.json and
# OUT/study/<name>/eval-sweep.json.
set -u
out=${1:?usage: bench/gpu-continue.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
: "${TRAINER:?TRAINER must name the trainer binary}" "${DATA:?DATA must name the MNIST folder}"
: "${CLASSIFIER:?CLASSIFIER must name a trainer classifier file}"
backend=${BACKEND:-cuda}
budget=${BUDGET:-300}
started=$(date +%s)
deadline=${DEADLINE:-$(( started + 520 ))}
mnist_init=${MNIST_INIT:-$root/www/weights/mnist.safetensors}
cpu_init=${CPU_INIT:-$root/www/weights/mnist-cpu.safetensors}
seed=${SEED:-2}
warmup=${WARMUP:-100}
mkdir -p "$out/new" "$out/study"
. "$root/bench/gpu-env.sh"

# preset name  batch  lr  init
all=("mnist ${BATCH_M:-256} ${LR_M:-6e-4} $mnist_init" "mnist-cpu ${BATCH_S:-256} ${LR_S:-1e-3} $cpu_init")
runs=()
for r in "${all[@]}"; do [[ " ${MODELS:-mnist mnist-cpu} " == *" ${r%% *} "* ]] && runs+=("$r"); done
[ ${#runs[@]} -gt 0 ] || { echo "MODELS names neither mnist nor mnist-cpu" >&2; exit 1; }

# 1. Train both at once, each fitting its schedule into the budget at the speed it gets.
for r in "${runs[@]}"; do
  set -- $r
  echo "$1: batch $2, lr $3, from $4, for $budget s"
  if [ -n "${FIXED_STEPS:-}" ]; then length=(--steps "$FIXED_STEPS" --resume)
  else length=(--steps "${MAX_STEPS:-100000}" --time-budget "$budget"); fi
  # --foreground: the SIGTERM goes to the trainer once (without it GNU timeout also signals its
  # process group, and a trainer older than 89fedcf took the repeat for a second Ctrl-C).
  ( t0=$(date +%s)
    timeout --foreground --preserve-status $(( budget + ${GRACE:-90} )) "$TRAINER" train --preset "$1" --label-dropout 0.1 \
      --backend "$backend" --data "$DATA" --run "$out/$1" "${length[@]}" \
      --batch-size "$2" --lr "$3" --warmup "$warmup" --ema-warmup \
      --grad-clip 1.0 --checkpoint-every "${CHECKPOINT_EVERY:-200}" --keep-every 1000000 \
      --sample-every "${SAMPLE_EVERY:-400}" --seed "$seed" --init-weights "$4" \
      ${READ_EVERY:+--read-every "$READ_EVERY"} \
      >> "$out/train-$1.log" 2>&1
    echo "$? $(( $(date +%s) - t0 ))" > "$out/rc-$1" ) &
done
wait

# 2. Export the EMA weights of the latest checkpoint, as the page loads them (int8), as the
#    next continuation should start from (f16), and as int4 (issue 13's third quantization).
for r in "${runs[@]}"; do
  set -- $r
  for q in f16 int8 int4; do
    "$TRAINER" export --run "$out/$1" --quant "$q" --out "$out/new/$1-$q.safetensors" \
      > "$out/export-$1-$q.log" 2>&1 || echo "export $1 $q failed: $(tail -2 "$out/export-$1-$q.log")"
  done
done
python3 - "$out" "$budget" "${runs[@]}" <<'PY'
import json, sys
out, budget, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summary = {"budget_seconds": budget, "runs": {}}
for spec in runs:
    name, batch, lr, init = spec.split()
    row = {"batch": int(batch), "lr": float(lr), "init_weights": init}
    try:
        row["steps"] = json.load(open(f"{out}/{name}/run.json"))["steps"]
        rc, seconds = open(f"{out}/rc-{name}").read().split()
        row["rc"], row["wall_seconds"] = int(rc), int(seconds)
        metrics = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if l.strip()]
        steps = [m for m in metrics if "loss" in m]
        row["last_step"] = steps[-1].get("step") if steps else None
        row["first_loss"] = steps[0].get("loss") if steps else None
        row["last_loss"] = steps[-1].get("loss") if steps else None
        row["images_per_sec_median"] = sorted(m["images_per_sec"] for m in steps)[len(steps) // 2] if steps else None
    except (OSError, ValueError, IndexError) as e:
        row["error"] = str(e)
    summary["runs"][name] = row
json.dump(summary, open(f"{out}/train.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY

# 3. The judge: STUDY's cells, the `mnist` ones and the `mnist-cpu` ones in two streams at once.
declare -A file=([M]=$out/new/mnist-int8.safetensors [F]=$out/new/mnist-f16.safetensors
  [I]=$out/new/mnist-int4.safetensors [S]=$out/new/mnist-cpu-int8.safetensors
  [O]=$root/www/weights/mnist.safetensors [P]=$root/www/weights/mnist-cpu.safetensors)
IFS=';' read -r -a specs <<< "${STUDY-ddpm 20 1.5 M,O;ddpm 20 1.5 S;ddpm 20 3 S 0,330;ddpm 20 1 M;ddpm 20 2 S;ddpm 20 2 M;ddpm 20 3 S;ddpm 20 1.25 M;ddpm 20 2 S 0,330;ddpm 20 2 M 0,330;ddpm 20 1.5 F;ddpm 20 3 M 0,330;ddpm 50 1.25 M}"
cells() {  # the cells whose files include one of the letters in $1
  for spec in "${specs[@]}"; do
    set -- $spec
    [[ $4 =~ [$letters] ]] || continue
    files=(); for l in $(echo "$4" | tr ',' ' '); do files+=("${file[$l]}"); done
    name=$1-$2-g$3${5:+-t${5/,/-}}-${4//,/}
    SAMPLER=$1 SAMPLER_STEPS=$2 GUIDANCES=$3 CFG_INTERVAL=${5:-} WEIGHTS="${files[*]}" BATCH=1000 \
      PER_CLASS=${PER_CLASS:-100} BACKEND=$backend TRAINER=$TRAINER DATA=$DATA CLASSIFIER=$CLASSIFIER \
      SEED=${EVAL_SEED:-0} \
      DEADLINE=$deadline "$root/bench/gpu-eval.sh" "$out/study/$name" > "$out/study/$name.log" 2>&1
    echo "$name: $(tail -n "${#files[@]}" "$out/study/$name.log" | tr -s ' ' | tr '\n' ';')"
  done
}
letters=MFIO cells &
letters=SP cells &
wait
[ -n "${FIXED_STEPS:-}" ] || rm -rf "$out"/mnist/checkpoints "$out"/mnist-cpu/checkpoints
echo "gpu-continue: $(( $(date +%s) - started )) s"
