#!/usr/bin/env bash
# CPU time per training step of two lowbit builds, side by side: for a machine
# other jobs keep busy, where wall-clock step times mostly measure how long
# threads waited for a core.
#
#   scripts/bench_cpu_time.sh build baseline_build [rounds]
#
# For models (a) and (b) of scripts/bench_vs_torch.sh, in b1.58 and fp, runs
# each build's bench_train with 2 and with 5 timed steps (one warm-up) under
# /usr/bin/time and prints (cpu(5) − cpu(2)) / 3: the user + system time of
# all threads per step, initialization excluded. OMP_WAIT_POLICY=passive, so
# a thread waiting for a core sleeps instead of spinning. The builds
# alternate, the order swapped each round. /usr/bin/time resolves 10 ms:
# model (a)'s figures are good to about ±5 ms. LOWBIT_BENCH_ARGS adds options
# to the first build's bench_train (e.g. "--precision bf16").
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${1:?usage: bench_cpu_time.sh build baseline_build [rounds]}
OLD=${2:?usage: bench_cpu_time.sh build baseline_build [rounds]}
ROUNDS=${3:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=passive
A="--layers 4 --heads 4 --kv-heads 2 --dim 128 --seq 64 --batch 12 --vocab 256 --warmup 1"
B="--layers 8 --heads 8 --kv-heads 4 --dim 512 --seq 256 --batch 4 --vocab 256 --warmup 1"
cpu() { /usr/bin/time -f "%U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{print $1 + $2}'; }
for round in $(seq "$ROUNDS"); do
  for model in b a; do
    args=$A; [ $model = b ] && args=$B
    for mode in b1.58 fp; do
      if (( round % 2 )); then order="old new"; else order="new old"; fi
      for which in $order; do
        if [ $which = new ]; then bin=$NEW/bench_train; extra=${LOWBIT_BENCH_ARGS:-}; else bin=$OLD/bench_train; extra=""; fi
        c2=$(cpu "$bin" $args --mode $mode --steps 2 $extra)
        c5=$(cpu "$bin" $args --mode $mode --steps 5 $extra)
        awk -v m=$model -v mo=$mode -v w=$which -v r=$round -v a="$c2" -v b="$c5" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
          'BEGIN { printf "model=%s mode=%s build=%s round=%s cpu_ms_per_step=%.1f load=%s\n", m, mo, w, r, (b - a) / 3 * 1000, l }'
      done
    done
  done
done
