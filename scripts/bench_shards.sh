#!/usr/bin/env bash
# Token shards on a generated corpus (docs/data.md): tokenization speed of
# `lowbit data prepare` (byte and BPE tokenizers, 1 and 2 threads) and the
# start-up time of a training run (to the end of its first step) from the
# shards and from the same text in memory.
#   scripts/bench_shards.sh WORK_DIR [SIZE_MB] [MEMORY_MB]
# WORK_DIR receives the corpus (scripts/make_corpus.sh, SIZE_MB, default
# 1000), the shards and a 4096-token BPE trained on the fortunes corpus.
# MEMORY_MB (default 256) is the size of the corpus given to the in-memory
# path (its first files). Each run prints wall seconds, user + system CPU
# seconds and the peak resident memory, from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: bench_shards.sh WORK_DIR [SIZE_MB] [MEMORY_MB]}
size_mb=${2:-1000}
memory_mb=${3:-256}
lowbit=${LOWBIT:-build/lowbit}
mkdir -p "$work"
[ -d "$work/corpus" ] || scripts/make_corpus.sh "$work/corpus" "$size_mb"

measure() { # LABEL command...: one line of figures
  local label=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  awk -v l="$label" '{ printf "%-46s wall %7.2f s  cpu %7.2f s  peak RSS %6.0f MB\n", l, $1, $2 + $3, $4 / 1024 }' \
    "$work/time"
}

bytes=$(du -sb "$work/corpus" | cut -f1)
echo "corpus: $work/corpus, $((bytes / 1000000)) MB; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# A BPE tokenizer.json to tokenize with: trained on fortunes, not on the corpus.
if [ ! -f "$work/bpe4096/tokenizer.json" ]; then
  "$lowbit" data prepare /usr/share/games/fortunes -o "$work/bpe4096" --tokenizer bpe --vocab-size 4096 --quiet >/dev/null
fi

for tok in byte bpe; do
  spec=$tok
  [ $tok = bpe ] && spec="$work/bpe4096/tokenizer.json"
  for threads in 1 2; do
    rm -rf "$work/shards_${tok}_$threads"
    measure "prepare --tokenizer $tok --threads $threads" \
      "$lowbit" data prepare "$work/corpus" -o "$work/shards_${tok}_$threads" --tokenizer "$spec" --threads "$threads" --quiet
    awk -v b="$bytes" '{ printf "%46s %.1f MB/s by wall time, %.1f MB/s by CPU time\n", "", b / 1e6 / $1, b / 1e6 / ($2 + $3) }' \
      "$work/time"
  done
  cmp -s "$work/shards_${tok}_1/train_000000.bin" "$work/shards_${tok}_2/train_000000.bin" ||
    { echo "bench_shards: 1 and 2 threads wrote different shards" >&2; exit 1; }
  rm -rf "$work/shards_${tok}_2"
done

# Start-up: a tiny model, one step, nothing else (no eval, no sample).
cat >"$work/tiny.yaml" <<YAML
model: {dim: 64, n_layers: 1, n_heads: 2, ffn_dim: 128, max_seq_len: 32}
train: {steps: 1, batch_size: 4, seq_len: 32, warmup_steps: 0, threads: 1}
eval: {interval: 0}
checkpoint: {dir: $work/run, interval: 0}
log: {interval: 1, sample_tokens: 0, jsonl: ""}
YAML
first=$(find "$work/corpus" -type f | sort | head -n $(( (memory_mb + 63) / 64 )) )
mkdir -p "$work/memory_corpus"
rm -f "$work/memory_corpus"/*
for f in $first; do ln "$f" "$work/memory_corpus/" 2>/dev/null || cp "$f" "$work/memory_corpus/"; done
mem_bytes=$(du -sbL "$work/memory_corpus" | cut -f1)
for tok in byte bpe; do
  rm -rf "$work/run"
  set_tok=(--set data.tokenizer=byte)
  [ $tok = bpe ] && set_tok=(--set data.tokenizer=hf --set data.tokenizer_path="$work/bpe4096/tokenizer.json")
  measure "train from shards ($tok, $((bytes / 1000000)) MB of text)" \
    "$lowbit" train "$work/tiny.yaml" --quiet --set data.shards="$work/shards_${tok}_1"
  rm -rf "$work/run"
  measure "train in memory ($tok, $((mem_bytes / 1000000)) MB of text)" \
    "$lowbit" train "$work/tiny.yaml" --quiet --set data.path="$work/memory_corpus" "${set_tok[@]}"
done
rm -rf "$work/run"
