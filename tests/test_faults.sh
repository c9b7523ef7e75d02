#!/usr/bin/env bash
# Faults a run meets (docs/reliability.md):
#   disk full while a checkpoint is written: RLIMIT_FSIZE (write() fails with
#     EFBIG), and as root a 200 KiB tmpfs (ENOSPC): the run stops with exit 1
#     naming the checkpoint and the reason; the previous checkpoint is
#     unchanged and loads; no temporary file is left;
#   SIGKILL at random points with a checkpoint every step: 3 trials of
#     scripts/kill_resume.sh, each bit-identical to an uninterrupted run;
#   NaN and Inf in a checkpoint's weights or optimizer state (edited with
#     h5py): resume and eval refuse it naming the tensor and the element;
#   a token shard holding an id outside the vocabulary: refused naming the
#     shard and the byte offset;
#   temporary files of killed saves: removed by the next save;
#   a model that does not fit in memory (ulimit -v): exit 1 before allocating it,
#     naming the config, the total the run needs, its parts and the limit; a
#     checkpoint whose model does not fit: eval and export say what it needs.
# A read-only run directory is test_cli.sh's, a killed MPI rank test_dist.sh's.
#   test_faults.sh LOWBIT SOURCE_DIR
set -u
LOWBIT=$1
SRC=$2
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-faults-XXXXXX")
MNT=
cleanup() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
. "$SRC/tests/testutil.sh"
if ! "$PY" -c "import h5py" 2>/dev/null; then
  echo "FAILED: h5py is missing (apt-get install python3-h5py; scripts/setup.sh installs it)"; exit 1
fi

for i in $(seq 1 300); do echo "the cat sees the moon $((i % 7)). a dog likes the river."; done >"$WORK/corpus.txt"
cat >"$WORK/tiny.yaml" <<YAML
model: {dim: 32, n_layers: 1, n_heads: 2, ffn_dim: 64, max_seq_len: 16, sub_norm: true, quant: {preset: b1.58}}
data: {path: $WORK/corpus.txt}
train: {steps: 4, batch_size: 2, seq_len: 16, warmup_steps: 1, lr: 1.0e-3, threads: 1}
eval: {interval: 0, batches: 1}
checkpoint: {dir: $WORK/run, interval: 2, keep_last: 0}
log: {interval: 1, sample_tokens: 0}
YAML
expect 0 "a short run" -- "$LOWBIT" train "$WORK/tiny.yaml"
good=$WORK/run/step_00000004.h5
sum=$(sha256sum "$good" | cut -d' ' -f1)
size=$(stat -c %s "$good")

# disk_full NAME DIR [ulimit KiB]: resumes the run in DIR for 4 more steps.
disk_full() {
  local name=$1 dir=$2 lim=${3:-}
  local before
  before=$(sha256sum "$dir/step_00000004.h5" | cut -d' ' -f1)
  expect 1 "$name: the run stops" -- bash -c "trap '' XFSZ; ${lim:+ulimit -f $lim;} exec \"\$0\" \"\$@\"" \
    "$LOWBIT" train "$WORK/tiny.yaml" --set train.steps=8 --set checkpoint.dir="$dir" --resume "$dir"
  contains "$WORK/err" "$dir/step_00000006.h5" "$name: the error names the checkpoint"
  contains "$WORK/err" "$4" "$name: the error gives the reason"
  if [ "$(sha256sum "$dir/step_00000004.h5" | cut -d' ' -f1)" = "$before" ]; then ok "$name: the previous checkpoint is unchanged"
  else bad "$name: the previous checkpoint changed"; fi
  if [ -e "$dir/step_00000006.h5" ]; then bad "$name: a step_00000006.h5 exists"; else ok "$name: no half-written checkpoint"; fi
  local tmp
  tmp=$(ls "$dir" | grep -c 'tmp' || true)
  if [ "$tmp" = 0 ]; then ok "$name: no temporary file left"; else bad "$name: temporary files left: $(ls "$dir")"; fi
  expect 0 "$name: the previous checkpoint loads" -- "$LOWBIT" eval "$dir"
}
# RLIMIT_FSIZE below one checkpoint: write() fails with EFBIG (SIGXFSZ ignored).
cp -r "$WORK/run" "$WORK/run-fsize"
rm -f "$WORK/run-fsize"/step_00000002.h5
disk_full "RLIMIT_FSIZE" "$WORK/run-fsize" $((size / 2048)) "File too large"
# A file system that is full: a tmpfs with room for one checkpoint and the metrics (root only).
if [ "$(id -u)" = 0 ] && mkdir "$WORK/tmpfs" && mount -t tmpfs -o size=$(( (size + 16384) / 1024 + 8 ))k tmpfs "$WORK/tmpfs" 2>/dev/null; then
  MNT=$WORK/tmpfs
  cp "$good" "$WORK/run/metrics.jsonl" "$MNT/"
  disk_full "full tmpfs" "$MNT" "" "No space left on device"
else
  echo "note: not root or no tmpfs mount: the full-file-system case ran only through RLIMIT_FSIZE"
fi

# A save killed before its rename leaves step_*.h5.tmp-<pid>-<k>: the next save
# removes those of processes that are gone, and leaves a live process's alone.
cp -r "$WORK/run" "$WORK/run-temps"
sh -c 'exit 0' & dead=$!; wait $dead
head -c 4096 /dev/zero >"$WORK/run-temps/step_00000006.h5.tmp-$dead-0"
head -c 4096 /dev/zero >"$WORK/run-temps/step_00000006.h5.tmp-$$-0"
expect 0 "a run resumed beside temporary files" -- "$LOWBIT" train "$WORK/tiny.yaml" --set train.steps=6 \
  --set checkpoint.dir="$WORK/run-temps" --resume "$WORK/run-temps"
if [ -e "$WORK/run-temps/step_00000006.h5.tmp-$dead-0" ]; then bad "a dead process's temporary file is left"
else ok "a dead process's temporary file is removed by the next save"; fi
if [ -e "$WORK/run-temps/step_00000006.h5.tmp-$$-0" ]; then ok "a running process's temporary file is kept"
else bad "a running process's temporary file was removed"; fi

# NaN / Inf in a checkpoint: weights and optimizer state, each refused with its name.
poison() { # SRC DST DATASET VALUE
  cp "$1" "$2"
  "$PY" - "$2" "$3" "$4" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r+')
d = f[sys.argv[2]]
a = d[()]
a.flat[5] = float(sys.argv[3])
d[...] = a
PY
}
poison "$good" "$WORK/nan-weight.h5" model/blk.0.ffn_up.weight nan
expect 1 "NaN in a weight: eval refuses it" -- "$LOWBIT" eval "$WORK/nan-weight.h5"
contains "$WORK/err" "tensor 'model/blk.0.ffn_up.weight' holds a non-finite value at element 5" "NaN in a weight named"
poison "$good" "$WORK/inf-weight.h5" model/token_embd.weight inf
expect 1 "Inf in a weight: resume refuses it" -- "$LOWBIT" train "$WORK/tiny.yaml" --set train.steps=6 \
  --set checkpoint.dir="$WORK/run-inf" --resume "$WORK/inf-weight.h5"
contains "$WORK/err" "'model/token_embd.weight' holds a non-finite value at element 5" "Inf in a weight named"
m=$("$PY" -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r'); n = []
f['optim'].visit(lambda k: n.append(k) if isinstance(f['optim'][k], h5py.Dataset) and f['optim'][k].dtype == 'float32' and f['optim'][k].size > 5 else None)
print('optim/' + n[0])" "$good")
poison "$good" "$WORK/nan-optim.h5" "$m" nan
expect 1 "NaN in the optimizer state: resume refuses it" -- "$LOWBIT" train "$WORK/tiny.yaml" --set train.steps=6 \
  --set checkpoint.dir="$WORK/run-nan" --resume "$WORK/nan-optim.h5"
contains "$WORK/err" "optimizer state '$m' holds a non-finite value at element 5" "NaN in the optimizer state named"

# Data: a token shard with an id outside the vocabulary (a shard cannot hold a NaN; this is its bad value).
expect 0 "data prepare" -- "$LOWBIT" data prepare "$WORK/corpus.txt" -o "$WORK/shards" --tokenizer byte
"$PY" - "$WORK/shards/train_000000.bin" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(1024 + 2 * 100); f.write(b'\xff\xff')
PY
expect 1 "a shard with id 65535 for a byte vocabulary" -- "$LOWBIT" train "$WORK/tiny.yaml" \
  --set data.shards="$WORK/shards" --set checkpoint.dir="$WORK/run-shard"
contains "$WORK/err" "train_000000.bin': token 100 (byte offset 1224) is id 65535" "the bad token is named"

# Kill -9 at random points, resume: bit-identical to an uninterrupted run.
if KILL_RESUME_STEPS=12 bash "$SRC/scripts/kill_resume.sh" 3 "$LOWBIT" >"$WORK/kill.out" 2>&1; then
  ok "kill -9 and resume, 3 trials: $(tail -1 "$WORK/kill.out")"
else bad "kill -9 and resume:"; sed 's/^/  | /' "$WORK/kill.out"; fi

# A model that does not fit: 1 GiB of address space, a model of 2 GiB of weights and as much of gradients.
# AddressSanitizer reserves terabytes of address space for its shadow memory, so
# an ASan build cannot run under ulimit -v at all: the case needs a plain build.
if nm "$LOWBIT" 2>/dev/null | grep -q __asan_init; then
  echo "note: $LOWBIT is built with AddressSanitizer: the ulimit -v case runs in the Release build only"
else
expect 1 "a model larger than ulimit -v" -- bash -c 'ulimit -v 1048576; exec "$0" "$@"' \
  "$LOWBIT" train "$WORK/tiny.yaml" --set model.dim=2048 --set model.n_layers=8 --set model.n_heads=16 \
  --set model.ffn_dim=8192 --set checkpoint.dir="$WORK/run-big"
# 537 M parameters: 2.00 GiB of weights, as many of gradients, 4.00 GiB of AdamW state, and activations
contains "$WORK/err" "config '$WORK/tiny.yaml': needs about 8.1" "the error names the config and the total"
contains "$WORK/err" "parameters 2.00 GiB, gradients 2.00 GiB, optimizer 4.00 GiB, activations" "the error gives the parts"
contains "$WORK/err" "but ulimit -v allows 1.00 GiB" "the error names the limit"
if grep -qi "segmentation\|killed\|abort" "$WORK/err"; then bad "no crash"; else ok "no crash"; fi
if [ -e "$WORK/run-big" ] && [ -n "$(ls "$WORK/run-big")" ]; then bad "the run wrote into its directory"; else ok "nothing written"; fi
# Under the limit by the estimate, over it by what lowbit already holds (its libraries and threads):
# 1 GiB of address space, 0.87 GiB of weights and gradients. The estimate counts only what is left.
expect 1 "a model just under ulimit -v" -- bash -c 'ulimit -v 1048576; exec "$0" "$@"' \
  "$LOWBIT" train "$WORK/tiny.yaml" --set model.dim=1024 --set model.n_layers=7 --set model.n_heads=8 \
  --set model.ffn_dim=4096 --set optim.type=sgd --set optim.momentum=0 --set checkpoint.dir="$WORK/run-big2"
contains "$WORK/err" "of it still free)" "the error says what is left of the limit"
if grep -qi "segmentation\|killed\|abort" "$WORK/err"; then bad "no crash"; else ok "no crash"; fi
# A checkpoint whose model does not fit: eval names what loading it needs.
big=$WORK/big.h5
"$PY" - "$good" "$big" <<'PY'
import sys, shutil, h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
f = h5py.File(sys.argv[2], 'r+')
y = f['config'][()]
y = (y.decode() if isinstance(y, bytes) else y).replace('n_layers: 1', 'n_layers: 64').replace('dim: 32', 'dim: 2048', 1)
del f['config']
f['config'] = y
PY
expect 1 "eval: a checkpoint's model larger than ulimit -v" -- bash -c 'ulimit -v 1048576; exec "$0" "$@"' \
  "$LOWBIT" eval "$big"
contains "$WORK/err" "needs about" "eval names what the run needs"
contains "$WORK/err" "but ulimit -v allows 1.00 GiB" "eval names the limit"
expect 1 "export: a checkpoint's model larger than ulimit -v" -- bash -c 'ulimit -v 1048576; exec "$0" "$@"' \
  "$LOWBIT" export "$big" -o "$WORK/big.gguf"
contains "$WORK/err" "loading the model needs about" "export names what the model needs"
contains "$WORK/err" "ulimit -v allows 1.00 GiB" "export names the limit"
if grep -qi "segmentation\|killed\|abort" "$WORK/err"; then bad "no crash"; else ok "no crash"; fi
fi

finish
