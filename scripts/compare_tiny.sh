#!/usr/bin/env bash
# Trains the three tiny configs (fp32, BitNet b1.58, BitNet b1) on the default
# corpus with the same steps and prints one table: final validation loss,
# perplexity, tokens/s and wall time.
#   scripts/compare_tiny.sh [extra --set arguments for every run]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
out=${LOWBIT_COMPARE_DIR:-runs/compare}
mkdir -p "$out"
printf '%-22s %10s %10s %10s %10s\n' config val_loss perplexity tokens/s wall_s
for cfg in fp32-tiny bitnet-b158-tiny bitnet-b1-tiny; do
  start=$(date +%s.%N)
  ./build/lowbit train "configs/$cfg.yaml" --quiet --set checkpoint.dir="$out/$cfg" \
      --set log.sample_tokens=0 "$@" >"$out/$cfg.log" 2>&1
  end=$(date +%s.%N)
  line=$(grep '^done:' "$out/$cfg.log")
  loss=$(sed -E 's/.*final validation loss ([0-9.]+).*/\1/' <<<"$line")
  tps=$(sed -E 's/.* ([0-9]+) tokens\/s.*/\1/' <<<"$line")
  ppl=$(awk -v l="$loss" 'BEGIN { printf "%.2f", exp(l) }')
  printf '%-22s %10s %10s %10s %10.0f\n' "$cfg" "$loss" "$ppl" "$tps" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
done
