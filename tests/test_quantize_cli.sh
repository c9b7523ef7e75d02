#!/usr/bin/env bash
# lowbit quantize as a user runs it: a short fp32 run, RTN and GPTQ into
# checkpoints that eval, sample and train.init_from read, and bad input (no data for
# calibration, a spec the shapes cannot take, an existing output, a model
# that already quantizes).
#   test_quantize_cli.sh LOWBIT
set -u
LOWBIT=$1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-quantize-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$(dirname "$0")/testutil.sh"

for i in $(seq 1 3000); do echo "the cat sees the moon $((i % 7)). a dog likes the river."; done >"$WORK/corpus.txt"
cat >"$WORK/fp32.yaml" <<YAML
model: {dim: 64, n_layers: 2, n_heads: 2, ffn_dim: 128, max_seq_len: 32, sub_norm: true, tie_embeddings: false,
        quant: {preset: fp32}}
data: {path: $WORK/corpus.txt}
train: {steps: 20, batch_size: 4, seq_len: 32, warmup_steps: 2, lr: 3.0e-3}
eval: {interval: 0, batches: 2}
checkpoint: {dir: $WORK/run, interval: 0}
log: {interval: 10, sample_tokens: 0}
YAML
expect 0 "train an fp32 model" -- "$LOWBIT" train "$WORK/fp32.yaml"

expect 0 "quantize --help" -- "$LOWBIT" quantize --help
expect 0 "RTN int4:g32 with calibration" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/q4.h5" --spec int4:g32 --calib 2
contains "$WORK/out" "blk.1.ffn_down.weight" "every layer reported"
contains "$WORK/out" "err " "errors reported"
contains "$WORK/out" "wrote $WORK/q4.h5 (weights 'int4:g32')" "the spec recorded"
expect 0 "eval of the quantized checkpoint" -- "$LOWBIT" eval "$WORK/q4.h5"
contains "$WORK/out" "validation loss" "eval reads it"
expect 0 "RTN ternary of every layer, no calibration" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/t.h5" --spec ternary \
  --calib 0 --layers attn,ffn,head
expect 0 "eval of the ternary checkpoint" -- "$LOWBIT" eval "$WORK/t.h5"
expect 0 "sample from it" -- "$LOWBIT" sample "$WORK/t.h5" --prompt "the " --tokens 8
expect 0 "GPTQ int4:g32 with act-order" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/g4.h5" --spec int4:g32 \
  --method gptq --calib 2 --act-order --block 32
contains "$WORK/out" "gptq err" "GPTQ's errors reported next to RTN's"
contains "$WORK/out" "(weights 'int4:g32:lsq')" "GPTQ's scales stored as LSQ steps"
expect 0 "eval of the GPTQ checkpoint" -- "$LOWBIT" eval "$WORK/g4.h5"
expect 0 "GPTQ ternary per channel" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/gt.h5" --spec ternary:per_channel \
  --method gptq --calib 2
contains "$WORK/out" "(weights 'ternary:per_channel')" "ternary keeps its spec"
expect 0 "eval of the GPTQ ternary checkpoint" -- "$LOWBIT" eval "$WORK/gt.h5"
expect 2 "GPTQ of an asymmetric spec" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4:g32:asym --method gptq
contains "$WORK/err" "--method rtn" "says what to use"
expect 2 "GPTQ without calibration" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4 --method gptq --calib 0
expect 2 "a bad --damp" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4 --method gptq --damp -1
cat >"$WORK/qat.yaml" <<YAML
model: {quant: {attn: {weight: int4:g32}, ffn: {weight: int4:g32}}}
data: {path: $WORK/corpus.txt}
train: {steps: 2, batch_size: 4, seq_len: 32, warmup_steps: 1, lr: 1.0e-4, init_from: $WORK/q4.h5}
eval: {interval: 0, batches: 2}
checkpoint: {dir: $WORK/qat, interval: 0}
log: {interval: 1, sample_tokens: 0}
YAML
expect 0 "QAT from the quantized checkpoint" -- "$LOWBIT" train "$WORK/qat.yaml"

# bad input
expect 2 "no spec" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5"
expect 2 "a malformed spec" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int9
expect 2 "groups that do not divide the width" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4:g48
contains "$WORK/err" "blk.0.attn_q.weight" "the tensor named"
expect 2 "an existing output" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/q4.h5" --spec int8:per_channel
contains "$WORK/err" "exists" "the existing output named"
expect 1 "calibration data missing" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4:g32 \
  --set data.path="$WORK/missing.txt"
contains "$WORK/err" "--set data.path=" "how to pass the data"
expect 2 "a model that already quantizes" -- "$LOWBIT" quantize "$WORK/q4.h5" -o "$WORK/x.h5" --spec int8:per_channel
contains "$WORK/err" "already quantize" "says why"
expect 2 "a bad --layers" -- "$LOWBIT" quantize "$WORK/run" -o "$WORK/x.h5" --spec int4 --layers mlp
[ -e "$WORK/x.h5" ] && bad "a failed quantize left $WORK/x.h5" || ok "nothing written on failure"

finish
