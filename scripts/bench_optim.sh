#!/usr/bin/env bash
# Optimizer-state and gradient precision on real training runs: trains the
# tiny BitNet b1.58 config on the default corpus with the same seed, data and
# steps, once per setting below, one after the other, and prints one table:
# final validation loss (and its gap to the fp32 run), optimizer-state bytes
# per parameter (as `lowbit train` reports them), peak RSS of the process
# (/usr/bin/time -v), and time per step.
#
#   scripts/bench_optim.sh [extra --set arguments for every run]
#
# Environment: STEPS (400), BATCH (4 sequences of 128 tokens), THREADS (2),
# EVAL_BATCHES (32), LOWBIT (the binary; default: build with scripts/setup.sh),
# OUT (runs/bench_optim). The eight runs took 12 minutes with THREADS=1 on a
# busy 2-core machine. On a machine shared with other jobs use THREADS=1:
# OpenMP threads that wait at barriers lose their core to the other
# processes, and 2 threads were 3x slower than 1 there.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-400}
BATCH=${BATCH:-4}
THREADS=${THREADS:-2}
EVAL_BATCHES=${EVAL_BATCHES:-32}
OUT=${OUT:-runs/bench_optim}
if [ -z "${LOWBIT:-}" ]; then
  scripts/setup.sh >/dev/null
  LOWBIT=./build/lowbit
fi
mkdir -p "$OUT"

# name  optim.state  optim.grad (weight gradients)  optim.act_grad
RUNS=(
  "fp32        fp32 fp32 fp32"
  "bf16        bf16 fp32 fp32"
  "fp8         fp8  fp32 fp32"
  "int8        int8 fp32 fp32"
  "grad-fp8    fp32 fp8  fp8"
  "grad-int8   fp32 int8 int8"
  "fp8+g-fp8   fp8  fp8  fp8"
  "int8+g-int8 int8 int8 int8"
)

echo "# lowbit bench_optim: configs/bitnet-b158-tiny.yaml, $STEPS steps of $BATCH x 128 tokens, $THREADS threads,"
echo "# validation loss over $EVAL_BATCHES batches at the end; $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores"
printf '%-12s %-5s %-5s %-5s %9s %8s %11s %9s %9s\n' run state grad act val_loss vs_fp32 state_B/par peak_MiB ms/step
base=""
for spec in "${RUNS[@]}"; do
  read -r name state grad act <<<"$spec"
  dir="$OUT/$name"
  rm -rf "$dir"
  /usr/bin/time -v -o "$OUT/$name.time" "$LOWBIT" train configs/bitnet-b158-tiny.yaml \
      --set checkpoint.dir="$dir" --set checkpoint.interval=0 --set checkpoint.keep_last=1 \
      --set train.steps="$STEPS" --set train.batch_size="$BATCH" --set train.threads="$THREADS" \
      --set eval.interval=0 --set eval.batches="$EVAL_BATCHES" \
      --set log.interval="$STEPS" --set log.sample_tokens=0 \
      --set optim.state="$state" --set optim.grad="$grad" --set optim.act_grad="$act" \
      "$@" >"$OUT/$name.log" 2>&1 || { echo "$name: failed, see $OUT/$name.log" >&2; exit 1; }
  done_line=$(grep '^done:' "$OUT/$name.log")
  loss=$(sed -E 's/.*final validation loss ([0-9.]+).*/\1/' <<<"$done_line")
  tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<<"$done_line")
  state_b=$(grep -o 'optimizer state [0-9.]* B' "$OUT/$name.log" | head -1 | awk '{print $3}')
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/$name.time")
  skipped=$(grep -c '"skipped":true' "$dir/metrics.jsonl" || true)
  [ -z "$base" ] && base=$loss
  printf '%-12s %-5s %-5s %-5s %9s %+7.2f%% %11s %9.1f %9.0f%s\n' "$name" "$state" "$grad" "$act" "$loss" \
      "$(awk -v l="$loss" -v b="$base" 'BEGIN { print 100 * (l - b) / b }')" "$state_b" \
      "$(awk -v k="$rss_kb" 'BEGIN { print k / 1024 }')" \
      "$(awk -v t="$tps" -v b="$BATCH" 'BEGIN { print 1000 * b * 128 / t }')" \
      "$( [ "$skipped" -gt 0 ] && echo "  ($skipped steps skipped)" )"
done
