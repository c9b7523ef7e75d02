#!/usr/bin/env bash
# lowbit against the PyTorch reference (and, optionally, an older lowbit
# build), side by side on the same threads.
#
#   scripts/bench_vs_torch.sh [build_dir] [rounds] [baseline_build_dir]
#
# For each model — (a) small: 4 layers, d=128, 4 heads, T=64, batch 12, byte
# vocabulary; (b) GEMM-bound: 8 layers, d=512, 8 heads, T=256, batch 4 — in fp32
# and b1.58, runs bench_train (lowbit), scripts/reference/bench_torch.py and,
# when a baseline build directory is given (e.g. one of main, built apart),
# that build's bench_train, in turn (the order rotates from round to round so
# drift hits all alike), `rounds` times each (default 3), and prints medians
# and each side's fastest round: training tokens/s, step time, peak RSS, the
# share of lowbit's step spent in matrix products and what the rest costs,
# lowbit over torch and over the baseline; then the shortest step the step's
# products allow at this machine's peak rates (the floor). lowbit runs at its
# default product precision (train.gemm_precision); LOWBIT_BENCH_ARGS adds
# options to its bench_train (e.g. "--precision fp32"). Threads:
# OMP_NUM_THREADS (default 2). Each process runs one model only, so its peak
# RSS is that model's.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-3}
BASE=${3:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=/usr/bin/python3
LOWBIT="$BUILD/bench_train"
TORCH="scripts/reference/bench_torch.py"
[ -x "$LOWBIT" ] || { echo "bench_vs_torch: $LOWBIT not built (cmake --build $BUILD)" >&2; exit 1; }
[ -z "$BASE" ] || [ -x "$BASE/bench_train" ] || { echo "bench_vs_torch: $BASE/bench_train not built" >&2; exit 1; }
$PY -c "import torch" 2>/dev/null || { echo "bench_vs_torch: PyTorch missing for $PY (apt-get install python3-torch)" >&2; exit 1; }

SMALL="--layers 4 --heads 4 --kv-heads 2 --dim 128 --seq 64 --batch 12 --vocab 256 --steps 10 --warmup 2"
# (b) warms up 2 steps: lowbit's arena grows to its size during the first step
# and the second still touches fresh pages (a step of (b) took 1355 against
# 495 ms), which inflated the mean behind `other ms`.
BIG="--layers 8 --heads 8 --kv-heads 4 --dim 512 --seq 256 --batch 4 --vocab 256 --steps 3 --warmup 2"
impls="lowbit torch"
[ -n "$BASE" ] && impls="lowbit baseline torch"
read -r -a order <<<"$impls"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$ROUNDS"); do
  for model in a b; do
    args=$SMALL; [ $model = b ] && args=$BIG
    for mode in fp b1.58; do
      n=${#order[@]}
      for i in $(seq 0 $((n - 1))); do
        impl=${order[$(( (i + round) % n ))]}
        case $impl in
          lowbit) line=$("$LOWBIT" $args --mode $mode ${LOWBIT_BENCH_ARGS:-}) ;;
          baseline) line=$("$BASE/bench_train" $args --mode $mode | sed 's/^impl=lowbit/impl=baseline/') ;;
          torch) line=$($PY "$TORCH" $args --mode $mode) ;;
        esac
        echo "model=$model $line" | tee -a "$out" >&2
      done
    done
  done
done

$PY - "$out" <<'PYEOF'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
impls = [i for i in ("lowbit", "baseline", "torch") if any(r["impl"] == i for r in rows)]
def vals(model, mode, impl, key):
    return [float(r[key]) for r in rows if r["model"] == model and r["mode"] == mode and r["impl"] == impl and key in r]
def med(model, mode, impl, key):
    v = vals(model, mode, impl, key)
    return statistics.median(v) if v else float("nan")
def best(model, mode, impl):
    v = vals(model, mode, impl, "step_ms")
    return min(v) if v else float("nan")
lb = [r for r in rows if r["impl"] == "lowbit"]
def by_mode(key):  # the precisions auto chose, per mode (the same for both models)
    return ", ".join(f"{m} {v}" for m, v in dict((r["mode"], r.get(key, "?")) for r in lb).items())
print(f"\nmedians of {len(lb) // 4} rounds, threads={lb[0]['threads']}, lowbit: gemm {lb[0]['backend']}, products of "
      f"fp32 operands in: {by_mode('precision')}; attention's in: {by_mode('attn_precision')}; "
      f"f32 {lb[0]['f32_impl']}, bf16 {lb[0]['bf16_impl']}, s8 {lb[0]['s8_impl']}\n")
names = {"a": "(a) 4L d128 T64 B12", "b": "(b) 8L d512 T256 B4"}
base = "baseline" in impls
head = "| model | mode | lowbit ms/step | torch ms/step |" + (" baseline ms/step |" if base else "") + \
       " lowbit tok/s | vs torch |" + (" vs baseline |" if base else "") + \
       " lowbit RSS MB | torch RSS MB |" + (" baseline RSS MB |" if base else "") + " GEMM share | other ms |"
print(head)
print("|---|---|" + "---:|" * (head.count("|") - 3))
for model in "ab":
    for mode in ("fp", "b1.58"):
        lm, tm, bm = (med(model, mode, i, "step_ms") for i in ("lowbit", "torch", "baseline"))
        cells = [names[model], mode, f"{lm:.1f}", f"{tm:.1f}"] + ([f"{bm:.1f}"] if base else [])
        cells += [f"{med(model, mode, 'lowbit', 'tok_s'):.0f}", f"{tm / lm:.2f}x"] + ([f"{bm / lm:.2f}x"] if base else [])
        cells += [f"{med(model, mode, 'lowbit', 'rss_mb'):.0f}", f"{med(model, mode, 'torch', 'rss_mb'):.0f}"]
        cells += [f"{med(model, mode, 'baseline', 'rss_mb'):.0f}"] if base else []
        cells += [f"{med(model, mode, 'lowbit', 'gemm_share'):.2f}", f"{med(model, mode, 'lowbit', 'other_ms'):.1f}"]
        print("| " + " | ".join(cells) + " |")
# Other jobs on a shared machine only ever slow a run down, so each side's
# fastest round is the other fair summary.
print("\n| model | mode | lowbit best ms | torch best ms |" + (" baseline best ms |" if base else "") +
      " vs torch (best vs best) |" + (" vs baseline (best vs best) |" if base else ""))
print("|---|---|" + "---:|" * (4 + 2 * base))
for model in "ab":
    for mode in ("fp", "b1.58"):
        l, t, b = (best(model, mode, i) for i in ("lowbit", "torch", "baseline"))
        cells = [names[model], mode, f"{l:.1f}", f"{t:.1f}"] + ([f"{b:.1f}"] if base else []) + [f"{t / l:.2f}x"]
        cells += [f"{b / l:.2f}x"] if base else []
        print("| " + " | ".join(cells) + " |")
print()
for model in "ab":
    r = med(model, "b1.58", "lowbit", "step_ms") / med(model, "fp", "lowbit", "step_ms")
    print(f"{names[model]}: lowbit b1.58 step / lowbit fp32 step = {r:.2f}")
# Where lowbit's step goes, and the step its products allow at the peak rate
# of each operand type measured in the same process (the floor).
print("\n| model | mode | forward ms | backward ms | optimizer ms | GEMM ms | other ms | f32 / bf16 / s8 GFLOP per step |"
      " f32 / bf16 / s8 GOP/s in the step | floor ms | lowbit ms / floor |")
print("|---|---|" + "---:|" * 9)
for model in "ab":
    for mode in ("fp", "b1.58"):
        m = lambda k: med(model, mode, "lowbit", k)
        gf = " / ".join(f"{m(t + '_gflop_per_step'):.1f}" for t in ("f32", "bf16", "s8"))
        rate = " / ".join(f"{m(t + '_gflops'):.0f}" for t in ("f32", "bf16", "s8"))
        print(f"| {names[model]} | {mode} | {m('forward_ms'):.1f} | {m('backward_ms'):.1f} | {m('optim_ms'):.1f} | "
              f"{m('gemm_ms'):.1f} | {m('other_ms'):.1f} | {gf} | {rate} | {m('floor_ms'):.1f} | "
              f"{m('step_ms') / m('floor_ms'):.2f} |")
PYEOF
