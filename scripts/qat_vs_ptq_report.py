#!/usr/bin/env python3
"""The generated part of docs/qat-vs-ptq.md and its plots, from the study's results.

Usage: qat_vs_ptq_report.py RESULTS.jsonl DOC.md IMG_DIR

RESULTS.jsonl is written by scripts/qat_vs_ptq.sh: one line per model (method, name,
weight and activation specs, val_loss, wall_s, cpu_s, load, steps) and a last "study"
line (setting, total seconds, the fp32 checkpoint). The text between the markers
<!-- study:begin --> and <!-- study:end --> of DOC.md is replaced; the rest of the page
is written by hand. Bits per weight count the codes and one fp16 scale per scale
block of the projections (attention and FFN); the embedding and head stay fp32 and
are not counted."""
import json
import math
import os
import re
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ["rtn", "gptq", "qat", "qat_kd"]
LABEL = {"rtn": "RTN", "gptq": "GPTQ", "qat": "QAT", "qat_kd": "QAT+KD"}
PROJ = re.compile(r"model/blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")


def projection_shapes(path):
    """[out, in] of every projection weight of a checkpoint (a file or a run directory)."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.startswith("step_") and f.endswith(".h5"))
        path = os.path.join(path, files[-1])
    shapes = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: shapes.append(o.shape) if isinstance(o, h5py.Dataset) and PROJ.match(n) else None)
    return shapes


def bits_per_weight(spec, shapes):
    """Codes plus one fp16 scale per block, averaged over the projections' weights."""
    fmt, *opts = spec.split(":")
    if fmt == "none":
        return 32.0
    code = math.log2(3) if fmt == "ternary" else float(fmt[3:])
    total = n = 0
    for rows, cols in shapes:
        if "per_channel" in opts:
            blocks = rows
        elif any(o.startswith("g") and o[1:].isdigit() for o in opts):
            g = int(next(o for o in opts if o.startswith("g") and o[1:].isdigit())[1:])
            blocks = rows * (cols // g)
        else:
            blocks = 1
        total += rows * cols * code + 16 * blocks
        n += rows * cols
    return total / n


def fmt_delta(x, base):
    return "—" if x is None else f"{x:.4f} ({x - base:+.4f})"


def main():
    results, doc, img = sys.argv[1:4]
    rows = [json.loads(l) for l in open(results) if l.strip()]
    study = next(r for r in rows if r["method"] == "study")
    fp32 = next(r for r in rows if r["method"] == "fp32")
    base = fp32["val_loss"]
    # The study's time: every run and its evaluation (runs may come from several invocations).
    total_s = sum(r["wall_s"] + r.get("eval_s", 0.0) for r in rows if r["method"] != "study")
    total_cpu = sum(r["cpu_s"] for r in rows if r["method"] != "study")
    loads = [r["load"] for r in rows if r["method"] != "study"]
    shapes = projection_shapes(study["checkpoint"])
    names, loss, info = [], {}, {}
    for r in rows:
        if r["method"] in METHODS:
            if r["name"] not in names:
                names.append(r["name"])
            loss[(r["method"], r["name"])] = r["val_loss"]
            info[(r["method"], r["name"])] = r
            info.setdefault(r["name"], r)
    fam = ["fp32cont", "ternary", "int2", "int3", "int4", "int8", "b1.58", "w4a8", "w8a8"]
    gran = ["pc", "g128", "g32"]
    def order(n):  # family, then granularity, a +subln row after the row it extends
        base, sub = n.split("+")[0], n[len(n.split("+")[0]):]
        f, _, g = base.partition("-")
        return (fam.index(f) if f in fam else len(fam), gran.index(g) if g in gran else -1, sub)
    names.sort(key=order)
    bpw = {n: bits_per_weight(info[n]["weight"], shapes) for n in names}
    present = [m for m in METHODS if any((m, n) in loss for n in names)]

    out = []
    out.append(f"Setting: `SIZE={study['size']}` ({study['batch'].replace('model.', '').replace('train.', '')}), "
               f"fp32 pre-training {study['pretrain_steps']} steps, every QAT run {study['qat_steps']} steps "
               f"({100.0 * study['qat_steps'] / max(study['pretrain_steps'], 1):.0f}% of the pre-training), "
               f"pre-training with {study.get('pretrain_threads', study['threads'])} threads, then "
               f"{study.get('jobs', 1)} runs at a time of {study['threads']} thread(s) each.\n")
    out.append(f"The recipe (`qat_vs_ptq.sh`'s defaults): QAT `{study['qat_set']}`; QAT+KD adds "
               f"`{study['kd_set']}`.\n")
    out.append(f"Time: the last invocation of the script took {study['seconds']} s of wall time and "
               f"{study.get('cpu_s', 0):.0f} s of CPU time (everything it ran; 1-minute load average "
               f"{study['load_start']:.2f} at its start, {study['load_end']:.2f} at its end). The runs in the "
               f"table took {total_s:.0f} s of wall time one by one (with their evaluations) and "
               f"{total_cpu:.0f} s of CPU time (without evaluations); the load average was {min(loads):.1f} "
               f"to {max(loads):.1f} when they started (2 cores: above 2, other work was running).\n")
    out.append(f"fp32: validation loss **{base:.4f}** (perplexity {math.exp(base):.2f}), "
               f"{fp32['wall_s']:.0f} s wall, {fp32['cpu_s']:.0f} s CPU.\n")
    missing = [LABEL[m] for m in METHODS if m not in present]
    if missing:
        out.append(f"Not run in this study: {', '.join(missing)} (see the notes below the table).\n")
    out.append("Validation loss (Δ to fp32) by weight format and method; bits per weight include one fp16 scale "
               "per scale block.\n")
    out.append("| row | weight | activation | bits/weight | " + " | ".join(LABEL[m] for m in present) + " |")
    out.append("|---|---|---|---|" + "---|" * len(present))
    for n in names:
        r = info[n]
        cells = [fmt_delta(loss.get((m, n)), base) for m in present]
        out.append(f"| {n} | `{r['weight']}` | `{r['act']}` | {bpw[n]:.3f} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Perplexity:\n")
    out.append("| row | " + " | ".join(LABEL[m] for m in present) + " |")
    out.append("|---|" + "---|" * len(present))
    for n in names:
        cells = ["—" if loss.get((m, n)) is None else f"{math.exp(loss[(m, n)]):.3f}" for m in present]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Time per method (mean over the rows; wall and CPU seconds of the quantization or training "
               "command, without the evaluation):\n")
    out.append("| method | runs | wall s | CPU s | mean load |")
    out.append("|---|---|---|---|---|")
    for m in present:
        rs = [info[(m, n)] for n in names if (m, n) in info]
        out.append(f"| {LABEL[m]} | {len(rs)} | {sum(r['wall_s'] for r in rs) / len(rs):.1f} | "
                   f"{sum(r['cpu_s'] for r in rs) / len(rs):.1f} | {sum(r['load'] for r in rs) / len(rs):.1f} |")
    out.append("")

    # Targets and findings, from the numbers.
    def d(m, n):
        v = loss.get((m, n))
        return None if v is None else v - base

    def verdict(ok):
        return "not measured" if ok is None else ("**met**" if ok else "**missed**")

    out.append("Targets:\n")
    ternary = [n for n in names if n.startswith(("ternary", "b1.58"))]
    for n, limit in [(n, 0.05) for n in ternary] + [("int4-g128", 0.01)]:
        x = d("qat_kd", n)
        out.append(f"- QAT+KD {n} within {limit} nats of fp32: "
                   f"{'Δ = %+.4f' % x if x is not None else 'not run'} → {verdict(None if x is None else x <= limit)}")
    for n in ["int3-pc", "int3-g128", "int3-g32", "int4-pc", "int4-g128", "int4-g32"]:
        r, g = d("rtn", n), d("gptq", n)
        if r is None or g is None:
            out.append(f"- GPTQ closes ≥ half of RTN's gap at {n}: not run")
        else:
            closed = (r - g) / r if r > 0 else float("nan")
            out.append(f"- GPTQ closes ≥ half of RTN's gap at {n}: RTN Δ {r:+.4f}, GPTQ Δ {g:+.4f}, "
                       f"closed {100 * closed:.0f}% → {verdict(closed >= 0.5)}")
    # One invocation that ran everything (nothing kept from an earlier one) measures the study.
    ran_all = study.get("kept", 1) == 0
    # The study itself keeps about JOBS x THREADS cores busy.
    quiet = max(loads) <= study.get("jobs", 1) * study["threads"] + 1
    secs = study["seconds"]
    if not ran_all:
        out.append("- the study in under an hour on 2 cores: not measured (the table's runs come from several "
                   "invocations)")
    else:
        out.append(f"- the study in under an hour on 2 cores: {secs} s of wall time, {study.get('cpu_s', 0):.0f} s "
                   f"of CPU time, load average {min(loads):.1f}–{max(loads):.1f} → "
                   + (verdict(secs < 3600) if quiet else
                      f"{verdict(secs < 3600)} under a load of other work (CPU time "
                      f"{'under' if study.get('cpu_s', 0) < 3600 else 'over'} an hour)"))
    if not study.get("default_setting", False):
        out[-1] += " (this setting, not the documented one)"
    out.append("")

    out.append("ZeroQuant-V2's findings, checked on these numbers:\n")
    for m in present:
        finer = []
        for b in ["int2", "int3", "int4", "ternary"]:
            ls = [loss.get((m, f"{b}-{g}")) for g in ["pc", "g128", "g32"]]
            if None not in ls:
                finer.append(f"{b} pc {ls[0] - base:+.3f} / g128 {ls[1] - base:+.3f} / g32 {ls[2] - base:+.3f}")
        if finer:
            out.append(f"- {LABEL[m]}, finer groups at low bits (Δ): " + "; ".join(finer))
    pairs = [("int4-pc", "int3-g32"), ("int3-pc", "int2-g32"), ("int8-pc", "int4-g32"), ("int4-g128", "int3-g32")]
    for m in present:
        said = []
        for coarse, fine in pairs:
            a, b = loss.get((m, coarse)), loss.get((m, fine))
            if a is not None and b is not None:
                said.append(f"{coarse} ({bpw[coarse]:.2f} b) {a - base:+.3f} vs {fine} ({bpw[fine]:.2f} b) "
                            f"{b - base:+.3f}: {'coarse' if a < b else 'fine'} wins")
        if said:
            out.append(f"- {LABEL[m]}, more bits coarse vs fewer bits fine: " + "; ".join(said))
    lows = [n for n in names if n.split("-")[0] in ("int2", "int3", "ternary") and ("rtn", n) in loss
            and ("gptq", n) in loss]
    if lows:
        ahead = sum(1 for n in lows if loss[("gptq", n)] < loss[("rtn", n)])
        out.append(f"- GPTQ ahead of RTN at ≤ 3 bits: in {ahead} of {len(lows)} rows")
    out.append("")

    # Plots.
    os.makedirs(img, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    marker = {"rtn": "o", "gptq": "s", "qat": "^", "qat_kd": "D"}
    for m in present:
        xs, ys = [], []
        for n in names:
            if loss.get((m, n)) is not None and bpw[n] < 32:
                xs.append(bpw[n])
                ys.append(loss[(m, n)] - base)
        ax.scatter(xs, ys, marker=marker[m], label=LABEL[m])
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("bits per weight (codes + fp16 scales)")
    ax.set_ylabel("validation loss − fp32 (nats; linear within ±0.01)")
    ax.set_title(f"QAT vs PTQ ({study['size']}, fp32 loss {base:.3f})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p1 = os.path.join(img, "qat-vs-ptq-bits.png")
    fig.savefig(p1, dpi=90)
    plt.close(fig)

    groups = [n for n in names if "-" in n]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / max(len(present), 1)
    for i, m in enumerate(present):
        ys = [(loss.get((m, n)) or float("nan")) - base for n in groups]
        ax.bar([k + i * width for k in range(len(groups))], ys, width, label=LABEL[m])
    deltas = [loss[k] - base for k in loss if k[1] in groups and loss[k] is not None]
    if deltas:
        ax.set_ylim(min(min(deltas) * 1.5, -0.02), max(max(deltas) * 1.5, 0.02))
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(groups))])
    ax.set_xticklabels(groups, rotation=60, fontsize=8)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylabel("validation loss − fp32 (nats; linear within ±0.01)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p2 = os.path.join(img, "qat-vs-ptq-granularity.png")
    fig.savefig(p2, dpi=90)
    plt.close(fig)
    rel = os.path.relpath(img, os.path.dirname(os.path.abspath(doc)))
    out.append(f"![loss gap against bits per weight]({rel}/qat-vs-ptq-bits.png)\n")
    out.append(f"![loss gap by format and granularity]({rel}/qat-vs-ptq-granularity.png)\n")

    text = open(doc).read()
    begin, end = "<!-- study:begin -->", "<!-- study:end -->"
    if begin not in text or end not in text:
        sys.exit(f"qat_vs_ptq_report: {doc} has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(head + begin + "\n" + "\n".join(out) + "\n" + end + tail)
    os.replace(tmp, doc)
    print(f"qat_vs_ptq_report: {doc}, {p1}, {p2}")


if __name__ == "__main__":
    main()
