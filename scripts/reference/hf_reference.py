"""Hugging Face Llama / BitNet reference for lowbit's import and export.

    hf_reference.py make DIR [options]    a random model directory, as transformers saves one
    hf_reference.py make-list FILE        the same for every "DIR option..." line of FILE
    hf_reference.py check DIR...          lowbit's logits (DIR/lowbit_logits.bin) against the reference

`make` writes config.json (transformers 4.x or 5.x dialect), model.safetensors
or shards with model.safetensors.index.json (F32, F16 or BF16; BitNet packed
projections as uint8 codes with a weight_scale), and a byte-level BPE
tokenizer.json. The safetensors files are written here by hand from the
format's description, independently of lowbit's writer.

`check` reads the directory with its own safetensors reader and computes the
forward pass of transformers' LlamaForCausalLM / BitNetForCausalLM from the
semantics of modeling_llama.py and modeling_bitnet.py (transformers is not
installed here; nothing is imported from lowbit):

  LlamaRMSNorm       x·rsqrt(mean(x²) + eps) in float32, then weight · x
  rotary embedding   inv_freq = 1 / theta^(arange(0, d, 2)/d), emb = cat(freqs, freqs),
                     q·cos + rotate_half(q)·sin with rotate_half(x) = cat(−x2, x1)
  attention          repeat_kv (kv head h // n_rep serves query head h), scores · d^−½,
                     causal mask, softmax in float32
  MLP                down(act(gate(x)) · up(x)); act silu (Llama) or relu² (BitNet)
  BitNet             attn_sub_norm before o_proj, ffn_sub_norm before down_proj;
                     projections (never lm_head) by integrations/bitnet.py:
                     online     WeightQuant (1/mean|W| absmean ternary) and ActQuant
                     packed     unpack_weights, ActQuant, product · weight_scale (AutoBitLinear)
                     packed_inv int8 input, product / (weight_scale · input_scale) (BitLinear)
  ActQuant           s = 127 / max(max|x|, 1e-5) per token, round(x·s) clamped to [−128, 127], / s

The reference runs in float64 on the stored values. Where it rounds (the
BitNet quantizers), an input within 1e-3 of a rounding tie can be decided
either way by two correct float32 implementations: the check runs the
reference with every such near tie rounded up and rounded down, and allows
lowbit's logits of a token to differ by that much more (the largest move among
the token's logits: one flipped decision moves them all). Tolerance:
|lowbit − ref| ≤ 1e-4 · max|ref| + tie, element by element.

lowbit_logits.bin: int32 B, T, V, then int32 ids [B·T], then float32 logits [B·T·V].
Exit status: 0 agree, 1 disagree or bad input, 77 torch not installed.
"""
import json
import math
import os
import struct
import sys

try:
    import torch
except ImportError:
    print("hf_reference: PyTorch is not installed (Debian: apt-get install python3-torch); skipping")
    sys.exit(77)

torch.set_num_threads(1)

RTOL = 1e-4
TIE_DELTA = 1e-3

# ---- safetensors, from the format's description --------------------------------------------

ST_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
             "U8": (torch.uint8, 1)}
TORCH_NAMES = {"f32": ("float32", "F32"), "f16": ("float16", "F16"), "bf16": ("bfloat16", "BF16")}


def tensor_bytes(t, dtype):
    t = t.contiguous()
    if dtype == "U8":
        return bytes(t.to(torch.uint8).flatten().tolist())
    if dtype == "F32":
        return struct.pack("<%df" % t.numel(), *t.to(torch.float32).flatten().tolist())
    # 16-bit floats: their bit patterns through an int16 view
    bits = t.to(ST_DTYPES[dtype][0]).view(torch.int16).flatten().tolist()
    return struct.pack("<%dh" % len(bits), *bits)


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, torch tensor)."""
    header, blobs, pos = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, t in tensors:
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "U8":
            t = torch.tensor(list(raw), dtype=torch.uint8)
        elif dt == "F32":
            t = torch.tensor(struct.unpack("<%df" % (len(raw) // 4), raw), dtype=torch.float32)
        elif dt in ("F16", "BF16"):
            bits = torch.tensor(struct.unpack("<%dh" % (len(raw) // 2), raw), dtype=torch.int16)
            t = bits.view(ST_DTYPES[dt][0])
        else:
            raise ValueError(f"{path}: dtype {dt} of {name} not handled by the reference")
        out[name] = (dt, t.reshape(shape))
    return out


def read_model_tensors(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        out.update(read_safetensors(os.path.join(d, fn)))
    return out

# ---- integrations/bitnet.py's packing ------------------------------------------------------


def pack_ternary(w):
    """w: [out, in] in {-1, 0, 1} → uint8 [out/4, in]; row r goes to packed row r % (out/4), bits 2·(r // (out/4))."""
    out = w.shape[0]
    rows = out // 4
    codes = (w + 1).to(torch.int64)
    packed = torch.zeros(rows, w.shape[1], dtype=torch.int64)
    for i in range(4):
        packed |= codes[i * rows:(i + 1) * rows] << (2 * i)
    return packed.to(torch.uint8)


def unpack_ternary(p):
    p = p.to(torch.int64)
    return torch.cat([((p >> (2 * i)) & 3) - 1 for i in range(4)], 0).double()

# ---- make ----------------------------------------------------------------------------------


def byte_level_tokenizer():
    """A byte-level BPE tokenizer.json: the 256 byte characters (GPT-2's bytes_to_unicode) and a few merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_char[b]: b for b in range(256)}
    merges = []
    for a, b in [("t", "h"), ("h", "e"), ("Ġ", "t"), ("e", "r"), ("th", "e"), ("Ġt", "he"), ("i", "n")]:
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": merges}}


def make(d, args):
    o = {"arch": "llama", "vocab": 300, "dim": 64, "layers": 2, "heads": 4, "kv": 2, "ffn": 96, "tied": 0,
         "dialect": 4, "shards": 1, "dtype": "f32", "quant": "none", "seed": 1, "max_pos": 64, "std": 0.15}
    for a in args:
        k, v = a.lstrip("-").split("=", 1)
        o[k] = v if k in ("arch", "dtype", "quant") else float(v) if k == "std" else int(v)
    g = torch.Generator().manual_seed(o["seed"])
    bitnet = o["arch"] == "bitnet"
    V, D, L, H, Hkv, F = o["vocab"], o["dim"], o["layers"], o["heads"], o["kv"], o["ffn"]
    Dh = D // H
    torch_name, st_dtype = TORCH_NAMES[o["dtype"]]
    theta = 10000.0 if not bitnet else 500000.0

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * o["std"]

    def gain(n):
        return 1.0 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)

    tensors = [("model.embed_tokens.weight", st_dtype, randn(V, D))]

    def proj(name, out, inp):
        if o["quant"] in ("packed", "packed_inv"):
            w = torch.randint(-1, 2, (out, inp), generator=g).double()
            scale = torch.tensor([0.05 + 0.1 * float(torch.rand(1, generator=g))], dtype=torch.float64)
            tensors.append((name + ".weight", "U8", pack_ternary(w)))
            tensors.append((name + ".weight_scale", st_dtype, scale))
        else:
            tensors.append((name + ".weight", st_dtype, randn(out, inp)))

    for i in range(L):
        p = f"model.layers.{i}."
        tensors.append((p + "input_layernorm.weight", st_dtype, gain(D)))
        proj(p + "self_attn.q_proj", H * Dh, D)
        proj(p + "self_attn.k_proj", Hkv * Dh, D)
        proj(p + "self_attn.v_proj", Hkv * Dh, D)
        if bitnet:
            tensors.append((p + "self_attn.attn_sub_norm.weight", st_dtype, gain(D)))
        proj(p + "self_attn.o_proj", D, H * Dh)
        tensors.append((p + "post_attention_layernorm.weight", st_dtype, gain(D)))
        proj(p + "mlp.gate_proj", F, D)
        proj(p + "mlp.up_proj", F, D)
        if bitnet:
            tensors.append((p + "mlp.ffn_sub_norm.weight", st_dtype, gain(F)))
        proj(p + "mlp.down_proj", D, F)
    tensors.append(("model.norm.weight", st_dtype, gain(D)))
    if not o["tied"]:
        tensors.append(("lm_head.weight", st_dtype, randn(V, D)))

    cfg = {"architectures": ["BitNetForCausalLM" if bitnet else "LlamaForCausalLM"],
           "model_type": "bitnet" if bitnet else "llama", "vocab_size": V, "hidden_size": D,
           "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": Hkv,
           "hidden_act": "relu2" if bitnet else "silu", "max_position_embeddings": o["max_pos"],
           "rms_norm_eps": 1e-5 if bitnet else 1e-6, "tie_word_embeddings": bool(o["tied"]),
           "attention_bias": False, "initializer_range": 0.02, "use_cache": True, "bos_token_id": 1,
           "eos_token_id": 2}
    if not bitnet:
        cfg["mlp_bias"] = False
    if o["dialect"] == 4:
        cfg.update({"rope_theta": theta, "rope_scaling": None, "torch_dtype": torch_name,
                    "transformers_version": "4.51.0"})
    else:
        cfg.update({"rope_parameters": {"rope_type": "default", "rope_theta": theta}, "dtype": torch_name,
                    "transformers_version": "5.0.0"})
    if o["quant"] != "none":
        cfg["quantization_config"] = {
            "online": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"},
            "packed": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"},
            "packed_inv": {"quant_method": "bitnet", "linear_class": "bitlinear"}}[o["quant"]]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(byte_level_tokenizer(), f, ensure_ascii=False)
    n = o["shards"]
    if n == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return 0
    per = (len(tensors) + n - 1) // n
    weight_map, total = {}, 0
    for s in range(n):
        fn = f"model-{s + 1:05d}-of-{n:05d}.safetensors"
        part = tensors[s * per:(s + 1) * per]
        write_safetensors(os.path.join(d, fn), part)
        for name, dt, t in part:
            weight_map[name] = fn
            total += t.numel() * (1 if dt == "U8" else 4 if dt == "F32" else 2)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return 0

# ---- the reference forward -----------------------------------------------------------------


def rounder(ties):
    def rnd(v):
        r = torch.round(v)  # half to even, as torch.round in transformers
        if ties is None:
            return r
        f = torch.floor(v)
        near = (v - f - 0.5).abs() < TIE_DELTA
        return torch.where(near, f + 1 if ties == "up" else f, r)
    return rnd


class Reference:
    def __init__(self, d, ties=None):
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        self.c = c
        self.bitnet = c["architectures"][0] == "BitNetForCausalLM"
        self.W = {k: t for k, t in read_model_tensors(d).items()}
        rp = c.get("rope_parameters") or {}
        self.theta = float(c.get("rope_theta", rp.get("rope_theta", 500000.0 if self.bitnet else 10000.0)))
        q = c.get("quantization_config")
        if q is None:
            self.quant = "none"
        elif q.get("linear_class", "bitlinear") == "bitlinear":
            self.quant = "packed_inv"
        else:
            self.quant = "online" if q.get("quantization_mode", "offline") == "online" else "packed"
        self.rnd = rounder(ties)

    def w(self, name):
        return self.W[name][1].double()

    def norm(self, x, name):
        eps = float(self.c.get("rms_norm_eps", 1e-5 if self.bitnet else 1e-6))
        var = x.pow(2).mean(-1, keepdim=True)
        return self.w(name) * (x * torch.rsqrt(var + eps))

    def act_quant(self, x):
        s = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
        return self.rnd(x * s).clamp(-128, 127), s

    def linear(self, x, module):
        if self.quant == "none":
            return x @ self.w(module + ".weight").t()
        if self.quant == "online":
            W = self.w(module + ".weight")
            ws = 1.0 / W.abs().mean().clamp(min=1e-5)
            Wq = self.rnd(W * ws).clamp(-1, 1) / ws
            xq, s = self.act_quant(x)
            return (xq / s) @ Wq.t()
        T = unpack_ternary(self.W[module + ".weight"][1])
        scale = float(self.w(module + ".weight_scale").reshape(-1)[0])
        xq, s = self.act_quant(x)
        if self.quant == "packed":
            return ((xq / s) @ T.t()) * scale
        return (xq @ T.t()) / (scale * s)

    def forward(self, ids):
        c = self.c
        D, H, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
        Hkv = c.get("num_key_value_heads") or H
        Dh = D // H
        B, T = ids.shape
        x = self.w("model.embed_tokens.weight")[ids]
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, Dh, 2, dtype=torch.float64) / Dh))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos(), emb.sin()

        def rotate_half(v):
            return torch.cat([-v[..., Dh // 2:], v[..., :Dh // 2]], -1)

        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        for i in range(L):
            p = f"model.layers.{i}."
            h = self.norm(x, p + "input_layernorm.weight")
            q = self.linear(h, p + "self_attn.q_proj").view(B, T, H, Dh).transpose(1, 2)
            k = self.linear(h, p + "self_attn.k_proj").view(B, T, Hkv, Dh).transpose(1, 2)
            v = self.linear(h, p + "self_attn.v_proj").view(B, T, Hkv, Dh).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = H // Hkv
            k = k[:, :, None].expand(B, Hkv, rep, T, Dh).reshape(B, H, T, Dh)  # repeat_kv
            v = v[:, :, None].expand(B, Hkv, rep, T, Dh).reshape(B, H, T, Dh)
            att = torch.softmax(q @ k.transpose(2, 3) * Dh ** -0.5 + mask, -1)
            o = (att @ v).transpose(1, 2).reshape(B, T, D)
            if self.bitnet:
                o = self.norm(o, p + "self_attn.attn_sub_norm.weight")
            x = x + self.linear(o, p + "self_attn.o_proj")
            h = self.norm(x, p + "post_attention_layernorm.weight")
            gate = self.linear(h, p + "mlp.gate_proj")
            gate = torch.relu(gate) ** 2 if c.get("hidden_act", "silu") == "relu2" else torch.nn.functional.silu(gate)
            m = gate * self.linear(h, p + "mlp.up_proj")
            if self.bitnet:
                m = self.norm(m, p + "mlp.ffn_sub_norm.weight")
            x = x + self.linear(m, p + "mlp.down_proj")
        x = self.norm(x, "model.norm.weight")
        head = self.w("model.embed_tokens.weight") if c.get("tie_word_embeddings") else self.w("lm_head.weight")
        return x @ head.t()  # lm_head is never quantized


def check(d):
    with open(os.path.join(d, "lowbit_logits.bin"), "rb") as f:
        data = f.read()
    B, T, V = struct.unpack("<3i", data[:12])
    ids = torch.tensor(struct.unpack("<%di" % (B * T), data[12:12 + 4 * B * T]), dtype=torch.long).reshape(B, T)
    off = 12 + 4 * B * T
    lb = torch.tensor(struct.unpack("<%df" % (B * T * V), data[off:off + 4 * B * T * V]),
                      dtype=torch.float64).reshape(B, T, V)
    ref = Reference(d)
    with torch.no_grad():
        logits = ref.forward(ids)
        tie = torch.zeros_like(logits)
        if ref.quant != "none":
            # A decision that flips moves every logit of its token (and of later ones): the
            # allowance of a token is the largest move among its logits.
            tie = (Reference(d, "up").forward(ids) - Reference(d, "down").forward(ids)).abs()
            tie = tie.amax(-1, keepdim=True).expand_as(tie)
    if logits.shape[-1] != V:
        print(f"hf_reference: lowbit gave {V} logits per token, the reference {logits.shape[-1]}")
        return 1
    scale = float(logits.abs().max())
    diff = (lb - logits).abs()
    bad = int((diff > RTOL * scale + tie).sum())
    rel = float(diff.max()) / scale
    print(f"hf_reference {os.path.basename(d.rstrip('/'))}: quant {ref.quant}, max |lowbit - ref| / max |ref| = "
          f"{rel:.2e}, elements beyond 1e-4 + near-tie allowance: {bad}, near-tie allowance max {float(tie.max()):.2e}")
    return 1 if bad else 0


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("make", "make-list", "check"):
        print(__doc__)
        return 1
    if sys.argv[1] == "make":
        return make(sys.argv[2], sys.argv[3:])
    if sys.argv[1] == "make-list":  # one "DIR option..." per line: many models, one start of Python
        with open(sys.argv[2]) as f:
            return max([make(line.split()[0], line.split()[1:]) for line in f if line.strip()] + [0])
    return max(check(d) for d in sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
