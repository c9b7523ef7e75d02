#!/usr/bin/env bash
# Fuzzes every file reader with libFuzzer (fuzz/, docs/reliability.md).
#   scripts/fuzz.sh --seed [LOWBIT]  write seed inputs into fuzz/corpus/NAME/ with a built
#                                     lowbit (default build/lowbit): a tiny trained
#                                     checkpoint, its GGUF and safetensors exports, its
#                                     tokenizer.json, a shard set, the configs/
#   scripts/fuzz.sh --replay [NAME...] runs fuzz/regressions and fuzz/corpus through the
#                                     libFuzzer builds (clang's UBSan flags more than gcc's,
#                                     which the suite's sanitizer build uses)
#   scripts/fuzz.sh [SECONDS] [NAME...]
#                                     builds build-fuzz (clang, -DLOWBIT_FUZZ=ON) and runs
#                                     each harness (all six by default) for at most
#                                     SECONDS (default 1800) or FUZZ_RUNS executions
#                                     (default 1000000), one at a time, niced, on a
#                                     working corpus in build-fuzz/corpus/NAME seeded from
#                                     fuzz/corpus/NAME; prints executions, coverage and
#                                     crashes per harness. Crash inputs land in
#                                     build-fuzz/crashes/NAME/: fix the reader, then move
#                                     the input to fuzz/regressions/NAME/ (the suite
#                                     replays it, tests/test_fuzz_replay.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ALL=(config safetensors gguf tokenizer shards checkpoint)

seed() {
  local lowbit=${1:-build/lowbit}
  [ -x "$lowbit" ] || { echo "fuzz.sh --seed: no lowbit program at $lowbit (scripts/setup.sh builds it)" >&2; exit 1; }
  lowbit=$(readlink -f "$lowbit")
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-seed-XXXXXX")
  trap 'rm -rf "$work"' RETURN
  for n in "${ALL[@]}"; do mkdir -p "fuzz/corpus/$n"; done
  for i in $(seq 1 200); do echo "the cat sees the moon $((i % 7)). a dog likes the river."; done >"$work/corpus.txt"
  # The smallest model that trains: a few KB of weights, so the checkpoint stays small.
  cat >"$work/tiny.yaml" <<YAML
model: {dim: 16, n_layers: 1, n_heads: 2, ffn_dim: 32, max_seq_len: 16, sub_norm: true, quant: {preset: b1.58}}
data: {path: $work/corpus.txt, tokenizer: bpe, vocab_size: 270}
train: {steps: 2, batch_size: 2, seq_len: 16, warmup_steps: 1, lr: 1.0e-3}
eval: {interval: 0, batches: 1}
checkpoint: {dir: $work/run, interval: 0}
log: {interval: 1, sample_tokens: 0}
YAML
  "$lowbit" train "$work/tiny.yaml" >/dev/null
  local ckpt
  ckpt=$(ls "$work"/run/step_*.h5 | tail -1)
  cp "$ckpt" fuzz/corpus/checkpoint/tiny-b158.h5
  "$lowbit" train "$work/tiny.yaml" --set data.tokenizer=byte --set checkpoint.dir="$work/run-byte" \
    --set model.quant.preset=fp32 >/dev/null
  cp "$(ls "$work"/run-byte/step_*.h5 | tail -1)" fuzz/corpus/checkpoint/tiny-fp32-byte.h5
  for t in f16 f32; do "$lowbit" export "$ckpt" -o "fuzz/corpus/gguf/tiny-$t.gguf" --type "$t" >/dev/null; done
  # Block types need rows of 32 (q8_0, q4_0): a model of width 32 for those.
  "$lowbit" train "$work/tiny.yaml" --set model.dim=32 --set model.ffn_dim=64 --set checkpoint.dir="$work/run32" >/dev/null
  for t in q8_0 q4_0; do
    "$lowbit" export "$(ls "$work"/run32/step_*.h5 | tail -1)" -o "fuzz/corpus/gguf/tiny32-$t.gguf" --type "$t" >/dev/null
  done
  "$lowbit" export "$ckpt" -o "$work/st" --format safetensors >/dev/null
  cp "$work/st/model.safetensors" fuzz/corpus/safetensors/tiny-f32.safetensors
  "$lowbit" export "$ckpt" -o "$work/st16" --format safetensors --dtype bf16 >/dev/null
  cp "$work/st16/model.safetensors" fuzz/corpus/safetensors/tiny-bf16.safetensors
  cp "$work/st/tokenizer.json" fuzz/corpus/tokenizer/tiny-bpe.json
  "$lowbit" data prepare "$work/corpus.txt" -o "$work/shards" --tokenizer byte >/dev/null 2>&1
  "$lowbit" data prepare "$work/corpus.txt" -o "$work/shards-n" --tokenizer byte --format nanogpt >/dev/null 2>&1 || true
  for f in "$work"/shards/*.bin "$work"/shards-n/*.bin; do
    [ -f "$f" ] && cp "$f" "fuzz/corpus/shards/$(basename "$(dirname "$f")")-$(basename "$f")"
  done
  cp configs/*.yaml fuzz/corpus/config/
  cp "$work/tiny.yaml" fuzz/corpus/config/seed-tiny.yaml
  for n in "${ALL[@]}"; do echo "fuzz/corpus/$n: $(ls "fuzz/corpus/$n" | wc -l) files, $(du -sh "fuzz/corpus/$n" | cut -f1)"; done
}

if [ "${1:-}" = "--seed" ]; then
  shift
  seed "$@"
  exit 0
fi

REPLAY=0
if [ "${1:-}" = "--replay" ]; then
  REPLAY=1
  shift
fi
SECONDS_EACH=1800
if [ "$REPLAY" = 0 ]; then
  SECONDS_EACH=${1:-1800}
  shift || true
fi
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=("${ALL[@]}")
RUNS=${FUZZ_RUNS:-1000000}

# libFuzzer ships with Debian's clang as libclang-rt-*-dev.
if ! command -v clang >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "installing clang and libFuzzer (libclang-rt-dev)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-dev libomp-dev
fi
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CC=clang cmake -S . -B build-fuzz -DLOWBIT_FUZZ=ON -DLOWBIT_TESTS=OFF -DLOWBIT_MPI=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
targets=()
for n in "${NAMES[@]}"; do targets+=(--target "fuzz_$n"); done
nice cmake --build build-fuzz -j2 "${targets[@]}" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
# libhdf5 (not lowbit) leaks a cache entry when an object header fails its
# checksum: docs/reliability.md. Only that library is suppressed.
export LSAN_OPTIONS=suppressions=$ROOT/fuzz/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
# Harnesses of readers that take a path write every input to a file: in memory
# when /dev/shm is there (fuzz_shards ran 286 inputs/s there, 47 on the disk).
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
if [ "$REPLAY" = 1 ]; then
  status=0
  for n in "${NAMES[@]}"; do
    inputs=()
    for d in fuzz/regressions/$n fuzz/corpus/$n; do [ -d "$d" ] && inputs+=("$d"/*); done
    if "build-fuzz/fuzz/fuzz_$n" "${inputs[@]}" >"build-fuzz/replay_$n.log" 2>&1; then
      echo "$n: ${#inputs[@]} inputs, clean"
    else
      echo "$n: FAILED (build-fuzz/replay_$n.log)"; status=1
    fi
  done
  exit $status
fi
for n in "${NAMES[@]}"; do
  work=build-fuzz/corpus/$n crashes=build-fuzz/crashes/$n log=build-fuzz/fuzz_$n.log
  mkdir -p "$work" "$crashes"
  start=$(date +%s)
  touch "$log.start"
  # -jobs 1 would fork a worker and log to fuzz-0.log; run the one process directly.
  nice "build-fuzz/fuzz/fuzz_$n" "$work" "fuzz/corpus/$n" \
    -max_total_time="$SECONDS_EACH" -runs="$RUNS" -timeout=25 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
    -max_len=1048576 -print_final_stats=1 -artifact_prefix="$crashes/" >"$log" 2>&1 || true
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
  # crash-, leak-, timeout- and oom- files are findings; slow-unit- files (an
  # input over 10 s, which a busy machine makes common) are listed apart.
  ncrash=$(find "$crashes" -type f -newer "$log.start" ! -name 'slow-unit-*' | wc -l)
  nslow=$(find "$crashes" -type f -newer "$log.start" -name 'slow-unit-*' | wc -l)
  printf '%-12s %10s execs %6ss cov %6s ft %7s crashes %s slow %s   (log %s)\n' "$n" "$execs" "$secs" "$cov" "$ft" \
    "$ncrash" "$nslow" "$log"
done
