#!/usr/bin/env bash
# The search behind the study's QAT recipe (docs/qat-vs-ptq.md, "How the recipe was chosen"):
#   scripts/qat_vs_ptq_tune.sh [OUT_DIR]        (default runs/qat_vs_ptq_tune)
# Every variant below is one QAT+KD run of scripts/qat_vs_ptq.sh, in the study's setting,
# scored on a tuning split that the study's table never evaluates on:
# - the corpus is the first 95% of every file of DATA (cut at a line start), so the study's
#   validation split (the last 5% of every file) is never read here;
# - its own fp32 model is pre-trained on that corpus with SEED (default 7, the study 1337),
#   holding out the corpus's last 5% of every file (about 90-95% of the original): the
#   tuning split the variants are evaluated on.
# Prints one line per variant and row, and writes OUT_DIR/tune.jsonl.
# Environment: SIZE, PRETRAIN_STEPS, QAT_STEPS, THREADS (as the study; default 1 thread),
# DATA, SEED, VARIANTS (names of the variants to run; default all), ROWS (the rows scored).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/qat_vs_ptq_tune}
data=${DATA:-/usr/share/games/fortunes}
export SEED=${SEED:-7} THREADS=${THREADS:-1} DOCS=0
rows=${ROWS:-"b1.58+subln=ternary/int8:per_token ternary-pc=ternary:per_channel"}
py=/usr/bin/python3
mkdir -p "$out"

# The tuning corpus: every regular text file the study reads (the corpus loader skips
# symlinks and fortune's *.dat indexes), cut at the last line start at or before 95%
# of its bytes: never past the study's train/validation cut (the first line start at
# or after 95%).
corpus=$out/corpus
if [ ! -d "$corpus" ]; then
    "$py" - "$data" "$corpus.tmp" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
files = [src] if os.path.isfile(src) else [os.path.join(src, n) for n in sorted(os.listdir(src))]
for p in files:
    name = os.path.basename(p)
    if name.startswith(".") or name.endswith(".dat") or os.path.islink(p) or not os.path.isfile(p):
        continue
    b = open(p, "rb").read()
    cut = b.rfind(b"\n", 0, int(len(b) * 0.95)) + 1
    if cut > 0:
        open(os.path.join(dst, name), "wb").write(b[:cut])
PY
    mv "$corpus.tmp" "$corpus"
fi


# The fp32 model of the search, pre-trained once (and an RTN int8 run, which the study
# script needs as something to do) and shared by every variant.
DATA=$corpus METHODS=rtn SPECS="int8-pc=int8:per_channel" "$src/scripts/qat_vs_ptq.sh" "$out/pre" > "$out/pre.out"
fp32_loss=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$out/pre/fp32/result.json")

# The variants: NAME|QAT --set options|distillation --set options. Every run has the same
# steps, schedule shape (cosine to lr/10, 10% warm-up) and no weight decay.
q=${QAT_STEPS:-$(( ${PRETRAIN_STEPS:-3000} / 10 ))}
sched="train.schedule=cosine train.weight_decay=0 train.warmup_steps=$(( q / 10 > 0 ? q / 10 : 1 ))"
sched_short="train.schedule=cosine train.weight_decay=0 train.warmup_steps=$(( q / 100 > 0 ? q / 100 : 1 ))"
kd1="train.distill.weight_ce=1 train.distill.temperature=1"
variants="lr5e-4 kl1|train.lr=5e-4 train.min_lr=5e-5 $sched|train.distill.weight_kl=1 $kd1
lr1e-3 kl1|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=1 $kd1
lr1e-3 kl10|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=10 $kd1
lr2e-3 kl10|train.lr=2e-3 train.min_lr=2e-4 $sched|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 T2|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=10 train.distill.weight_ce=1 train.distill.temperature=2
lr1e-3 kl10 hidden1|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=10 $kd1 train.distill.weight_hidden=1
lr1e-3 kl10 relation1|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=10 $kd1 train.distill.weight_relation=1
lr1e-3 kl10 qwarm10%|train.lr=1e-3 train.min_lr=1e-4 $sched train.quant_warmup_steps=$(( q / 10 > 0 ? q / 10 : 1 ))|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 ce0|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=10 train.distill.weight_ce=0 train.distill.temperature=1
lr1e-3 kl30|train.lr=1e-3 train.min_lr=1e-4 $sched|train.distill.weight_kl=30 $kd1
lr7e-4 kl10|train.lr=7e-4 train.min_lr=7e-5 $sched|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 min_lr0|train.lr=1e-3 train.min_lr=0 $sched|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 constant|train.lr=1e-3 train.min_lr=1e-3 $sched|train.distill.weight_kl=10 $kd1
lr1.5e-3 kl10|train.lr=1.5e-3 train.min_lr=1.5e-4 $sched|train.distill.weight_kl=10 $kd1
lr1.5e-3 kl10 min_lr0|train.lr=1.5e-3 train.min_lr=0 $sched|train.distill.weight_kl=10 $kd1
lr2e-3 kl10 min_lr0|train.lr=2e-3 train.min_lr=0 $sched|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 min_lr0 qwarm10%|train.lr=1e-3 train.min_lr=0 $sched train.quant_warmup_steps=$(( q / 10 > 0 ? q / 10 : 1 ))|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 min_lr0 linear|train.lr=1e-3 train.min_lr=0 ${sched/cosine/linear}|train.distill.weight_kl=10 $kd1
lr1e-3 kl3 min_lr0|train.lr=1e-3 train.min_lr=0 $sched|train.distill.weight_kl=3 $kd1
lr1e-3 kl10 min_lr0 T2|train.lr=1e-3 train.min_lr=0 $sched|train.distill.weight_kl=10 train.distill.weight_ce=1 train.distill.temperature=2
lr1e-3 kl10 min_lr0 warmup1%|train.lr=1e-3 train.min_lr=0 $sched_short|train.distill.weight_kl=10 $kd1
lr1e-3 kl10 min_lr0 T4|train.lr=1e-3 train.min_lr=0 $sched|train.distill.weight_kl=10 train.distill.weight_ce=1 train.distill.temperature=4"

vdir() { echo "$out/v-${1// /_}"; }
while IFS='|' read -r name qset kset; do
    if [ -n "${VARIANTS:-}" ] && ! tr ',' '\n' <<< "$VARIANTS" | grep -qxF "$name"; then continue; fi
    dir=$(vdir "$name")
    mkdir -p "$dir"
    ln -sfn ../pre/fp32 "$dir/fp32"
    DATA=$corpus METHODS=qat_kd SPECS="$rows" QAT_SET="$qset" KD_SET="$kset" \
        "$src/scripts/qat_vs_ptq.sh" "$dir" > "$dir/out.txt"
done <<< "$variants"

# Every variant with results so far (also from earlier invocations and other ROWS), in
# the order above, as JSON lines and as the Markdown table of docs/qat-vs-ptq.md.
tmp=$(mktemp "$out/tune.jsonl.XXXXXX")
while IFS='|' read -r name qset kset; do
    for r in "$(vdir "$name")"/qat_kd-*/result.json; do
        [ -f "$r" ] || continue
        row=${r%/result.json}
        row=${row##*/qat_kd-}
        loss=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$r")
        printf '{"variant":"%s","row":"%s","val_loss":%s,"fp32":%s,"qat_set":"%s","kd_set":"%s"}\n' \
            "$name" "$row" "$loss" "$fp32_loss" "$qset" "$kset" >> "$tmp"
    done
done <<< "$variants"
mv "$tmp" "$out/tune.jsonl"
"$py" - "$out/tune.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
if not rs:
    sys.exit()
variants = list(dict.fromkeys(r["variant"] for r in rs))
rows = sorted({r["row"] for r in rs}, key=lambda n: ("+subln" not in n, n))
loss = {(r["variant"], r["row"]): r["val_loss"] for r in rs}
base = rs[0]["fp32"]
print(f"Tuning split, fp32 {base:.4f}; validation loss (Δ to fp32) of QAT+KD:\n")
print("| variant | " + " | ".join(rows) + " |")
print("|---|" + "---|" * len(rows))
for v in variants:
    cells = [f"{loss[(v, r)]:.4f} ({loss[(v, r)] - base:+.4f})" if (v, r) in loss else "—" for r in rows]
    print(f"| {v} | " + " | ".join(cells) + " |")
PY
