#!/usr/bin/env python3
"""An independent GPTQ (Frantar et al. 2022) in NumPy/SciPy, for checking
lowbit's src/ptq/gptq.c: written from the paper's algorithm and the order of
operations of IST-DASLab/gptq's GPTQ.fasterquant, with lowbit's quantizer
formulas from docs/quantization.md.

    gptq_ref.py IN OUT --spec SPEC [--block N] [--damp F] [--act-order]

IN (little-endian): int32 rows, int32 cols, float32 W[rows*cols] (row-major),
float64 H[cols*cols]. OUT: int8 codes[rows*cols], then float32 steps, one per
scale block (per tensor: 1; per_channel: rows; gN: rows*(cols/N), row-major).
SPEC: ternary or intN (symmetric), with per_tensor (default), per_channel or gN.

The weights are updated in float64 and rounded to float32 before each
quantizer call, as lowbit does; the quantizer runs in float32:
  ternary  gamma = max(float32(sum|w| / n), 1e-5), s = 1/gamma, codes in [-1, 1]
  intN     s = (2^(N-1) - 1) / max(max|w|, 1e-5),      codes in [-2^(N-1), 2^(N-1) - 1]
  code = clamp(rint(w * s)), value = code * d with d = 1/s (all float32).
"""
import argparse
import sys

import numpy as np
import scipy.linalg

F32 = np.float32


def parse_spec(text):
    parts = text.split(":")
    fmt = parts[0]
    if fmt == "ternary":
        bits = 2
    elif fmt.startswith("int") and fmt[3:].isdigit() and 2 <= int(fmt[3:]) <= 8:
        bits = int(fmt[3:])
    else:
        sys.exit(f"gptq_ref: unsupported format '{fmt}'")
    gran, group = "tensor", 0
    for p in parts[1:]:
        if p == "per_tensor" or p == "sym":
            continue
        if p == "per_channel":
            gran = "row"
        elif p.startswith("g") and p[1:].isdigit():
            gran, group = "group", int(p[1:])
        else:
            sys.exit(f"gptq_ref: unsupported option '{p}'")
    return fmt, bits, gran, group


class Block:
    """One scale block's quantizer, fitted to float32 values x."""

    def __init__(self, fmt, bits, x):
        x = np.asarray(x, dtype=F32)
        if fmt == "ternary":
            mean_abs = F32(np.abs(x).astype(np.float64).sum() / x.size)
            gamma = max(mean_abs, F32(1e-5))
            self.s = F32(1) / gamma
            self.qmin, self.qmax = F32(-1), F32(1)
        else:
            qb = F32(1 << (bits - 1))
            amax = F32(np.abs(x).max())
            self.s = (qb - F32(1)) / max(amax, F32(1e-5))
            self.qmin, self.qmax = -qb, qb - F32(1)
        self.d = F32(1) / self.s

    def code(self, w):
        return np.clip(np.rint(np.asarray(w, dtype=F32) * self.s), self.qmin, self.qmax).astype(F32)


def gptq(W32, H, fmt, bits, gran, group, block, damp, act_order):
    rows, cols = W32.shape
    g = group if gran == "group" else cols
    n_groups = cols // g
    steps = []
    # 1. per-tensor / per-row scales on W as given
    if gran == "tensor":
        fixed = [Block(fmt, bits, W32.ravel())] * rows
        steps = [fixed[0].d]
    elif gran == "row":
        fixed = [Block(fmt, bits, W32[r]) for r in range(rows)]
        steps = [b.d for b in fixed]
    else:
        fixed = None
        steps = np.zeros(rows * n_groups, dtype=F32)
    W = W32.astype(np.float64)
    H = H.copy()
    # 2. dead inputs
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    # 3. static groups (act-order with groups), then the order
    static = None
    if gran == "group" and act_order:
        static = [[Block(fmt, bits, W[r, k * g:(k + 1) * g].astype(F32)) for k in range(n_groups)] for r in range(rows)]
        for r in range(rows):
            for k in range(n_groups):
                steps[r * n_groups + k] = static[r][k].d
    perm = np.arange(cols)
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
    # 4. damping; the upper Cholesky factor of the inverse
    H[np.diag_indices(cols)] += damp * np.mean(np.diag(H))
    L = np.linalg.cholesky(H)
    Hinv = scipy.linalg.cho_solve((L, True), np.eye(cols))
    U = np.linalg.cholesky(Hinv).T
    # 5. columns in lazy blocks
    Q = np.zeros((rows, cols), dtype=np.int8)
    current = fixed
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            j = i1 + i
            if gran == "group" and static is None and j % g == 0:
                current = [Block(fmt, bits, W[r, j:j + g].astype(F32)) for r in range(rows)]
                for r in range(rows):
                    steps[r * n_groups + j // g] = current[r].d
            if static is not None:
                k = perm[j] // g
                current = [static[r][k] for r in range(rows)]
            w = W1[:, i].astype(F32)
            codes = np.array([current[r].code(w[r]) for r in range(rows)], dtype=F32)
            values = np.array([codes[r] * current[r].d for r in range(rows)], dtype=F32)
            Q[:, j] = codes.astype(np.int8)
            err = (W1[:, i] - values.astype(np.float64)) / U[j, j]
            W1[:, i + 1:] -= np.outer(err, U[j, j + 1:i2])
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    # 6. original column order
    out = np.zeros_like(Q)
    out[:, perm] = Q
    return out, np.asarray(steps, dtype=F32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--act-order", action="store_true")
    a = ap.parse_args()
    fmt, bits, gran, group = parse_spec(a.spec)
    with open(a.input, "rb") as f:
        rows, cols = (int(v) for v in np.frombuffer(f.read(8), dtype="<i4"))
        W = np.frombuffer(f.read(4 * rows * cols), dtype="<f4").reshape(rows, cols).astype(F32)
        H = np.frombuffer(f.read(8 * cols * cols), dtype="<f8").reshape(cols, cols).copy()
    codes, steps = gptq(W, H, fmt, bits, gran, group, a.block, a.damp, a.act_order)
    with open(a.output, "wb") as f:
        f.write(codes.astype(np.int8).tobytes())
        f.write(steps.astype("<f4").tobytes())


if __name__ == "__main__":
    main()
