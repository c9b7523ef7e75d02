#!/usr/bin/env bash
# scripts/plot_runs: two runs' metrics into one PNG of the asked size, and
# bad input (a missing, empty or broken metrics file) named with exit code 2.
#   test_plot_runs.sh SOURCE_DIR
set -u
PLOT=$1/scripts/plot_runs
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-plot-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$(dirname "$0")/testutil.sh"

# Two runs as the trainer writes them (src/trainer/metrics.h).
mkdir -p "$WORK/a" "$WORK/b"
for run in a b; do
  for s in $(seq 1 50); do
    printf '{"event":"step","step":%d,"tokens":%d,"loss":%s,"lr":%s,"wd":0.1,"grad_norm":1.0,"lambda":1.0,"skipped":false,"tokens_per_s":1000}\n' \
      "$s" $((s * 128)) "$(awk -v s="$s" -v r=$run 'BEGIN{print 5/(1+s/10) + (r=="b") * 0.2}')" \
      "$(awk -v s="$s" 'BEGIN{print 1e-3 * (s < 10 ? s/10 : 1)}')"
    [ $((s % 10)) = 0 ] && printf '{"event":"eval","step":%d,"tokens":%d,"val_loss":%s,"val_ppl":3.0}\n' "$s" $((s * 128)) \
      "$(awk -v s="$s" 'BEGIN{print 5.2/(1+s/10)}')"
  done >"$WORK/$run/metrics.jsonl"
done

expect 0 "two runs into one PNG" -- "$PLOT" "$WORK/a" "$WORK/b/metrics.jsonl" -o "$WORK/runs.png" --size 800x600 \
  --labels fp32,b158
# PNG: 8-byte signature, then the IHDR chunk with width and height (big-endian).
if [ "$(head -c 8 "$WORK/runs.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then ok "PNG signature"; else
  bad "no PNG signature"; fi
size=$(od -An -tu1 -j16 -N8 "$WORK/runs.png" | awk '{print ($1*16777216+$2*65536+$3*256+$4) "x" ($5*16777216+$6*65536+$7*256+$8)}')
[ "$size" = 800x600 ] && ok "800x600 pixels" || bad "size $size, expected 800x600"
[ "$(stat -c %s "$WORK/runs.png")" -gt 10000 ] && ok "the image has content" || bad "a tiny PNG"

expect 2 "a missing run" -- "$PLOT" "$WORK/nope" -o "$WORK/x.png"
contains "$WORK/err" "$WORK/nope" "the missing run named"
mkdir -p "$WORK/empty" && : >"$WORK/empty/metrics.jsonl"
expect 2 "an empty metrics file" -- "$PLOT" "$WORK/empty" -o "$WORK/x.png"
contains "$WORK/err" "empty" "says it is empty"
mkdir -p "$WORK/broken" && head -5 "$WORK/a/metrics.jsonl" >"$WORK/broken/metrics.jsonl" &&
  printf '{"event":"step","step":6,"loss":4.\n' >>"$WORK/broken/metrics.jsonl"
expect 2 "a broken line" -- "$PLOT" "$WORK/broken" -o "$WORK/x.png"
contains "$WORK/err" "metrics.jsonl:6:" "the file and line named"
mkdir -p "$WORK/nodir"
expect 2 "a directory without metrics" -- "$PLOT" "$WORK/nodir" -o "$WORK/x.png"
expect 2 "labels that do not match" -- "$PLOT" "$WORK/a" --labels x,y -o "$WORK/x.png"
[ -e "$WORK/x.png" ] && bad "a failed plot left x.png" || ok "nothing written on failure"

finish
