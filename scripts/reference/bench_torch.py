"""Training-step benchmark of the PyTorch reference: the counterpart of
bench/bench_train.c (same options, same key=value output line).

    bench_torch.py [--layers N] [--heads H] [--kv-heads H] [--dim D] [--ffn F]
                   [--seq T] [--batch B] [--vocab V] [--mode fp|b1.58|b1]
                   [--steps N] [--warmup N] [--threads N]

A step is what lowbit's trainer does: forward, backward, AdamW update (norms
and embeddings without decay), zero grad. Threads default to OMP_NUM_THREADS.
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lowbit_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(layers=4, heads=4, kv_heads=2, dim=128, ffn=0, seq=64, batch=12, vocab=256, steps=20, warmup=3,
                     threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0)).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--mode", default="b1.58", choices=["fp", "b1.58", "b1"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    ffn = a.ffn or 3 * a.dim
    preset = {"fp": "fp32", "b1.58": "b1.58", "b1": "b1"}[a.mode]
    cfg = {"vocab_size": a.vocab, "dim": a.dim, "n_layers": a.layers, "n_heads": a.heads, "n_kv_heads": a.kv_heads,
           "ffn_dim": ffn, "max_seq_len": a.seq, "rope_theta": 10000.0, "norm_eps": 1e-5, "norm": "rmsnorm",
           "ffn_act": "swiglu", "sub_norm": True, "tie_embeddings": True,
           "attn": lowbit_ref.PRESETS[preset], "ffn": lowbit_ref.PRESETS[preset], "head": ("none", "none"),
           "embedding": "none"}
    g = torch.Generator().manual_seed(1234)
    params = {}
    for name in lowbit_ref.param_names(cfg):
        if name.endswith("norm.weight"):
            width = a.dim if "ffn_sub_norm" not in name else ffn
            params[name] = torch.ones(width)
        else:
            rows, cols = {"attn_q": (a.dim, a.dim), "attn_k": (a.dim // a.heads * a.kv_heads, a.dim),
                          "attn_v": (a.dim // a.heads * a.kv_heads, a.dim), "attn_output": (a.dim, a.dim),
                          "ffn_gate": (ffn, a.dim), "ffn_up": (ffn, a.dim), "ffn_down": (a.dim, ffn)}.get(
                name.split(".")[-2], (a.vocab, a.dim))
            params[name] = 0.02 * torch.randn(rows, cols, generator=g)
    model = lowbit_ref.Model(cfg, params)
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)
    targets = torch.roll(ids.flatten(), -1).view(a.batch, a.seq)

    times, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        _, loss = model(ids, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if s >= a.warmup:
            times.append(dt)
    step = statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    n = sum(p.numel() for p in model.parameters())
    print(f"impl=torch mode={a.mode} layers={a.layers} dim={a.dim} heads={a.heads} kv_heads={a.kv_heads} ffn={ffn} "
          f"seq={a.seq} batch={a.batch} vocab={a.vocab} threads={torch.get_num_threads()} "
          f"torch={torch.__version__} params={n} step_ms={step * 1e3:.3f} tok_s={a.batch * a.seq / step:.1f} "
          f"rss_mb={rss_mb:.1f} loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f}")


if __name__ == "__main__":
    main()
