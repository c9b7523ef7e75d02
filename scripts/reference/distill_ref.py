#!/usr/bin/env python3
"""PyTorch reference for lb_kl_div (src/autograd/ops_loss.c).

Usage: distill_ref.py FILE.h5

FILE.h5 is written by tests/test_distill.c: either relation/ (lb_relation_kl: x,
teacher, heads, loss, grad; checked against masked softmaxes of x·xᵀ per head), or kl/student [rows, V],
kl/teacher [rows, V], kl/temperature [1], and lowbit's kl/loss [1] and
kl/grad [rows, V] (the gradient of 2.5 · loss with respect to the student's
logits). The reference is torch.nn.functional.kl_div in float64 with the
teacher's log-probabilities as target, reduction 'batchmean', times T²:
    T² · Σ_rows Σ_c p_t (log p_t − log p_s) / rows.

Exit status: 0 agree, 1 disagree, 77 torch not installed."""
import sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError:
    print("distill_ref: PyTorch or h5py is not installed (Debian: apt-get install python3-torch python3-h5py)")
    sys.exit(77)

UPSTREAM = 2.5  # the test scales the loss by this before the backward pass


def relation_logp(x, heads):
    """Causal relation log-probabilities [B, heads, T, T] of x [B, T, D] (masked entries −inf)."""
    B, T, D = x.shape
    h = x.reshape(B, T, heads, D // heads).transpose(1, 2)
    s = h @ h.transpose(-1, -2) / (D // heads) ** 0.5
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return F.log_softmax(s.masked_fill(~mask, float("-inf")), dim=-1), mask


def check_relation(f):
    """lb_relation_kl: mean over (b, head, i) of KL(p_t ‖ p_s) over j ≤ i."""
    x = torch.tensor(f["relation/x"][()], dtype=torch.float64, requires_grad=True)
    t = torch.tensor(f["relation/teacher"][()], dtype=torch.float64)
    heads = int(f["relation/heads"][()][0])
    lb_loss = float(f["relation/loss"][()][0])
    lb_grad = torch.tensor(f["relation/grad"][()], dtype=torch.float64)
    ls, mask = relation_logp(x, heads)
    lt, _ = relation_logp(t, heads)
    kl = torch.where(mask, lt.exp() * (lt - ls), torch.zeros_like(ls)).sum(-1)
    ref = kl.mean()
    (UPSTREAM * ref).backward()
    err = (x.grad - lb_grad).abs().max().item()
    scale = x.grad.abs().max().item()
    ok = abs(ref.item() - lb_loss) <= 1e-5 * max(1.0, abs(ref.item())) and err <= 1e-5 * max(scale, 1e-3)
    print(f"distill_ref: relation loss {lb_loss:.8f} (PyTorch {ref.item():.8f}), gradient max diff {err:.3g}")
    return 0 if ok else 1


def main():
    with h5py.File(sys.argv[1], "r") as f:
        if "relation" in f:
            return check_relation(f)
        s = torch.tensor(f["kl/student"][()], dtype=torch.float64, requires_grad=True)
        t = torch.tensor(f["kl/teacher"][()], dtype=torch.float64)
        temp = float(f["kl/temperature"][()][0])
        lb_loss = float(f["kl/loss"][()][0])
        lb_grad = torch.tensor(f["kl/grad"][()], dtype=torch.float64)
    ref = F.kl_div(F.log_softmax(s / temp, dim=-1), F.log_softmax(t / temp, dim=-1), reduction="batchmean",
                   log_target=True) * temp * temp
    (UPSTREAM * ref).backward()
    ok = True
    if abs(ref.item() - lb_loss) > 1e-5 * max(1.0, abs(ref.item())):
        print(f"distill_ref: loss {lb_loss!r}, PyTorch {ref.item()!r}")
        ok = False
    err = (s.grad - lb_grad).abs().max().item()
    scale = s.grad.abs().max().item()
    if err > 1e-5 * max(scale, 1e-3):
        print(f"distill_ref: gradient differs by {err:.3g} (largest {scale:.3g})")
        ok = False
    print(f"distill_ref: T={temp} loss {lb_loss:.8f} (PyTorch {ref.item():.8f}), gradient max diff {err:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
