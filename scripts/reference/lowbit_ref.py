"""A PyTorch reference of lowbit's model (docs/model.md), for checking the math.

The same graph as src/layers/model.c, written plainly in PyTorch:

    x = token_embd[ids]
    per block: h = norm(x); q, k, v = BitLinear(h); RoPE(q, k) (rotate-half);
               causal attention with grouped KV heads; [SubLN]; x += BitLinear_o(a)
               h = norm(x); f = silu(gate)·up or relu(gate)²·up; [SubLN]; x += BitLinear_down(f)
    logits = Linear_head(norm(x))   (head = token_embd when tied)

BitLinear fake-quantizes its weight and its input with the straight-through
estimator written as in the BitNet papers, v + (Q(v) − v).detach():

    ternary (b1.58)   γ = max(mean|W|, 1e-5), Q(W) = clamp(round(W/γ), −1, 1)·γ
    binary (b1)       α = mean W, β = mean|W|, Q(W) = β·sign(W − α), sign(0) = −1
    int8:per_token    s = 127 / max(max|x|, 1e-5) per row, Q(x) = clamp(round(x·s), −128, 127) / s
    int8:per_token:b1 s = 128 / max(max|x|, 1e-5) per row, Q(x) = clamp(round(x·s), −127, 127) / s

round() is half-to-even (torch.round), as in lowbit.

`load_checkpoint(path)` reads a lowbit HDF5 checkpoint (docs/checkpoint.md:
/config/yaml holds the YAML config, /model/<GGUF name> the fp32 parameters).

Near ties: a rounding whose input lies within `tie_delta` (in units of the
quantization step) of a decision boundary can go either way between two
correct fp32 implementations that sum in different orders. `Model(...,
ties="up" | "down")` decides every such near tie one way, so running the
model both ways brackets how much of a result depends on them
(scripts/reference/check_equivalence.py uses this).
"""
import math

import h5py
import torch
import torch.nn.functional as F
import yaml

PRESETS = {
    "fp32": ("none", "none"),
    "b1": ("binary", "int8:per_token:b1"),
    "b1.58": ("ternary", "int8:per_token"),
}
SUPPORTED_SPECS = {"none", "binary", "ternary", "int8:per_token", "int8:per_token:b1"}


# --- quantizers -------------------------------------------------------------------------

def _round(v, ties, delta):
    """Half-to-even rounding; with ties = "up"/"down", values within delta of a
    .5 boundary are pushed to that side."""
    r = torch.round(v)
    if ties is None:
        return r
    f = torch.floor(v)
    near = (v - f - 0.5).abs() < delta
    return torch.where(near, f + (1.0 if ties == "up" else 0.0), r)


def quantize(v, spec, ties=None, delta=1e-3):
    """Q(v) of a quant spec, in v's dtype (no gradient)."""
    v = v.detach()
    if spec == "none":
        return v
    if spec == "ternary":
        # mean|W| summed in double, then float, as lowbit does
        gamma = torch.clamp(v.abs().double().mean().to(v.dtype), min=1e-5)
        s = 1.0 / gamma
        d = 1.0 / s
        return torch.clamp(_round(v * s, ties, delta), -1, 1) * d
    if spec == "binary":
        alpha = v.double().mean().to(v.dtype)
        beta = v.abs().double().mean().to(v.dtype)
        up = v > alpha
        if ties is not None:
            near = (v - alpha).abs() < delta * beta
            up = torch.where(near, torch.full_like(up, ties == "up"), up)
        return torch.where(up, beta, -beta)
    if spec in ("int8:per_token", "int8:per_token:b1"):
        b1 = spec.endswith(":b1")
        amax = v.abs().amax(dim=-1, keepdim=True)
        s = (128.0 if b1 else 127.0) / torch.clamp(amax, min=1e-5)
        d = 1.0 / s
        lo = -127.0 if b1 else -128.0
        return torch.clamp(_round(v * s, ties, delta), lo, 127.0) * d
    raise NotImplementedError(f"quant spec '{spec}' is not in the reference (supported: {sorted(SUPPORTED_SPECS)})")


def fake_quant(v, spec, lam=1.0, ties=None, delta=1e-3):
    """v + λ·(Q(v) − v).detach(): the identity STE with gradual quantization."""
    if spec == "none" or lam == 0.0:
        return v
    return v + lam * (quantize(v, spec, ties, delta) - v.detach()).detach()


# --- the model ----------------------------------------------------------------------------

def param_names(cfg):
    names = ["token_embd.weight"]
    for l in range(cfg["n_layers"]):
        b = f"blk.{l}."
        names += [b + "attn_norm.weight", b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"]
        if cfg["sub_norm"]:
            names.append(b + "attn_sub_norm.weight")
        names += [b + "attn_output.weight", b + "ffn_norm.weight", b + "ffn_gate.weight", b + "ffn_up.weight"]
        if cfg["sub_norm"]:
            names.append(b + "ffn_sub_norm.weight")
        names.append(b + "ffn_down.weight")
    names.append("output_norm.weight")
    if not cfg["tie_embeddings"]:
        names.append("output.weight")
    return names


def model_config_from_yaml(text):
    """The model section of a lowbit config (YAML text) with lowbit's defaults."""
    m = (yaml.safe_load(text) or {}).get("model", {}) or {}
    cfg = {
        "vocab_size": m.get("vocab_size", 0), "dim": m.get("dim", 256), "n_layers": m.get("n_layers", 4),
        "n_heads": m.get("n_heads", 4), "ffn_dim": m.get("ffn_dim", 768), "max_seq_len": m.get("max_seq_len", 128),
        "rope_theta": float(m.get("rope_theta", 10000.0)), "norm_eps": float(m.get("norm_eps", 1e-5)),
        "norm": m.get("norm", "rmsnorm"), "ffn_act": m.get("ffn_act", "swiglu"),
        "sub_norm": bool(m.get("sub_norm", True)), "tie_embeddings": bool(m.get("tie_embeddings", True)),
    }
    cfg["n_kv_heads"] = m.get("n_kv_heads", cfg["n_heads"])
    q = m.get("quant", {}) or {}
    preset = str(q.get("preset", "b1.58"))
    if preset not in PRESETS:
        raise NotImplementedError(f"model.quant.preset '{preset}' (expected one of {list(PRESETS)})")
    for kind in ("attn", "ffn"):
        w, a = PRESETS[preset]
        over = q.get(kind, {}) or {}
        cfg[kind] = (str(over.get("weight", w)), str(over.get("activation", a)))
    head = q.get("head", {}) or {}
    cfg["head"] = (str(head.get("weight", "none")), str(head.get("activation", "none")))
    cfg["embedding"] = str(q.get("embedding", "none"))
    for spec in (*cfg["attn"], *cfg["ffn"], *cfg["head"], cfg["embedding"]):
        if spec not in SUPPORTED_SPECS:
            raise NotImplementedError(f"quant spec '{spec}' is not in the reference")
    return cfg


class Model(torch.nn.Module):
    """lowbit's transformer. Parameters are kept by their GGUF names in
    self.p (a ParameterDict with '.' replaced by '/')."""

    def __init__(self, cfg, params, dtype=torch.float32, ties=None, tie_delta=1e-3):
        super().__init__()
        self.cfg, self.ties, self.tie_delta = cfg, ties, tie_delta
        self.p = torch.nn.ParameterDict()
        for name in param_names(cfg):
            self.p[name.replace(".", "/")] = torch.nn.Parameter(torch.as_tensor(params[name]).to(dtype).clone())
        self.quant_lambda = 1.0

    def w(self, name):
        return self.p[name.replace(".", "/")]

    def norm(self, x, name):
        eps = self.cfg["norm_eps"]
        if self.cfg["norm"] == "layernorm":
            mu = x.mean(-1, keepdim=True)
            xc = x - mu
            return xc * torch.rsqrt((xc * xc).mean(-1, keepdim=True) + eps) * self.w(name)
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * self.w(name)

    def linear(self, x, name, kind):
        wspec, aspec = self.cfg[kind]
        fq = lambda v, s: fake_quant(v, s, self.quant_lambda, self.ties, self.tie_delta)
        return fq(x, aspec) @ fq(self.w(name), wspec).t()

    def rope(self, x):  # x [B, T, H, Dh]
        T, Dh = x.shape[1], x.shape[3]
        half = Dh // 2
        j = torch.arange(half, dtype=torch.float64)
        inv_freq = self.cfg["rope_theta"] ** (-2.0 * j / Dh)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        # the table in float, as lowbit stores it
        c = torch.cos(ang).float().to(x.dtype)[None, :, None, :]
        s = torch.sin(ang).float().to(x.dtype)[None, :, None, :]
        x0, x1 = x[..., :half], x[..., half:]
        return torch.cat([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1)

    def attention(self, q, k, v):  # q [B,T,H,Dh], k, v [B,T,Hkv,Dh]
        B, T, H, Dh = q.shape
        group = H // k.shape[2]
        k = k.repeat_interleave(group, dim=2)  # query head h reads KV head h // group
        v = v.repeat_interleave(group, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, Dh]
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(Dh))
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        o = torch.softmax(scores, dim=-1) @ v
        return o.transpose(1, 2).reshape(B, T, H * Dh)

    def forward(self, ids, targets=None):
        cfg = self.cfg
        B, T = ids.shape
        H, Hkv = cfg["n_heads"], cfg["n_kv_heads"]
        Dh = cfg["dim"] // H
        table = fake_quant(self.w("token_embd.weight"), cfg["embedding"], self.quant_lambda, self.ties,
                           self.tie_delta)
        x = table[ids]
        for l in range(cfg["n_layers"]):
            b = f"blk.{l}."
            h = self.norm(x, b + "attn_norm.weight")
            q = self.linear(h, b + "attn_q.weight", "attn").view(B, T, H, Dh)
            k = self.linear(h, b + "attn_k.weight", "attn").view(B, T, Hkv, Dh)
            v = self.linear(h, b + "attn_v.weight", "attn").view(B, T, Hkv, Dh)
            a = self.attention(self.rope(q), self.rope(k), v)
            if cfg["sub_norm"]:
                a = self.norm(a, b + "attn_sub_norm.weight")
            x = x + self.linear(a, b + "attn_output.weight", "attn")
            h = self.norm(x, b + "ffn_norm.weight")
            gate = self.linear(h, b + "ffn_gate.weight", "ffn")
            up = self.linear(h, b + "ffn_up.weight", "ffn")
            f = (F.relu(gate) ** 2 if cfg["ffn_act"] == "relu2" else F.silu(gate)) * up
            if cfg["sub_norm"]:
                f = self.norm(f, b + "ffn_sub_norm.weight")
            x = x + self.linear(f, b + "ffn_down.weight", "ffn")
        x = self.norm(x, "output_norm.weight")
        head = "token_embd.weight" if cfg["tie_embeddings"] else "output.weight"
        logits = self.linear(x, head, "head")
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def param_groups(self, weight_decay):
        """lowbit's AdamW groups: projections decay, norms and embeddings do not."""
        decay, no_decay = [], []
        for key, p in self.p.items():
            name = key.replace("/", ".")
            is_linear = name != "token_embd.weight" and not name.endswith("norm.weight")
            (decay if is_linear else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def load_checkpoint(path, dtype=torch.float32, ties=None, tie_delta=1e-3):
    """Model(...) from a lowbit HDF5 checkpoint."""
    with h5py.File(path, "r") as f:
        text = f["config/yaml"].asstr()[()]
        cfg = model_config_from_yaml(text)
        params = {name: torch.from_numpy(f["model/" + name][()]) for name in param_names(cfg)}
    if not cfg["vocab_size"]:
        cfg["vocab_size"] = params["token_embd.weight"].shape[0]
    return Model(cfg, params, dtype, ties, tie_delta)
