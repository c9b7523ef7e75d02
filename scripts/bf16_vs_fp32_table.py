#!/usr/bin/python3
"""The table of scripts/bf16_vs_fp32.sh: final validation loss per run, and per
config and variant (bf16, bf16-attn32: see the script) the mean and spread, the
variant - fp32 difference of the means with its standard error, the same
difference seed by seed (paired: the same init and batches), and the
seed-to-seed spread of fp32 (the noise floor); then, from each run's
metrics.jsonl, the difference of the means at every evaluation, to show how far
two runs wander apart and back along the way.

    scripts/bf16_vs_fp32_table.py OUTDIR     (reads OUTDIR/<config>.<prec>.seed<N>.log)
"""
import math
import pathlib
import json
import re
import statistics
import sys

DONE = re.compile(r"^done: (\d+) steps, final validation loss ([0-9.]+), (\d+) tokens/s", re.M)
VARIANTS = ("fp32", "bf16", "bf16-attn32")  # as scripts/bf16_vs_fp32.sh names them; fp32 is the reference
NAME = re.compile(r"^(.+)\.(" + "|".join(VARIANTS) + r")\.seed(\d+)\.log$")


def sd(xs):
    return statistics.stdev(xs) if len(xs) > 1 else float("nan")


def main(outdir):
    runs = {}  # (config, precision) -> {seed: loss}
    speed = {}  # (config, precision) -> {seed: tokens/s}: comparable only between runs side by side
    steps = set()
    for log in sorted(pathlib.Path(outdir).glob("*.log")):
        m = NAME.match(log.name)
        d = DONE.search(log.read_text(errors="replace"))
        if not m or not d:
            continue
        steps.add(int(d.group(1)))
        runs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = float(d.group(2))
        speed.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = int(d.group(3))
    configs = sorted({c for c, _ in runs}, key=lambda c: ["fp32-tiny", "bitnet-b158-tiny",
                                                          "bitnet-b1-tiny"].index(c)
                     if c in ("fp32-tiny", "bitnet-b158-tiny", "bitnet-b1-tiny") else 9)
    print(f"Final validation loss, {'/'.join(map(str, sorted(steps)))} steps, per run:\n")
    print("| config | variant | " + " | ".join(f"seed {s}" for s in
          sorted({s for r in runs.values() for s in r})) + " |")
    seeds_all = sorted({s for r in runs.values() for s in r})
    print("|---|---|" + "---:|" * len(seeds_all))
    for c in configs:
        for p in VARIANTS:
            r = runs.get((c, p), {})
            if not r:
                continue
            print(f"| {c} | {p} | " + " | ".join(f"{r[s]:.4f}" if s in r else "–"
                                                 for s in seeds_all) + " |")
    print("\nPer config and variant (sd: sample standard deviation over seeds; se: standard error "
          "of the difference of the means, sqrt(sd_fp32²/n + sd_variant²/n); paired: "
          "variant − fp32 of the same seed, mean ± its standard error; tokens/s variant / fp32: the "
          "ratio of each seed's pair, comparable only where the script ran them side by side, averaged):\n")
    print("| config | variant | n fp32 / variant | fp32 mean ± sd | variant mean ± sd | fp32 seed sd (noise floor) "
          "| variant − fp32 of the means ± se | paired, mean ± se | tokens/s variant / fp32 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for c, v in ((c, v) for c in configs for v in VARIANTS[1:]):
        f = runs.get((c, "fp32"), {})
        b = runs.get((c, v), {})
        if not f or not b:
            continue
        fv, bv = list(f.values()), list(b.values())
        mf, mb = statistics.mean(fv), statistics.mean(bv)
        se = math.sqrt(sd(fv) ** 2 / len(fv) + sd(bv) ** 2 / len(bv))
        pairs = [b[s] - f[s] for s in f if s in b]
        pm = statistics.mean(pairs)
        pse = sd(pairs) / math.sqrt(len(pairs))
        pct = lambda x: 100 * x / mf
        pm_ = lambda x, f: "" if math.isnan(x) else " ± " + f(x)  # one seed: no spread
        print(f"| {c} | {v} | {len(fv)} / {len(bv)} | {mf:.4f}{pm_(sd(fv), lambda x: f'{x:.4f}')} "
              f"| {mb:.4f}{pm_(sd(bv), lambda x: f'{x:.4f}')} "
              f"| {'–' if math.isnan(sd(fv)) else f'{pct(sd(fv)):.2f}%'} "
              f"| {pct(mb - mf):+.2f}%{pm_(se, lambda x: f'{pct(x):.2f}%')} "
              f"| {pct(pm):+.2f}%{pm_(pse, lambda x: f'{pct(x):.2f}%')} ({len(pairs)} seed{'s' * (len(pairs) > 1)}) "
              f"| {statistics.mean(speed[(c, v)][s] / speed[(c, 'fp32')][s] for s in f if s in b):.2f}x |")

    print("\nVariant − fp32 of the mean validation loss at every evaluation (runs with a metrics.jsonl):\n")
    curves = {}  # (config, precision) -> {step: [losses]}
    for path in sorted(pathlib.Path(outdir).glob("*.metrics.jsonl")):
        m = re.match(r"^(.+)\.(" + "|".join(VARIANTS) + r")\.seed(\d+)\.metrics\.jsonl$", path.name)
        if not m or (m.group(1), m.group(2)) not in runs or int(m.group(3)) not in runs[(m.group(1), m.group(2))]:
            continue  # only finished runs
        for line in path.read_text(errors="replace").splitlines():
            e = json.loads(line)
            if e.get("event") == "eval":
                curves.setdefault((m.group(1), m.group(2)), {}).setdefault(e["step"], []).append(e["val_loss"])
    eval_steps = sorted({s for c in curves.values() for s in c})
    print("| config | variant | n fp32 / variant | " + " | ".join(f"step {s}" for s in eval_steps) + " |")
    print("|---|---|---|" + "---:|" * len(eval_steps))
    for c, v in ((c, v) for c in configs for v in VARIANTS[1:]):
        f, b = curves.get((c, "fp32"), {}), curves.get((c, v), {})
        if not f or not b:
            continue
        cells = []
        for s in eval_steps:
            if s in f and s in b:
                mf = statistics.mean(f[s])
                cells.append(f"{100 * (statistics.mean(b[s]) - mf) / mf:+.2f}%")
            else:
                cells.append("–")
        n = f"{len(f[eval_steps[-1]]) if eval_steps[-1] in f else 0} / {len(b[eval_steps[-1]]) if eval_steps[-1] in b else 0}"
        print(f"| {c} | {v} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bf16_vs_fp32_table.py OUTDIR")
    main(sys.argv[1])
