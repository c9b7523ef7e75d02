#!/usr/bin/env python3
"""The α-β model of data-parallel training (docs/distributed.md).

A message of n bytes takes α + n/β. lowbit reduces gradients with a
reduce-scatter and an all-gather; as rings, over p ranks, for M bytes of
gradients they take

    T_comm(p) = 2(p − 1)·α + 2·(p − 1)/p · M/β.

Compressed gradients (optim.comm) are all-gathered instead, each rank
receiving every rank's compressed copy: (p − 1)·α + (p − 1)·M_c/β, which
grows with p; a two-phase compressed reduction (all-to-all of compressed
parts, sum, compress, all-gather) would take the ring's time on M_c. The
table gives both.

A step is the compute T_c of one rank's share (unchanged with p: each rank
keeps its batch) plus what of T_comm the backward pass does not hide: between
max(T_c, T_comm) (fully overlapped) and T_c + T_comm (not at all).

    scripts/dist_alpha_beta.py      # prints the table of docs/distributed.md
"""
# Networks: α (s), β (bytes/s). Assumed figures for a real cluster: MPI over
# 100 Gb/s InfiniBand (EDR) ~1.5 µs, ~12 GB/s; over 25 GbE (TCP) ~25 µs, ~2.9 GB/s.
NETWORKS = [("InfiniBand 100 Gb/s", 1.5e-6, 12e9), ("25 GbE", 25e-6, 2.9e9)]
# Models: parameters, compute per rank per step (s).
#  small: configs/bitnet-b158-small.yaml, 25.3M parameters, batch 4 × 256 tokens per
#         rank: 1.26 s per step on this machine's 2 cores (docs/performance.md, model (b), b1.58).
#  1B:    1.0e9 parameters, 4 × 256 tokens per rank: 6·P·tokens = 6.1 TFLOP per step,
#         assumed at 1 TFLOP/s effective on a 32-core AVX-512 node: 6.1 s.
MODELS = [("small (25.3M)", 25.3e6, 1.26), ("1B", 1.0e9, 6.1)]
# Gradient bytes per parameter on the wire: fp32; bf16; int8/fp8 with one fp32
# scale per block of 256 (optim.comm).
FORMATS = [("fp32", 4.0), ("bf16", 2.0), ("int8/fp8", 1.0 + 4.0 / 256)]
RANKS = [8, 64, 512]


def t_comm(p, m_bytes, alpha, beta):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * m_bytes / beta


def t_allgather(p, m_bytes, alpha, beta):
    return (p - 1) * alpha + (p - 1) * m_bytes / beta


def main():
    nets = NETWORKS
    print("| network | model | gradients | ranks | T_comm ms (ring) | step ms, overlapped .. not | efficiency (not overlapped) | T_comm ms as lowbit sends it |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for net, alpha, beta in nets:
        for model, params, tc in MODELS:
            for fmt, b in FORMATS:
                for p in RANKS:
                    tcomm = t_comm(p, params * b, alpha, beta)
                    now = tcomm if fmt == "fp32" else t_allgather(p, params * b, alpha, beta)
                    lo, hi = max(tc, tcomm), tc + tcomm
                    print(f"| {net} | {model} | {fmt} | {p} | {tcomm * 1e3:.1f} | {lo * 1e3:.0f} .. {hi * 1e3:.0f} | {tc / hi:.2f} | {now * 1e3:.1f} |")


if __name__ == "__main__":
    main()
