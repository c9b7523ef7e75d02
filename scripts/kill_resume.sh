#!/usr/bin/env bash
# SIGKILL at random points of a run that checkpoints every step, then resume:
# the run must end exactly where an uninterrupted run ends (docs/reliability.md).
#   scripts/kill_resume.sh [TRIALS] [LOWBIT]      (default 20 trials, build/lowbit)
# A reference run trains STEPS steps uninterrupted. Each trial starts the same
# run, kills it with SIGKILL after a random delay within the reference's
# duration (the seed of the delays is printed; KILL_RESUME_SEED fixes it),
# kills the first resume again at another random point (a kill that comes
# after the run ended is not counted), and resumes until the
# run is done. It then compares the final checkpoint with the reference's —
# every dataset, bit for bit (model weights, optimizer state, step, data
# position) — and the last logged training loss. Exit 1 on any difference.
set -u
TRIALS=${1:-20}
LOWBIT=${2:-build/lowbit}
STEPS=${KILL_RESUME_STEPS:-24}
LOWBIT=$(readlink -f "$LOWBIT")
[ -x "$LOWBIT" ] || { echo "kill_resume.sh: no lowbit program at $2" >&2; exit 2; }
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-kill-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SEED=${KILL_RESUME_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
echo "kill_resume: $TRIALS trials, $STEPS steps, checkpoint every step, delay seed $SEED"

for i in $(seq 1 400); do echo "the cat sees the moon $((i % 7)). a dog likes the river $((i % 5))."; done >"$WORK/corpus.txt"
cat >"$WORK/run.yaml" <<YAML
model: {dim: 32, n_layers: 2, n_heads: 2, ffn_dim: 64, max_seq_len: 16, sub_norm: true, quant: {preset: b1.58}}
data: {path: $WORK/corpus.txt}
train: {steps: $STEPS, batch_size: 2, seq_len: 16, warmup_steps: 2, lr: 3.0e-3, threads: 1}
eval: {interval: 0, batches: 1}
checkpoint: {interval: 1, keep_last: 2}
log: {interval: 1, sample_tokens: 0}
YAML

last_loss() { grep '"event":"step"' "$1/metrics.jsonl" | tail -1 | grep -o '"loss":[^,}]*'; }
final() { printf '%s/step_%08d.h5' "$1" "$STEPS"; }

t0=$(date +%s%N)
"$LOWBIT" train "$WORK/run.yaml" --set checkpoint.dir="$WORK/ref" >"$WORK/ref.out" 2>&1 ||
  { echo "reference run failed:"; tail "$WORK/ref.out"; exit 1; }
ref_ms=$((($(date +%s%N) - t0) / 1000000))
ref_loss=$(last_loss "$WORK/ref")
echo "reference: $STEPS steps in ${ref_ms} ms, last $ref_loss"

# run_killed DIR DELAY_MS [resume]: starts (or resumes) the run and SIGKILLs it after DELAY_MS.
run_killed() {
  local args=()
  [ "${3:-}" = resume ] && args=(--resume "$1")
  "$LOWBIT" train "$WORK/run.yaml" --set checkpoint.dir="$1" "${args[@]}" >>"$1.out" 2>&1 &
  local pid=$!
  sleep "$(awk "BEGIN{print $2/1000}")"
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  [ $? = 137 ] # 128 + SIGKILL: the kill came before the run ended
}

failed=0 kills=0
for trial in $(seq 1 "$TRIALS"); do
  dir=$WORK/t$trial
  d1=$(( RANDOM % ref_ms )) d2=$(( RANDOM % ref_ms ))
  k=0 resumes=0
  run_killed "$dir" "$d1" && k=1
  if [ -n "$(ls "$dir"/step_*.h5 2>/dev/null)" ] && [ ! -f "$(final "$dir")" ]; then
    resumes=1
    run_killed "$dir" "$d2" resume && k=$((k + 1))
  fi
  tmp_left=$(ls "$dir"/*.tmp-* 2>/dev/null | wc -l)
  # Resume (or start, when no checkpoint was written yet) until the run is done.
  for _ in 1 2 3; do
    [ -f "$(final "$dir")" ] && break
    args=()
    [ -n "$(ls "$dir"/step_*.h5 2>/dev/null)" ] && args=(--resume "$dir")
    "$LOWBIT" train "$WORK/run.yaml" --set checkpoint.dir="$dir" "${args[@]}" >>"$dir.out" 2>&1 ||
      { echo "trial $trial: the resumed run failed:"; tail -5 "$dir.out"; break; }
    resumes=$((resumes + 1))
  done
  kills=$((kills + k))
  if [ ! -f "$(final "$dir")" ]; then
    echo "FAILED trial $trial: no final checkpoint (kills at ${d1} ms, ${d2} ms)"; failed=$((failed + 1)); continue
  fi
  diff=$("$PY" - "$(final "$WORK/ref")" "$(final "$dir")" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
other = []
b.visititems(lambda n, o: other.append(n) if isinstance(o, h5py.Dataset) else None)
if sorted(names) != sorted(other): print("datasets differ:", sorted(set(names) ^ set(other))); sys.exit()
for n in names:
    x, y = a[n][()], b[n][()]
    if isinstance(x, np.ndarray) and x.dtype.kind in 'fiub':
        if x.shape != y.shape or x.tobytes() != y.tobytes(): print(n); sys.exit()
    elif n != 'config' and x != y: print(n); sys.exit()
print("same", len(names))
PY
)
  loss=$(last_loss "$dir")
  if [ "${diff%% *}" = same ] && [ "$loss" = "$ref_loss" ]; then
    echo "ok trial $trial: SIGKILL at ${d1} ms and ${d2} ms into the first resume, $k of them before the run ended, $resumes resumes, $tmp_left temporary files left; ${diff#same } datasets bit-identical, last $loss"
  else
    echo "FAILED trial $trial: kills at ${d1}/${d2} ms: differs in ${diff:-?}; last $loss vs $ref_loss"; failed=$((failed + 1))
  fi
done
echo "kill_resume: $TRIALS trials, $kills runs ended by SIGKILL, $failed failed"
[ "$failed" = 0 ]
