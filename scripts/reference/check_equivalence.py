"""Compares lowbit's results with the PyTorch reference (lowbit_ref.py).

    check_equivalence.py FILE.h5 [TAG]

FILE.h5 is written by tests/test_torch_equivalence.c: a lowbit checkpoint
(/config/yaml, /model/<name>) plus lowbit's results under /equiv (ids,
targets, logits, loss, grad/<name> at the checkpoint's weights, and
after/<name>: the weights after `steps` AdamW steps on that batch; the AdamW
settings are in /equiv/adamw = [lr, wd, beta1, beta2, eps, steps]).

The reference runs in float64, so its own rounding error is negligible and
what is measured is lowbit's. Tolerances (err = max over elements):

  logits, loss, each gradient   |lowbit − ref| ≤ 1e-4 · max|ref| + tie
  weights after 1 AdamW step   max|lowbit − ref| ≤ 2e-3 · max|update|, over the
                               elements whose gradient exceeds 1e-6 (100·eps)
  after 10 steps, fp32 models  max|lowbit − ref| ≤ 1e-2 · max|update|, over the
                               elements whose gradient RMS (AdamW's v̂^½)
                               exceeded 1e-6 at every step
  after 10 steps, quantized    mean|lowbit − ref| ≤ 5e-2 · mean|update|, per tensor

`tie` is 0 for fp32 models. For quantized models it is, element by element,
how far the reference result moves when every near tie (a rounding input
within 1e-3 of a step of a decision boundary) is decided up instead of
down: such decisions can go either way between two correct fp32
implementations. The number of near ties is printed; everything not
decided by one must match to 1e-4.

AdamW divides each gradient by its own running RMS, so an element whose
gradient is nearly zero moves by up to lr whatever its sign: tiny rounding
differences become visible in the weights: the first step's update is
lr·g/(|g| + eps), so an error δg in a gradient moves it by lr·eps·δg/(|g| + eps)²,
negligible unless |g| is near eps (1e-8). Such elements are left out of
the checks (after 10 steps: those whose gradient RMS was near eps at any
step; one such element, first gradient 6e-8, then 1e-2, is 1.5e-2 of the
largest update off after 10 steps in a -O2 build), and the rest must match
to 2e-3 of the update after one step. How many were left out is printed.

In quantized models, moreover, a weight or activation that crosses a rounding boundary one step earlier in one implementation than in
the other changes every later gradient a little; over 10 steps the
trajectories drift apart. Measured on these models: for b1.58 the reference
in float32 drifts from the one in float64 exactly as lowbit does (max ~1e-3,
mean ~5e-5, against updates of ~1e-2); for b1 lowbit and the float32
reference match after one step and differ by up to 2e-3 (mean 7e-5) after 10.
So after 10 steps quantized models are compared by the mean difference per
tensor.

Exit status: 0 agree, 1 disagree, 77 torch not installed.
"""
import os
import sys

try:
    import torch
except ImportError:
    print("check_equivalence: PyTorch is not installed (Debian: apt-get install python3-torch); skipping")
    sys.exit(77)
import h5py

# The tensors here are tiny: one thread is several times faster than a team
# that spins on a shared machine.
torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lowbit_ref  # noqa: E402

RTOL = 1e-4
ADAM_RTOL_FIRST = 2e-3
ADAM_RTOL = 1e-2
ADAM_SENSITIVE_GRAD = 1e-6
ADAM_QUANT_MEAN_RTOL = 5e-2
TIE_DELTA = 1e-3


def run(model, ids, targets):
    model.zero_grad(set_to_none=True)
    logits, loss = model(ids, targets)
    loss.backward()
    grads = {k.replace("/", "."): p.grad.detach().clone() for k, p in model.p.items()}
    return logits.detach(), loss.detach(), grads


def count_near_ties(model, ids):
    """Near ties met by the reference's quantizers on this batch."""
    counts = [0]
    orig = lowbit_ref._round

    def counting(v, ties, delta):
        f = torch.floor(v)
        counts[0] += int(((v - f - 0.5).abs() < TIE_DELTA).sum())
        return orig(v, ties, delta)

    lowbit_ref._round = counting
    try:
        with torch.no_grad():
            model(ids)
    finally:
        lowbit_ref._round = orig
    return counts[0]


def main():
    path = sys.argv[1]
    tag = sys.argv[2] if len(sys.argv) > 2 else path
    torch.manual_seed(0)
    f = h5py.File(path, "r")
    ids = torch.from_numpy(f["equiv/ids"][()]).long()
    targets = torch.from_numpy(f["equiv/targets"][()]).long()
    lb_logits = torch.from_numpy(f["equiv/logits"][()]).double()
    lb_loss = float(f["equiv/loss"][()][0])
    lr, wd, b1, b2, eps, steps = (float(x) for x in f["equiv/adamw"][()])
    steps = int(steps)

    ref = lowbit_ref.load_checkpoint(path, torch.float64)
    cfg = ref.cfg
    quantized = any(s != "none" for s in (*cfg["attn"], *cfg["ffn"], *cfg["head"], cfg["embedding"]))
    names = lowbit_ref.param_names(cfg)
    logits, loss, grads = run(ref, ids, targets)
    zero = lambda t: torch.zeros_like(t)
    tie_logits, tie_loss, tie_grads = zero(logits), 0.0, {n: zero(g) for n, g in grads.items()}
    n_ties = 0
    if quantized:
        n_ties = count_near_ties(ref, ids)
        up = lowbit_ref.load_checkpoint(path, torch.float64, "up", TIE_DELTA)
        down = lowbit_ref.load_checkpoint(path, torch.float64, "down", TIE_DELTA)
        lu, su, gu = run(up, ids, targets)
        ld, sd, gd = run(down, ids, targets)
        tie_logits = (lu - ld).abs()
        tie_loss = abs(float(su - sd))
        tie_grads = {n: (gu[n] - gd[n]).abs() for n in names}

    failures = []

    def compare(what, lb, rf, tie, rtol):
        scale = float(rf.abs().max())
        diff = (lb - rf).abs()
        allowed = rtol * scale + tie
        bad = int((diff > allowed).sum())
        rel = float(diff.max()) / scale if scale > 0 else float(diff.max())
        if bad:
            failures.append(f"{what}: {bad} elements outside tolerance, max |diff|/max|ref| = {rel:.2e}")
        return rel

    print(f"[{tag}] quant attn={cfg['attn']} ffn={cfg['ffn']}; near ties on this batch: {n_ties}")
    rel_logits = compare("logits", lb_logits, logits, tie_logits, RTOL)
    rel_loss = abs(lb_loss - float(loss)) / abs(float(loss))
    if abs(lb_loss - float(loss)) > RTOL * abs(float(loss)) + tie_loss:
        failures.append(f"loss: lowbit {lb_loss:.7f} vs reference {float(loss):.7f}")
    worst_grad, worst_name = 0.0, ""
    for n in names:
        lb_g = torch.from_numpy(f["equiv/grad/" + n][()]).double()
        r = compare("grad " + n, lb_g, grads[n], tie_grads[n], RTOL)
        if r > worst_grad:
            worst_grad, worst_name = r, n
    print(f"[{tag}] loss {float(loss):.6f} (lowbit {lb_loss:.6f}, rel {rel_loss:.1e}); "
          f"logits rel {rel_logits:.1e}; worst gradient rel {worst_grad:.1e} ({worst_name})")

    # AdamW on the same batch, as lowbit did: after the first step every weight
    # must match closely; after `steps` steps as stated in the module comment.
    start = {n: ref.w(n).detach().clone() for n in names}
    opt = torch.optim.AdamW(ref.param_groups(wd), lr=lr, betas=(b1, b2), eps=eps)
    worst = {1: (0.0, ""), steps: (0.0, "")}
    n_sensitive = {1: 0, steps: 0}
    # The smallest RMS of its gradients (AdamW's denominator without eps) each
    # element has had so far: once it was near eps, that step's update carried
    # the gradient's rounding error amplified, and every later weight with it.
    rms_min = {n: torch.full_like(start[n], float("inf")) for n in names}
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        _, l = ref(ids, targets)
        l.backward()
        opt.step()
        for n in names:
            v_hat = opt.state[ref.w(n)]["exp_avg_sq"] / (1 - b2**step)
            rms_min[n] = torch.minimum(rms_min[n], v_hat.sqrt())
        if step not in worst:
            continue
        group = "equiv/after1/" if step == 1 else "equiv/after/"
        for n in names:
            after = ref.w(n).detach()
            lb_after = torch.from_numpy(f[group + n][()]).double()
            update = (after - start[n]).abs()
            diff = (lb_after - after).abs()
            # Elements whose update was once divided by a gradient RMS near
            # eps amplify rounding error, see above: left out, and counted.
            # (A gradient of exactly 0 moves nothing: those stay in.)
            sensitive = (rms_min[n] > 0) & (rms_min[n] <= ADAM_SENSITIVE_GRAD)
            n_sensitive[step] += int(sensitive.sum())
            diff = torch.where(sensitive, torch.zeros_like(diff), diff)
            if step == 1 or not quantized:
                tol = ADAM_RTOL_FIRST if step == 1 else ADAM_RTOL
                r = float(diff.max()) / max(float(update.max()), 1e-30)
                if r > tol:
                    failures.append(f"after {step} AdamW steps {n}: max|diff| = {r:.1e} of the largest update "
                                    f"(allowed {tol:g})")
            else:
                r = float(diff.mean()) / max(float(update.mean()), 1e-30)
                if r > ADAM_QUANT_MEAN_RTOL:
                    failures.append(f"after {step} AdamW steps {n}: mean|diff| = {r:.1e} of the mean update "
                                    f"(allowed {ADAM_QUANT_MEAN_RTOL:g})")
            if r > worst[step][0]:
                worst[step] = (r, n)
    what = "mean|diff| / mean|update|" if quantized else "max|diff| / max|update|"
    print(f"[{tag}] AdamW: after 1 step max|diff| / max|update| = {worst[1][0]:.1e} ({worst[1][1]}); "
          f"after {steps} steps {what} = {worst[steps][0]:.1e} ({worst[steps][1]}); "
          f"elements left out as near eps: {n_sensitive[1]} / {n_sensitive[steps]}")
    for msg in failures:
        print(f"[{tag}] FAIL {msg}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
