#!/usr/bin/env bash
# Validation loss of the tiny configs with fp32 and with bf16 matrix products
# (train.gemm_precision, train.attention_precision), over several seeds, so the
# bf16 − fp32 difference can be set against the seed-to-seed spread of fp32
# itself (the noise floor).
#
#   scripts/bf16_vs_fp32.sh [outdir]        (default runs/bf16_vs_fp32)
#
# Environment: SEEDS (default "1 2 3"), CONFIGS (default the three tiny
# configs), VARIANTS (default "fp32 bf16"; each sets both keys: fp32 = every
# product in fp32, bf16 = every product in bf16, bf16-attn32 = the linear
# layers' products in bf16 and attention's in fp32), JOBS (runs at a time,
# default 2), STEPS (default: the configs' own length, 800), LOWBIT (the
# binary, default build/lowbit).
# Every run is one process on one OpenMP thread, niced. A run whose log ends
# with "done:" is not run again, so adding a seed reruns nothing; the table is
# written from the logs and each run's metrics.jsonl (outdir/table.md) by
# scripts/bf16_vs_fp32_table.py. A run is about 5 minutes of CPU time; the
# default 18 runs, two at a time on an idle 2-core machine, about 45 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bf16_vs_fp32}
SEEDS=${SEEDS:-1 2 3}
VARIANTS=${VARIANTS:-fp32 bf16}
CONFIGS=${CONFIGS:-fp32-tiny bitnet-b158-tiny bitnet-b1-tiny}
JOBS=${JOBS:-2}
LOWBIT=${LOWBIT:-build/lowbit}
mkdir -p "$out"

run_one() { # config variant seed
  local name="$1.$2.seed$3" extra=() gemm attn
  case "$2" in
    fp32) gemm=fp32 attn=fp32 ;;
    bf16) gemm=bf16 attn=bf16 ;;
    bf16-attn32) gemm=bf16 attn=fp32 ;;
    *) echo "bf16_vs_fp32: unknown variant '$2' (fp32, bf16, bf16-attn32)" >&2; return 1 ;;
  esac
  [ -n "${STEPS:-}" ] && extra=(--set train.steps="$STEPS")
  if grep -q '^done:' "$out/$name.log" 2>/dev/null; then return 0; fi
  OMP_NUM_THREADS=1 nice "$LOWBIT" train "configs/$1.yaml" --quiet \
      --set train.gemm_precision=$gemm --set train.attention_precision=$attn --set train.seed="$3" \
      --set log.sample_tokens=0 --set checkpoint.dir="$out/ckpt/$name" \
      --set checkpoint.keep_last=1 "${extra[@]}" >"$out/$name.log" 2>&1
  mv "$out/ckpt/$name/metrics.jsonl" "$out/$name.metrics.jsonl"  # the evaluations every eval.interval steps
  rm -rf "$out/ckpt/$name"   # only the losses are wanted; checkpoints are large
  echo "$(date -u +%H:%M:%S) $name: $(grep '^done:' "$out/$name.log") load $(cut -d' ' -f1 /proc/loadavg)"
}

# Seed-major order: every cell gets its first seeds before any gets a third.
for seed in $SEEDS; do
  for cfg in $CONFIGS; do
    for prec in $VARIANTS; do
      while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
      run_one "$cfg" "$prec" "$seed" &
    done
  done
done
wait
/usr/bin/python3 scripts/bf16_vs_fp32_table.py "$out" | tee "$out/table.md"
