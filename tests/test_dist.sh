#!/usr/bin/env bash
# Data-parallel training under `mpirun -np 2` (docs/distributed.md), one part
# per ctest entry:
#   identity  mpirun -np 1 equals the plain process bit for bit
#   match     2 ranks × batch B equal 1 rank × batch 2B after 50 steps within
#             the reassociation tolerance (fp32, b1.58, int8 and fp8 states),
#             and a run on other batches does not
#   resume    resuming with 2 ranks is bit-exact; a 2-rank checkpoint resumed
#             with 1 rank × 2B continues the same sample order; ZeRO-1 equals
#             the unsharded run and its checkpoint resumes with 2 and 1 ranks
#   comm      compressed gradients (bf16, fp8, int8): validation loss, bytes
#   failure   a rank killed mid-run, a rank that stops answering, a signal to
#             mpirun (checkpoint, every rank stops at the same step)
#   nompi     (a build without MPI) several ranks are refused with a message
#   test_dist.sh PART LOWBIT SOURCE_DIR
set -u
PART=$1
LOWBIT=$2
SRC=$3
PY=/usr/bin/python3
COMPARE="$SRC/tests/dist_compare.py"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-dist-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAILED: $1"; }
show() { sed 's/^/  | /' "$@" | tail -20; }

$PY -c "import h5py" 2>/dev/null || { echo "FAILED: h5py is missing (apt-get install python3-h5py)"; exit 1; }
export OMP_NUM_THREADS=1 LOWBIT_DIST_TIMEOUT=60
# The launcher of the MPI lowbit is linked with: MPICH's hydra (mpiexec.mpich,
# which passes the whole environment on and runs any number of ranks on two
# cores), else Open MPI's mpirun (the default): as root, two ranks on two
# (shared) cores, the variables passed on by name.
if ldd "$LOWBIT" 2>/dev/null | grep -q libmpich; then
  MPI_IMPL=mpich
  command -v mpiexec.mpich >/dev/null || { echo "FAILED: mpiexec.mpich is missing (apt-get install mpich)"; exit 1; }
  MPIRUN=(mpiexec.mpich)
else
  MPI_IMPL=openmpi
  command -v mpirun >/dev/null || { echo "FAILED: mpirun is missing (apt-get install openmpi-bin)"; exit 1; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  MPIRUN=(mpirun --oversubscribe -x OMP_NUM_THREADS -x LOWBIT_DIST_TIMEOUT)
fi
# The MPI library's own allocations at exit are not lowbit's leaks.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"

cat "$SRC"/docs/*.md "$SRC"/README.md >"$WORK/corpus.txt"
cat >"$WORK/tiny.yaml" <<YAML
model: {dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128, max_seq_len: 32, sub_norm: true, quant: {preset: fp32}}
data: {path: $WORK/corpus.txt, tokenizer: byte}
train: {steps: 50, batch_size: 4, seq_len: 32, warmup_steps: 5, lr: 1.0e-3, schedule: cosine, min_lr: 1.0e-4}
eval: {interval: 25, batches: 4}
checkpoint: {interval: 0}
log: {interval: 1, sample_tokens: 0}
YAML

# train RUN NP SETTINGS...: trains into $WORK/RUN (checkpoints and log.jsonl).
train() {
  local run=$1 np=$2
  shift 2
  local cmd=("$LOWBIT" train "$WORK/tiny.yaml" --quiet --set checkpoint.dir="$WORK/$run"
             --set log.jsonl="$WORK/$run/log.jsonl" "$@")
  if [ "$np" = 0 ]; then "${cmd[@]}"; else "${MPIRUN[@]}" -np "$np" "${cmd[@]}"; fi >"$WORK/$run.out" 2>&1
  local rc=$?
  [ "$rc" = 0 ] || { bad "$run: exit $rc"; show "$WORK/$run.out"; }
  return $rc
}
# compare A B MODE WHAT: checkpoints of two runs (MODE: exact or a tolerance).
compare() {
  if $PY "$COMPARE" "$WORK/$1" "$WORK/$2" "$3" >"$WORK/cmp" 2>&1; then ok "$4: $(tail -1 "$WORK/cmp")"; else
    bad "$4"; show "$WORK/cmp"; fi
}
# val_loss RUN: the last validation loss of a run's log.
val_loss() { $PY -c "import json,sys; print([json.loads(l)['val_loss'] for l in open(sys.argv[1]) if '\"eval\"' in l][-1])" "$WORK/$1/log.jsonl"; }
close() { # A B TOL WHAT: |A − B| ≤ TOL
  if $PY -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(abs(a-b) > t)" "$1" "$2" "$3"; then
    ok "$4: $1 vs $2 (tolerance $3)"; else bad "$4: $1 vs $2 differ by more than $3"; fi
}

case $PART in
identity)
  # One rank under mpirun takes the single-process path: same file, bit for bit.
  train plain 0 --set train.steps=10 && train np1 1 --set train.steps=10 &&
    compare plain/step_00000010.h5 np1/step_00000010.h5 exact "mpirun -np 1 equals the plain process"
  # Two ranks add two numbers per element, the same in any order: buckets of
  # 4 KiB (dozens of reductions in flight at once) give the same file as one.
  train np2 2 --set train.steps=10 && LOWBIT_DIST_BUCKET_KB=4 train np2-small 2 --set train.steps=10 &&
    compare np2/step_00000010.h5 np2-small/step_00000010.h5 exact "2 ranks: 4 KiB buckets equal one bucket"
  ;;
match)
  # The tolerance is derived, not guessed: 2 ranks × B sum the two halves of
  # each global batch in another order than 1 rank × 2B does, and so does one
  # process with batch B and grad_accum 2 (the same rows, as two micro-batches).
  # That regrouping, in one process, sets the scale: 2 ranks must come within
  # 3× of its difference (docs/distributed.md has the numbers). Quantized
  # weights and states turn reassociation into whole rounding steps of a few
  # elements, so their scale is larger, and one regrouping is one sample of
  # it: int8 states once came out 3.2e-3 against 3 × 9.0e-4 (the corpus is the
  # docs, so an edited page draws another sample). Those recipes get a floor
  # of 3e-2, ten times below what other batches give (0.3); fp32 keeps 3×.
  for v in fp32:model.quant.preset=fp32 b158:model.quant.preset=b1.58 int8:optim.state=int8 fp8:optim.state=fp8; do
    IFS=: read -r name key <<<"$v"
    train "$name-n1" 0 --set "$key" --set train.batch_size=8 || continue
    # (eval.batches 8 × 4 are the same validation windows as 4 × 8)
    train "$name-acc" 0 --set "$key" --set train.batch_size=4 --set train.grad_accum=2 --set eval.batches=8 || continue
    train "$name-n2" 2 --set "$key" --set train.batch_size=4 || continue
    scale=$($PY "$COMPARE" "$WORK/$name-n1/step_00000050.h5" "$WORK/$name-acc/step_00000050.h5" 1 |
            sed -n 's/.*difference \([^ ]*\).*/\1/p')
    floor=0; [ "$name" = fp32 ] || floor=3e-2
    tol=$($PY -c "import sys; print('%.3e' % max(3 * float(sys.argv[1]), float(sys.argv[2])))" "$scale" "$floor")
    compare "$name-n1/step_00000050.h5" "$name-n2/step_00000050.h5" "$tol" "$name: 2 ranks × 4 vs 1 rank × 8 (grad_accum regrouping: $scale)"
    a=$(val_loss "$name-n1")
    # One sample of a regrouping's effect on the loss is itself noisy where
    # whole rounding steps flip (b1.58 in a -O2 build: 7.6e-5 against 3×2.6e-5
    # once), hence a floor of 1e-4 of the loss.
    vtol=$($PY -c "import sys; a = float(sys.argv[1]); print('%.1e' % (3 * abs(a - float(sys.argv[2])) + 1e-4 * abs(a)))" "$a" "$(val_loss "$name-acc")")
    close "$a" "$(val_loss "$name-n2")" "$vtol" "$name: validation loss, 2 ranks × 4 vs 1 rank × 8"
  done
  # The comparison can fail: 1 rank × 4 trains on other batches.
  if train fp32-b4 0 --set train.batch_size=4; then
    if $PY "$COMPARE" "$WORK/fp32-n1/step_00000050.h5" "$WORK/fp32-b4/step_00000050.h5" 1e-2 >"$WORK/cmp" 2>&1; then
      bad "a run on other batches passed the comparison"; show "$WORK/cmp"; else
      ok "a run on other batches fails the comparison: $(grep largest "$WORK/cmp")"; fi
  fi
  ;;
resume)
  # The run's own step-6 checkpoint, resumed with the same 2 ranks.
  train full 2 --set train.steps=12 --set checkpoint.interval=6 --set checkpoint.keep_last=0 || true
  mkdir -p "$WORK/same" && cp "$WORK/full/step_00000006.h5" "$WORK/same/"
  train same 2 --set train.steps=12 --resume "$WORK/same" &&
    compare full/step_00000012.h5 same/step_00000012.h5 exact "2 ranks: step 6 resumed to 12 equals 12 steps"
  # Another N: the step-6 checkpoint of 2 ranks × 4 resumed by 1 rank × 8
  # draws the same global batches (docs/distributed.md: the data-order rule).
  # Its sums are grouped otherwise, which moved the weights by 1.5e-8 to
  # 2.0e-5 over 6 steps, depending on the corpus (the docs: an edited page
  # draws another sample); other batches move them by ~0.3.
  mkdir -p "$WORK/other" && cp "$WORK/full/step_00000006.h5" "$WORK/other/"
  train other 0 --set train.steps=12 --set train.batch_size=8 --resume "$WORK/other" &&
    compare full/step_00000012.h5 other/step_00000012.h5 1e-4 "2-rank checkpoint resumed with 1 rank × 8"
  # ZeRO-1: the same sums and updates, the state sharded and gathered for
  # the checkpoint: the same file as without sharding, for every state codec.
  for st in fp32 int8 fp8; do
    train "plain-$st" 2 --set train.steps=12 --set optim.state=$st --set checkpoint.interval=6 --set checkpoint.keep_last=0 &&
      train "zero-$st" 2 --set train.steps=12 --set optim.state=$st --set optim.zero=true \
        --set checkpoint.interval=6 --set checkpoint.keep_last=0 &&
      compare "plain-$st/step_00000012.h5" "zero-$st/step_00000012.h5" exact "ZeRO-1, $st state: equals the unsharded run"
  done
  "${MPIRUN[@]}" -np 2 "$LOWBIT" train "$WORK/tiny.yaml" --set train.steps=1 --set train.warmup_steps=1 --set optim.zero=true \
    --set checkpoint.dir="$WORK/zero-mem" >"$WORK/zero-mem.out" 2>&1
  if grep -q "ZeRO-1 over 2 ranks: rank 0 keeps the optimizer state of .* parameters: [0-9.]* B per parameter (8.00 B unsharded)" \
    "$WORK/zero-mem.out"; then ok "ZeRO-1: $(grep -o 'ZeRO-1 over.*' "$WORK/zero-mem.out")"; else
    bad "ZeRO-1: no memory line"; show "$WORK/zero-mem.out"; fi
  mkdir -p "$WORK/zero-resume" && cp "$WORK/zero-int8/step_00000006.h5" "$WORK/zero-resume/"
  train zero-resume 2 --set train.steps=12 --set optim.state=int8 --set optim.zero=true --resume "$WORK/zero-resume" &&
    compare zero-int8/step_00000012.h5 zero-resume/step_00000012.h5 exact "ZeRO-1: step 6 resumed to 12 equals 12 steps"
  mkdir -p "$WORK/zero-one" && cp "$WORK/zero-int8/step_00000006.h5" "$WORK/zero-one/"
  train zero-one 0 --set train.steps=12 --set optim.state=int8 --set train.batch_size=8 --resume "$WORK/zero-one" &&
    compare zero-int8/step_00000012.h5 zero-one/step_00000012.h5 1e-2 "ZeRO-1 checkpoint resumed by 1 rank × 8"
  ;;
comm)
  # Compressed gradients (optim.comm) with error feedback: the validation
  # loss within 0.5% of fp32 communication, the bytes sent per step as the
  # formats say (bf16 half of fp32's reduce-scatter + all-gather with 2 ranks;
  # fp8 and int8 one byte per value and an fp32 scale per 256), and the sum
  # the same whatever the buckets (each rank's blocks are decoded and added
  # in rank order).
  for cm in fp32 bf16 fp8 int8; do train "comm-$cm" 2 --set optim.comm=$cm || continue; done
  last_bytes() { $PY -c "import json,sys; print([x for x in map(json.loads, open(sys.argv[1])) if x['event'] == 'step'][-1]['comm_bytes'])" "$WORK/$1/log.jsonl"; }
  ref=$(val_loss comm-fp32)
  fp32_bytes=$(last_bytes comm-fp32)
  for v in bf16:0.5:0.52 fp8:0.25:0.27 int8:0.25:0.27; do
    IFS=: read -r cm lo hi <<<"$v"
    [ -s "$WORK/comm-$cm/log.jsonl" ] || continue
    close "$ref" "$(val_loss "comm-$cm")" "$($PY -c "import sys; print(0.005 * float(sys.argv[1]))" "$ref")" \
      "optim.comm=$cm: validation loss within 0.5% of fp32 communication"
    b=$(last_bytes "comm-$cm")
    if $PY -c "import sys; r = int(sys.argv[1]) / int(sys.argv[2]); sys.exit(not ($lo <= r <= $hi))" "$b" "$fp32_bytes"; then
      ok "optim.comm=$cm: $b bytes per step against $fp32_bytes"; else bad "optim.comm=$cm: $b bytes per step against $fp32_bytes"; fi
  done
  # The residuals are each rank's own: the checkpoint holds every rank's, and
  # a resume with the same ranks and format gives them back, bit-exactly; with
  # another format they start at zero, with a warning.
  train comm-int8-full 2 --set optim.comm=int8 --set train.steps=12 --set checkpoint.interval=6 \
    --set checkpoint.keep_last=0 &&
    mkdir -p "$WORK/comm-int8-resume" && cp "$WORK/comm-int8-full/step_00000006.h5" "$WORK/comm-int8-resume/" &&
    train comm-int8-resume 2 --set optim.comm=int8 --set train.steps=12 --resume "$WORK/comm-int8-resume" &&
    compare comm-int8-full/step_00000012.h5 comm-int8-resume/step_00000012.h5 exact \
      "optim.comm=int8: step 6 resumed to 12 equals 12 steps (residuals in the checkpoint)"
  if [ -s "$WORK/comm-int8-full/step_00000006.h5" ]; then
    mkdir -p "$WORK/comm-bf16-resume" && cp "$WORK/comm-int8-full/step_00000006.h5" "$WORK/comm-bf16-resume/"
    train comm-bf16-resume 2 --set optim.comm=bf16 --set train.steps=12 --resume "$WORK/comm-bf16-resume" &&
      if grep -q "no error-feedback residuals of 2 ranks with bf16 gradients" "$WORK/comm-bf16-resume.out"; then
        ok "optim.comm=bf16 resuming an int8 checkpoint: residuals from zero, with a warning"; else
        bad "optim.comm=bf16 resuming an int8 checkpoint: no warning"; show "$WORK/comm-bf16-resume.out"; fi
  fi
  LOWBIT_DIST_BUCKET_KB=4 train comm-int8-small 2 --set optim.comm=int8 &&
    compare comm-int8/step_00000050.h5 comm-int8-small/step_00000050.h5 exact "optim.comm=int8: 4 KiB buckets equal one bucket"
  "${MPIRUN[@]}" -np 2 "$LOWBIT" train "$WORK/tiny.yaml" --set optim.comm=int8 --set optim.zero=true \
    --set checkpoint.dir="$WORK/comm-zero" >"$WORK/comm-zero.out" 2>&1
  if grep -q "key 'optim.comm'" "$WORK/comm-zero.out"; then ok "optim.comm=int8 with optim.zero refused"; else
    bad "optim.comm with optim.zero not refused"; show "$WORK/comm-zero.out"; fi
  ;;
failure)
  # A rank killed mid-run: mpirun ends the job with a message, no hang.
  cat >"$WORK/rank.sh" <<'SH'
#!/bin/sh
echo $$ >"$WORK/pid.${OMPI_COMM_WORLD_RANK:-$PMI_RANK}"
exec "$@"
SH
  chmod +x "$WORK/rank.sh"
  export WORK
  long=(--set train.steps=100000 --set eval.interval=0)
  wait_pid() { for _ in $(seq 300); do [ -s "$WORK/pid.$1" ] && [ -s "$WORK/$2/log.jsonl" ] && return 0; sleep 0.1; done; return 1; }
  run_bg() { # RUN: starts the long run in the background, sets $job
    rm -f "$WORK"/pid.*
    # --foreground: a signal to timeout goes to the launcher alone. Without it
    # timeout also signals its whole process group, the launcher gets the
    # signal twice, and Open MPI's mpirun takes a second one as "abort now".
    timeout --foreground 120 "${MPIRUN[@]}" -np 2 "$@" "$WORK/rank.sh" "$LOWBIT" train "$WORK/tiny.yaml" --quiet "${long[@]}" \
      --set checkpoint.dir="$WORK/$RUN" --set log.jsonl="$WORK/$RUN/log.jsonl" >"$WORK/$RUN.out" 2>&1 &
    job=$!
  }
  # signal_rank1 RUN SIGNAL MESSAGE: rank 1 of RUN gets SIGNAL; the job must
  # end (not time out) with MESSAGE (a grep pattern) in its output.
  signal_rank1() {
    RUN=$1 run_bg
    if wait_pid 1 "$1"; then kill "-$2" "$(cat "$WORK/pid.1")"; fi
    wait $job
    local rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then ok "rank 1 $1: the job ended (exit $rc)"; else
      bad "rank 1 $1: exit $rc (124: a hang)"; show "$WORK/$1.out"; fi
    if grep -qi "$3" "$WORK/$1.out"; then ok "rank 1 $1: the job says why"; else
      bad "rank 1 $1: no '$3' in the output"; show "$WORK/$1.out"; fi
  }
  signal_rank1 killed KILL "signal 9\|killed\|exited on signal"

  # A rank that stops answering (SIGSTOP): the other one gives up after
  # LOWBIT_DIST_TIMEOUT with a message naming itself, and ends the job.
  LOWBIT_DIST_TIMEOUT=3 signal_rank1 stopped STOP "rank 0 of 2: .* did not complete in 3 s"

  # SIGTERM to mpirun: it passes SIGTERM on to the ranks (Open MPI kills
  # them odls_base_sigkill_timeout seconds later); in between they agree on
  # the step, rank 0 writes the checkpoint, and all of them exit.
  term_args=()
  [ "$MPI_IMPL" = openmpi ] && term_args=(--mca odls_base_sigkill_timeout 10)
  RUN=term run_bg "${term_args[@]}"
  if wait_pid 1 term; then sleep 1; kill -TERM "$job"; fi
  wait $job
  if grep -q "SIGTERM received at step" "$WORK/term.out"; then ok "SIGTERM: every rank stops"; else
    bad "SIGTERM: no stop message"; show "$WORK/term.out"; fi
  ckpt=$(ls "$WORK"/term/step_*.h5 2>/dev/null | tail -1)
  step=$(sed -n 's/.*SIGTERM received at step \([0-9]*\).*/\1/p' "$WORK/term.out")
  if [ -n "$ckpt" ] && [ -n "$step" ] && [ "$(basename "$ckpt")" = "$(printf 'step_%08d.h5' "$step")" ]; then
    ok "SIGTERM: checkpoint of step $step written"; else bad "SIGTERM: no checkpoint of the stop step"; show "$WORK/term.out"; fi
  ;;
nompi)
  # A build without MPI started by mpirun would train N independent copies.
  "${MPIRUN[@]}" -np 2 "$LOWBIT" train "$WORK/tiny.yaml" --quiet --set checkpoint.dir="$WORK/n" >"$WORK/n.out" 2>&1
  rc=$?
  if [ "$rc" != 0 ] && grep -q "built without MPI" "$WORK/n.out"; then ok "no MPI: 2 ranks refused (exit $rc)"; else
    bad "no MPI: 2 ranks not refused (exit $rc)"; show "$WORK/n.out"; fi
  train plain 0 --set train.steps=3 --set train.warmup_steps=1 && ok "no MPI: one process trains"
  ;;
*)
  echo "test_dist.sh: unknown part '$PART'"
  exit 2
  ;;
esac
echo "passed: $passed, failed: $failed"
[ "$failed" = 0 ]
