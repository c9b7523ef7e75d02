#!/usr/bin/env bash
# A Hugging Face model end to end from the command line, as the README shows:
# a small random Llama directory (scripts/reference/hf_reference.py make),
# `lowbit import hf`, QAT fine-tuning to b1.58 from the directory itself
# (train.init_from) on a text file with the model's own tokenizer, eval and
# sample of the result, export back to safetensors, and the commands' errors.
#   test_import_cli.sh LOWBIT SOURCE_DIR
set -u
LOWBIT=$1
SRC=$2
PYTHON=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-import-cli-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$SRC/tests/testutil.sh"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  if [ "${LOWBIT_REQUIRE_DEPS:-}" = 1 ]; then echo "FAILED: torch is missing (apt-get install python3-torch; LOWBIT_REQUIRE_DEPS=1)"; exit 1; fi
  echo "SKIPPED: torch is missing (apt-get install python3-torch)"
  exit 77
fi

# A random LlamaForCausalLM (GQA, untied head, vocabulary 300 over a 263-token byte-level BPE).
expect 0 "make a random Llama directory" -- "$PYTHON" "$SRC/scripts/reference/hf_reference.py" make "$WORK/llama" \
  arch=llama std=0.02 max_pos=64 kv=2
for i in $(seq 1 400); do echo "the cat sees the moon $((i % 7)). a dog likes the river."; done >"$WORK/corpus.txt"

expect 0 "import hf" -- "$LOWBIT" import hf "$WORK/llama" -o "$WORK/llama.h5"
contains "$WORK/out" "imported LlamaForCausalLM" "import says what it read"
expect 0 "eval of the imported checkpoint" -- "$LOWBIT" eval "$WORK/llama.h5" --set "data.path=$WORK/corpus.txt" \
  --set train.seq_len=32 --set train.batch_size=4 --batches 2
contains "$WORK/out" "checkpoint at step 0" "eval of the imported checkpoint"
expect 0 "sample of the imported checkpoint" -- "$LOWBIT" sample "$WORK/llama.h5" --prompt "the cat" --tokens 8
contains "$WORK/out" "the cat" "sample starts with the prompt"

# QAT fine-tuning to b1.58 from the directory, with the model's tokenizer.
cat >"$WORK/ft.yaml" <<YAML
model: {quant: {preset: b1.58}}
data: {path: $WORK/corpus.txt}
train: {init_from: $WORK/llama, steps: 6, batch_size: 4, seq_len: 32, warmup_steps: 1, quant_warmup_steps: 4, lr: 1.0e-4}
eval: {interval: 0, batches: 2}
checkpoint: {dir: $WORK/run, interval: 0}
log: {interval: 1, sample_tokens: 8, sample_prompt: "the "}
YAML
expect 0 "QAT fine-tuning from the Hugging Face directory" -- "$LOWBIT" train "$WORK/ft.yaml"
contains "$WORK/out" "hf tokenizer, vocabulary 263" "training tokenizes with the model's tokenizer"
contains "$WORK/out" "init_from: \"$WORK/llama\"" "the run records where it started"
expect 0 "eval of the fine-tuned run" -- "$LOWBIT" eval "$WORK/run"
contains "$WORK/out" "checkpoint at step 6" "eval of the fine-tuned run"
expect 0 "sample of the fine-tuned run" -- "$LOWBIT" sample "$WORK/run" --prompt "the dog" --tokens 8
contains "$WORK/out" "the dog" "sample of the fine-tuned run starts with the prompt"
if "$PYTHON" - "$WORK/run" <<'PY' >"$WORK/out" 2>&1; then ok "the fine-tuned checkpoint is b1.58 with the Llama shape"; else bad "checkpoint layout:"; sed 's/^/  | /' "$WORK/out"; fi
import glob, sys, h5py
f = h5py.File(sorted(glob.glob(sys.argv[1] + "/step_*.h5"))[-1], "r")
q = f["model/blk.0.attn_q.weight"].attrs["quant"]
q = q.decode() if isinstance(q, bytes) else q
assert q == "ternary", q
assert f["model/blk.0.attn_k.weight"].shape == (32, 64), f["model/blk.0.attn_k.weight"].shape
assert "model/blk.0.attn_sub_norm.weight" not in f and "model/output.weight" in f
PY
expect 0 "fine-tuning from the imported checkpoint" -- "$LOWBIT" train "$WORK/ft.yaml" \
  --set "train.init_from=$WORK/llama.h5" --set "checkpoint.dir=$WORK/run2" --set train.steps=2 --set train.quant_warmup_steps=0

# Export of the fine-tuned b1.58 model as packed BitNet, and import of that.
expect 2 "export with an unknown --format" -- "$LOWBIT" export "$WORK/run" -o "$WORK/hf" --format onnx
expect 1 "export of a b1.58 model without SubLN" -- "$LOWBIT" export "$WORK/run" -o "$WORK/hf" --format safetensors
contains "$WORK/err" "model.sub_norm" "the export error names the key"
expect 0 "export of the imported Llama" -- "$LOWBIT" export "$WORK/llama.h5" -o "$WORK/hf" --format safetensors --dtype bf16
expect 1 "export onto an existing directory" -- "$LOWBIT" export "$WORK/llama.h5" -o "$WORK/hf" --format safetensors
contains "$WORK/err" "exists" "the existing directory is named"
expect 0 "import of the export" -- "$LOWBIT" import hf "$WORK/hf" -o "$WORK/back.h5"
contains "$WORK/out" "LlamaForCausalLM" "the export reads back as a Llama"

# Errors.
expect 2 "import without -o" -- "$LOWBIT" import hf "$WORK/llama"
expect 2 "import of an unknown kind" -- "$LOWBIT" import gguf "$WORK/llama" -o "$WORK/x.h5"
expect 1 "import of a missing directory" -- "$LOWBIT" import hf "$WORK/nope" -o "$WORK/x.h5"
contains "$WORK/err" "$WORK/nope" "the missing directory is named"
cp -r "$WORK/llama" "$WORK/scaled"
sed -i 's/"rope_scaling": null/"rope_scaling": {"rope_type": "llama3", "factor": 8.0}/' "$WORK/scaled/config.json"
expect 1 "import of a rope-scaled model" -- "$LOWBIT" import hf "$WORK/scaled" -o "$WORK/x.h5"
contains "$WORK/err" "rope_scaling" "the unsupported key is named"
[ ! -e "$WORK/x.h5" ] && ok "nothing written on failure" || bad "a file was written on failure"
expect 1 "training from a rope-scaled model" -- "$LOWBIT" train "$WORK/ft.yaml" --set "train.init_from=$WORK/scaled"
contains "$WORK/err" "train.init_from" "the training error names train.init_from"

finish
