#!/usr/bin/env bash
# lowbit against the PyTorch reference, side by side on the same threads.
#
#   scripts/bench_vs_torch.sh [build_dir] [rounds]
#
# For each model — (a) small: 4 layers, d=128, 4 heads, T=64, batch 12, byte
# vocabulary; (b) GEMM-bound: 8 layers, d=512, 8 heads, T=256, batch 4 — in fp32
# and b1.58, runs bench_train (lowbit) and scripts/reference/bench_torch.py
# alternately, `rounds` times each (default 3), and prints the medians:
# training tokens/s, step time, peak RSS, lowbit's share of the step in
# sgemm with the GFLOP/s it achieved next to raw sgemm at the same shapes,
# and lowbit-over-torch ratios; then each side's fastest round, and the
# shortest step the step's sgemm work allows at the machine's sgemm peak
# (the speed-up ceiling). Threads: OMP_NUM_THREADS (default 2).
# Each process runs one model only, so its peak RSS is that model's.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=/usr/bin/python3
LOWBIT="$BUILD/bench_train"
TORCH="scripts/reference/bench_torch.py"
[ -x "$LOWBIT" ] || { echo "bench_vs_torch: $LOWBIT not built (cmake --build $BUILD)" >&2; exit 1; }
$PY -c "import torch" 2>/dev/null || { echo "bench_vs_torch: PyTorch missing for $PY (apt-get install python3-torch)" >&2; exit 1; }

SMALL="--layers 4 --heads 4 --kv-heads 2 --dim 128 --seq 64 --batch 12 --vocab 256 --steps 10 --warmup 2"
BIG="--layers 8 --heads 8 --kv-heads 4 --dim 512 --seq 256 --batch 4 --vocab 256 --steps 3 --warmup 1"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$ROUNDS"); do
  for model in a b; do
    args=$SMALL; [ $model = b ] && args=$BIG
    for mode in fp b1.58; do
      # alternate which implementation goes first, so drift hits both alike
      if (( round % 2 )); then order="lowbit torch"; else order="torch lowbit"; fi
      for impl in $order; do
        if [ $impl = lowbit ]; then line=$("$LOWBIT" $args --mode $mode)
        else line=$($PY "$TORCH" $args --mode $mode); fi
        echo "model=$model $line" | tee -a "$out" >&2
      done
    done
  done
done

$PY - "$out" <<'PYEOF'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
def med(model, mode, impl, key):
    v = [float(r[key]) for r in rows if r["model"] == model and r["mode"] == mode and r["impl"] == impl and key in r]
    return statistics.median(v) if v else float("nan")
print(f"\nmedians of {len(rows) // 8} rounds, threads={rows[0]['threads']}\n")
print("| model | mode | lowbit tok/s | torch tok/s | speed-up | lowbit ms/step | torch ms/step | lowbit RSS MB | torch RSS MB | RSS ratio | sgemm share | sgemm GFLOP/s | raw sgemm GFLOP/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
names = {"a": "(a) 4L d128 T64 B12", "b": "(b) 8L d512 T256 B4"}
for model in "ab":
    for mode in ("fp", "b1.58"):
        lt, tt = med(model, mode, "lowbit", "tok_s"), med(model, mode, "torch", "tok_s")
        lm, tm = med(model, mode, "lowbit", "step_ms"), med(model, mode, "torch", "step_ms")
        lr, tr = med(model, mode, "lowbit", "rss_mb"), med(model, mode, "torch", "rss_mb")
        print(f"| {names[model]} | {mode} | {lt:.0f} | {tt:.0f} | {lt / tt:.2f}x | {lm:.1f} | {tm:.1f} | {lr:.0f} | {tr:.0f} | "
              f"{lr / tr:.2f} | {med(model, mode, 'lowbit', 'sgemm_share'):.2f} | "
              f"{med(model, mode, 'lowbit', 'sgemm_gflops'):.1f} | {med(model, mode, 'lowbit', 'raw_gflops'):.1f} |")
# Other jobs on a shared machine only ever slow a run down, so each side's
# fastest round is the other fair summary.
def best(model, mode, impl):
    v = [float(r["step_ms"]) for r in rows if r["model"] == model and r["mode"] == mode and r["impl"] == impl]
    return min(v) if v else float("nan")
print("\n| model | mode | lowbit best ms | torch best ms | speed-up (best vs best) |")
print("|---|---|---:|---:|---:|")
for model in "ab":
    for mode in ("fp", "b1.58"):
        lb, tb = best(model, mode, "lowbit"), best(model, mode, "torch")
        print(f"| {names[model]} | {mode} | {lb:.1f} | {tb:.1f} | {tb / lb:.2f}x |")
print()
for model in "ab":
    r = med(model, "b1.58", "lowbit", "step_ms") / med(model, "fp", "lowbit", "step_ms")
    print(f"{names[model]}: lowbit b1.58 step / lowbit fp32 step = {r:.2f}")
# The step's matrix products alone, at the machine's sgemm peak, bound any
# implementation of the same arithmetic: torch's step over that floor is the
# largest speed-up there is to have.
print("\n| model | mode | sgemm GFLOP/step | peak sgemm GFLOP/s | floor ms (GFLOP / peak) | lowbit ms / floor | torch ms / floor = speed-up ceiling |")
print("|---|---|---:|---:|---:|---:|---:|")
for model in "ab":
    for mode in ("fp", "b1.58"):
        gf, pk = med(model, mode, "lowbit", "sgemm_gflop_per_step"), med(model, mode, "lowbit", "peak_gflops")
        floor = gf / pk * 1e3
        lm, tm = med(model, mode, "lowbit", "step_ms"), med(model, mode, "torch", "step_ms")
        print(f"| {names[model]} | {mode} | {gf:.2f} | {pk:.0f} | {floor:.1f} | {lm / floor:.2f} | {tm / floor:.2f}x |")
PYEOF
