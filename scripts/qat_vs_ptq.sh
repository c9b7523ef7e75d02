#!/usr/bin/env bash
# The QAT-vs-PTQ study (docs/qat-vs-ptq.md), one command:
#   scripts/qat_vs_ptq.sh [OUT_DIR]            (default runs/qat_vs_ptq)
# 1. pre-trains an fp32 model (or imports a Hugging Face Llama directory, FROM_HF=DIR),
# 2. for every weight spec below: RTN and GPTQ (`lowbit quantize`, when this build has it),
#    QAT and QAT + distillation from the fp32 model with QAT_STEPS (10% of the pre-training),
# 3. evaluates every model on the same validation batches, times every method (wall and
#    CPU seconds, with the load average), writes OUT_DIR/results.jsonl, and
# A finished model keeps its result (OUT_DIR/<method>-<row>/result.json) and is not run
# again when the script runs again on the same OUT_DIR (FRESH=1: everything again), so
# a study can be continued or completed with methods added later.
# 4. scripts/qat_vs_ptq_report.py turns that into the generated part of docs/qat-vs-ptq.md
#    and its PNG plots (docs/img/qat-vs-ptq-*.png).
#
# Environment (defaults: the documented setting):
#   SIZE=tiny|wide|small  tiny: d128 2 layers ffn 384, B16 T64; wide: tiny at d256 ffn 768;
#                         small: d256 4 layers ffn 768, B16 T128
#   PRETRAIN_STEPS=N      fp32 pre-training steps (tiny and wide 3000, small 2000)
#   QAT_STEPS=N           steps of each QAT run (default PRETRAIN_STEPS / 10)
#   SPECS="..."           the rows (default: all below); METHODS="rtn gptq qat qat_kd"
#   FROM_HF=DIR           start from an imported Hugging Face model instead of pre-training
#   DATA=PATH             the corpus (default /usr/share/games/fortunes, byte tokenizer)
#   EVAL_BATCHES=N        validation batches (default 16)
#   KD_SET="..."          --set options of the distillation runs (default below)
#   QAT_SET="..."         --set options of every QAT run (default below)
#   DOCS=0                do not write docs/ (results.jsonl only)
#   LOWBIT=path           the binary (default build/lowbit)
#   SEED=N                train.seed of every run (default 1337, the configs')
#   THREADS=1             OpenMP threads of every quantization, QAT run and evaluation
#   JOBS=2                how many of them run at a time (the rows are independent)
#   PRETRAIN_THREADS=N    threads of the fp32 pre-training (default THREADS: on a loaded machine
#                         two threads wait for each other; SIZE=wide at a load of 15 ran at
#                         200 tokens/s with 2 threads, 860 with 1)
# The machine is shared: everything runs under nice.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/qat_vs_ptq}
lowbit=${LOWBIT:-$src/build/lowbit}
size=${SIZE:-tiny}
seed=${SEED:-1337}
threads=${THREADS:-1}
jobs=${JOBS:-2}
pretrain_threads=${PRETRAIN_THREADS:-$threads}
data=${DATA:-/usr/share/games/fortunes}
eval_batches=${EVAL_BATCHES:-16}
py=/usr/bin/python3
export OMP_NUM_THREADS=$threads

case $size in
wide)  pretrain_steps=${PRETRAIN_STEPS:-3000}
       shape=(model.dim=256 model.n_layers=2 model.n_heads=4 model.n_kv_heads=2 model.ffn_dim=768
              model.max_seq_len=64 train.batch_size=16 train.seq_len=64) ;;
small) pretrain_steps=${PRETRAIN_STEPS:-2000}
       shape=(model.dim=256 model.n_layers=4 model.n_heads=4 model.n_kv_heads=2 model.ffn_dim=768
              model.max_seq_len=128 train.batch_size=16 train.seq_len=128) ;;
tiny)  pretrain_steps=${PRETRAIN_STEPS:-3000}
       shape=(model.dim=128 model.n_layers=2 model.n_heads=4 model.n_kv_heads=2 model.ffn_dim=384
              model.max_seq_len=64 train.batch_size=16 train.seq_len=64) ;;
*) echo "qat_vs_ptq: SIZE is tiny, wide or small, not '$size'" >&2; exit 2 ;;
esac
qat_steps=${QAT_STEPS:-$((pretrain_steps / 10))}
[ "$qat_steps" -ge 1 ] || { echo "qat_vs_ptq: QAT_STEPS must be at least 1" >&2; exit 2; }

# The control fp32cont (no quantizer: the fp32 model trained on with the QAT recipe, and
# distilled from itself), weight specs (activations unquantized) at three granularities,
# then the rows with 8-bit activations: b1.58 (ternary absmean per tensor, int8 per
# token), W4A8 and W8A8. A row is NAME=WEIGHT_SPEC[/ACTIVATION_SPEC]; a NAME ending in
# +subln is trained with SubLN inserted (QAT only: PTQ cannot insert norms, whose gains
# are trained, and without them it is the row without +subln).
all_specs="fp32cont=none
ternary-pc=ternary:per_channel ternary-g128=ternary:g128 ternary-g32=ternary:g32
int2-pc=int2:per_channel int2-g128=int2:g128 int2-g32=int2:g32
int3-pc=int3:per_channel int3-g128=int3:g128 int3-g32=int3:g32
int4-pc=int4:per_channel int4-g128=int4:g128 int4-g32=int4:g32
int8-pc=int8:per_channel int8-g128=int8:g128 int8-g32=int8:g32
b1.58=ternary/int8:per_token w4a8=int4:g128/int8:per_token w8a8=int8:per_channel/int8:per_token
b1.58+subln=ternary/int8:per_token ternary-pc+subln=ternary:per_channel"
specs=${SPECS:-$all_specs}
methods=${METHODS:-rtn gptq qat qat_kd}
# The QAT recipe, for every row (chosen by scripts/qat_vs_ptq_tune.sh on a tuning split, its
# variant "lr1e-3 kl10 min_lr0 T2"; docs/qat-vs-ptq.md): peak lr 1e-3 after a 10% warm-up,
# cosine down to 0 (how QAT ends matters most), no weight decay; distillation weighs the
# logit KL 10 times the cross-entropy, at temperature 2.
qat_set=${QAT_SET:-"train.lr=1e-3 train.min_lr=0 train.schedule=cosine train.weight_decay=0 train.warmup_steps=$(( qat_steps / 10 > 0 ? qat_steps / 10 : 1 ))"}
kd_set=${KD_SET:-"train.distill.weight_kl=10 train.distill.weight_ce=1 train.distill.temperature=2"}

mkdir -p "$out"
results=$out/results.jsonl
log=$out/log.txt
[ "${FRESH:-0}" = 1 ] && rm -rf "${out:?}"/*
touch "$log"

load() { cut -d' ' -f1 /proc/loadavg; }
# Runs a command, appending its output to the log; sets $wall and $cpu (user + system seconds).
timed() {
    local t0 t1 tf
    tf=$(mktemp)
    t0=$(date +%s.%N)
    if ! /usr/bin/time -f "%U %S" -o "$tf" nice "$@" >> "$log" 2>&1; then
        echo "qat_vs_ptq: failed: $* (see $log)" >&2
        tail -5 "$log" >&2
        rm -f "$tf"
        return 1
    fi
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc)
    cpu=$(awk '{print $1 + $2}' "$tf")
    rm -f "$tf"
}
# $loss: the validation loss of a checkpoint on the same batches for every model; $eval_s its time.
val_loss() {
    local t0
    t0=$(date +%s.%N)
    loss=$(nice "$lowbit" eval "$1" --batches "$eval_batches" --set data.path="$data" --set train.threads="$threads" \
        | sed -n 's/.*validation loss \([0-9.naif]*\),.*/\1/p')
    loss=${loss:-null}
    eval_s=$(echo "$(date +%s.%N) - $t0" | bc)
}
sets() { local a; for a in "$@"; do printf -- '--set\0%s\0' "$a"; done; }
record() { # method name weight act loss wall cpu load steps, into $dir/result.json
    printf '{"method":"%s","name":"%s","weight":"%s","act":"%s","val_loss":%s,"wall_s":%.1f,"cpu_s":%.1f,"load":%s,"steps":%s,"eval_s":%.1f}\n' \
        "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${eval_s:-0}" > "$dir/result.json"
    printf '%-8s %-14s val_loss %s  wall %6.1f s  cpu %6.1f s  load %s\n' "$1" "$2" "$5" "$6" "$7" "$8"
}
# A result from an earlier invocation: shown, not run again.
kept=0
done_before() {
    [ -f "$dir/result.json" ] || return 1
    kept=$((kept + 1))
    echo "(kept) $(cat "$dir/result.json")"
}

echo "qat_vs_ptq: SIZE=$size, pre-training $pretrain_steps steps ($pretrain_threads threads), QAT $qat_steps steps," \
     "$jobs runs at a time of $threads threads each, out $out"
echo "qat_vs_ptq: load average at the start $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
load_start=$(load)

# ---- 1. the fp32 model ------------------------------------------------------------
fp32=$out/fp32
dir=$fp32
if done_before; then
    [ -n "${FROM_HF:-}" ] && fp32=$fp32/import.h5
    pre_steps=$(sed -n 's/.*"steps":\([0-9]*\).*/\1/p' "$dir/result.json")
elif [ -n "${FROM_HF:-}" ]; then
    mkdir -p "$fp32"
    l0=$(load)
    timed "$lowbit" import hf "$FROM_HF" -o "$fp32/import.h5"
    fp32=$fp32/import.h5
    pre_steps=0
else
    l0=$(load)
    mapfile -d '' args < <(sets "${shape[@]}" train.seed="$seed" model.sub_norm=false model.quant.preset=fp32 data.tokenizer=byte \
        data.path="$data" data.val_fraction=0.05 train.steps="$pretrain_steps" train.lr=1e-3 train.min_lr=1e-4 \
        train.schedule=cosine train.warmup_steps=$((pretrain_steps / 20 > 0 ? pretrain_steps / 20 : 1)) \
        train.threads="$pretrain_threads" eval.interval=0 checkpoint.dir="$fp32" checkpoint.keep_last=1 log.sample_tokens=0)
    OMP_NUM_THREADS=$pretrain_threads timed "$lowbit" train "$src/configs/fp32-tiny.yaml" "${args[@]}"
    pre_steps=$pretrain_steps
fi
if [ ! -f "$dir/result.json" ]; then
    val_loss "$fp32"
    record fp32 fp32 none none "$loss" "$wall" "$cpu" "$l0" "$pre_steps"
fi

# ---- 2. every row, every method ----------------------------------------------------------
have_quantize=0
"$lowbit" quantize --help > /dev/null 2>&1 && have_quantize=1
[ $have_quantize = 0 ] && case " $methods " in *" rtn "*|*" gptq "*)
    echo "qat_vs_ptq: this lowbit has no 'quantize': the RTN and GPTQ columns are left out" ;; esac
# One model: quantized (rtn, gptq) or trained (qat, qat_kd), then evaluated. Runs in the
# background, JOBS at a time; a failure leaves $out/failed.<method>-<row> behind.
one() { # method row
    local method=$1 row=$2 name spec w a subln quant dir l0 qset kd qs args
    name=${row%%=*}
    spec=${row#*=}
    w=${spec%%/*}
    a=none
    [ "$spec" != "$w" ] && a=${spec#*/}
    subln=false
    case $name in *+subln) subln=true ;; esac
    quant=(model.quant.preset=fp32 "model.quant.attn={weight: $w, activation: $a}"
           "model.quant.ffn={weight: $w, activation: $a}" model.sub_norm=$subln)
    dir=$out/$method-$name
    rm -rf "$dir"
    mkdir -p "$dir"
    l0=$(load)
    case $method in
    rtn|gptq)
        qset=()
        [ "$a" != none ] && qset=(--set "model.quant.attn.activation=$a" --set "model.quant.ffn.activation=$a")
        timed "$lowbit" quantize "$fp32" -o "$dir/model.h5" --spec "$w" --method "$method" \
            --set data.path="$data" "${qset[@]}" || return 1
        val_loss "$dir/model.h5"
        record "$method" "$name" "$w" "$a" "$loss" "$wall" "$cpu" "$l0" 0 ;;
    qat|qat_kd)
        kd=()
        [ $method = qat_kd ] && read -r -a kd <<< "$kd_set"
        read -r -a qs <<< "$qat_set"
        mapfile -d '' args < <(sets "${shape[@]}" "${quant[@]}" data.path="$data" train.init_from="$fp32" \
            train.seed="$seed" train.steps="$qat_steps" train.threads="$threads" "${qs[@]}" "${kd[@]}" \
            eval.interval=0 checkpoint.dir="$dir" checkpoint.keep_last=1 log.sample_tokens=0)
        timed "$lowbit" train "$src/configs/fp32-tiny.yaml" "${args[@]}" || return 1
        val_loss "$dir"
        record "$method" "$name" "$w" "$a" "$loss" "$wall" "$cpu" "$l0" "$qat_steps" ;;
    esac
}
rm -f "$out"/failed.*
for row in $specs; do
    name=${row%%=*}
    w=${row#*=}
    w=${w%%/*}
    for method in $methods; do
        case $method in
        rtn|gptq) [ $have_quantize = 0 ] || [ "$w" = none ] && continue
                  case $name in *+subln) continue ;; esac ;;
        qat|qat_kd) ;;
        *) echo "qat_vs_ptq: unknown method '$method'" >&2; exit 2 ;;
        esac
        dir=$out/$method-$name
        done_before && continue
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
        ( one "$method" "$row" || { touch "$out/failed.$method-$name"; exit 1; } ) &
    done
done
wait
end=$(date +%s)
# CPU seconds of everything this invocation ran (user + system of its waited-for children).
tf=$(mktemp)
times > "$tf"   # in this shell: a $(times) would run in a subshell, which has no children
cpu_total=$(tail -1 "$tf" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, "m"); n += t[1] * 60 + t[2] } print n }')
rm -f "$tf"
echo "qat_vs_ptq: $((end - start)) s in this invocation, $cpu_total s of CPU time; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$out"/fp32/result.json "$out"/*-*/result.json > "$results" 2>/dev/null || true
# The documented setting is the one with none of these given.
default_setting=true
[ -n "${SIZE:-}${PRETRAIN_STEPS:-}${QAT_STEPS:-}${FROM_HF:-}" ] && default_setting=false
printf '{"method":"study","default_setting":%s,"size":"%s","pretrain_steps":%s,"qat_steps":%s,"threads":%s,"jobs":%s,"pretrain_threads":%s,"seconds":%s,"cpu_s":%s,"kept":%s,"load_start":%s,"load_end":%s,"from_hf":"%s","qat_set":"%s","kd_set":"%s","checkpoint":"%s","batch":"%s"}\n' \
    "$default_setting" "$size" "$pre_steps" "$qat_steps" "$threads" "$jobs" "$pretrain_threads" "$((end - start))" "$cpu_total" "$kept" "$load_start" "$(load)" "${FROM_HF:-}" "$qat_set" \
    "$kd_set" "$fp32" "${shape[*]}" >> "$results"

if [ "${DOCS:-1}" != 0 ]; then
    "$py" "$src/scripts/qat_vs_ptq_report.py" "$results" "$src/docs/qat-vs-ptq.md" "$src/docs/img"
fi
if ls "$out"/failed.* > /dev/null 2>&1; then
    echo "qat_vs_ptq: failed: $(cd "$out" && echo failed.* | sed 's/failed\.//g') (see $log)" >&2
    exit 1
fi
