#!/usr/bin/env bash
# Data parallelism on this machine: 2 ranks × 1 thread (batch B each) against
# 1 rank × 2 threads (batch 2B), the same global batches, side by side in one
# run (alternating, ROUNDS times), and the exposed communication share of the
# 2-rank step (comm_s / step_s from rank 0's metrics). Figures: docs/distributed.md.
#   scripts/bench_dist.sh [BUILD_DIR] [CONFIG] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CONFIG=${2:-configs/fp32-tiny.yaml}
STEPS=${3:-30}
ROUNDS=${4:-2}
LOWBIT=$BUILD/lowbit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-bench-dist-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
B=$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
((B % 2 == 0)) || { echo "bench_dist: batch_size $B of $CONFIG is odd" >&2; exit 1; }
common=(--quiet --set train.steps="$STEPS" --set train.warmup_steps=1 --set eval.interval=0 --set eval.batches=1
        --set checkpoint.interval=0 --set log.sample_tokens=0)

# tokens/s of the run (the metrics' running figure at its last step)
rate() { /usr/bin/python3 -c 'import json,sys; print("%.0f" % [x for x in map(json.loads, open(sys.argv[1])) if x["event"] == "step"][-1]["tokens_per_s"])' "$1"; }
comm_share() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
s = [x for x in map(json.loads, open(sys.argv[1])) if x["event"] == "step"][1:]
step = sum(x["step_s"] for x in s); comm = sum(x["comm_s"] for x in s)
print("%.1f%% (%.1f ms of %.1f ms per step; %.2f MB sent per step)" % (100 * comm / step, 1e3 * comm / len(s),
      1e3 * step / len(s), s[-1]["comm_bytes"] / 1e6))
PY
}

echo "bench_dist: $CONFIG, $STEPS steps, global batch $B, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  OMP_NUM_THREADS=2 "$LOWBIT" train "$CONFIG" "${common[@]}" --set train.batch_size="$B" \
    --set checkpoint.dir="$WORK/a$r" --set log.jsonl="$WORK/a$r.jsonl" >/dev/null
  mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$LOWBIT" train "$CONFIG" "${common[@]}" \
    --set train.batch_size=$((B / 2)) --set checkpoint.dir="$WORK/b$r" --set log.jsonl="$WORK/b$r.jsonl" >/dev/null
  a=$(rate "$WORK/a$r.jsonl")
  b=$(rate "$WORK/b$r.jsonl")
  echo "round $r: 1 rank × 2 threads $a tokens/s; 2 ranks × 1 thread $b tokens/s; ratio $(echo "scale=3; $b / $a" | bc)"
  echo "round $r: 2 ranks, exposed communication $(comm_share "$WORK/b$r.jsonl")"
done
