#!/usr/bin/env python3
"""An independent safetensors reader and writer, written from the format's
description (huggingface/safetensors: README and safetensors/src/tensor.rs) and not
from lowbit's code, for lowbit's interoperability tests.

  safetensors_ref.py dump FILE_OR_INDEX   print the tensors as canonical JSON (below),
                                          checking the file strictly
  safetensors_ref.py rewrite IN OUT       read IN, write its tensors and metadata to OUT
                                          the way the upstream writer lays a file out
  safetensors_ref.py write FILE           write a sample file of its own; print its JSON
  safetensors_ref.py write-sharded DIR    write a sample model in two shards with
                                          model.safetensors.index.json; print its JSON

Canonical JSON: {"metadata": {k: v}, "tensors": [{"name", "dtype", "shape": [...],
"hex": data bytes, "f32": [float32 bits as decimal strings] (dtypes decoded here)}]},
tensors in file order (files in name order, then by data offset).
"""
import json
import os
import struct
import sys

import numpy as np

# The upstream Dtype enum in its order, with bits per element.
DTYPES = [("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8), ("F8_E5M2", 8),
          ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8), ("F8_E5M2FNUZ", 8), ("I16", 16), ("U16", 16),
          ("F16", 16), ("BF16", 16), ("I32", 32), ("U32", 32), ("F32", 32), ("C64", 64), ("F64", 64),
          ("I64", 64), ("U64", 64)]
RANK = {name: i for i, (name, _) in enumerate(DTYPES)}
BITS = dict(DTYPES)
NUMPY = {"BOOL": np.uint8, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "F16": np.float16,
         "I32": np.int32, "U32": np.uint32, "F32": np.float32, "F64": np.float64, "I64": np.int64, "U64": np.uint64}


def fp8_table(ebits, mbits, bias, e4m3):
    """float32 value of each of the 256 codes of an OCP fp8 format."""
    out = np.zeros(256, dtype=np.float32)
    for c in range(256):
        s, e, m = c >> 7, (c >> mbits) & ((1 << ebits) - 1), c & ((1 << mbits) - 1)
        if e4m3 and e == 15 and m == 7:
            v = np.nan
        elif not e4m3 and e == 31:
            v = np.inf if m == 0 else np.nan
        elif e == 0:
            v = m * 2.0 ** (1 - bias - mbits)
        else:
            v = (1 + m / 2 ** mbits) * 2.0 ** (e - bias)
        out[c] = -v if s else v
    return out


def decode(dtype, raw):
    b = np.frombuffer(raw, dtype=np.uint8)
    if dtype == "BF16":
        return (b.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E4M3":
        return fp8_table(4, 3, 7, True)[b]
    if dtype == "F8_E5M2":
        return fp8_table(5, 2, 15, False)[b]
    if dtype == "BOOL":
        return (b != 0).astype(np.float32)
    if dtype in NUMPY:
        return b.view(NUMPY[dtype]).astype(np.float32)
    return None


def read_file(path):
    data = open(path, "rb").read()
    if len(data) < 8:
        raise ValueError("header too small")
    (n,) = struct.unpack("<Q", data[:8])
    if n > 100_000_000 or 8 + n > len(data):
        raise ValueError("bad header length")
    text = data[8:8 + n].decode("utf-8")  # strict

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    header = json.loads(text, object_pairs_hook=no_duplicates)
    meta = header.pop("__metadata__", None) or {}
    entries = []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        n_el = int(np.prod(info["shape"], dtype=np.uint64)) if info["shape"] else 1
        size = n_el * BITS[info["dtype"]] // 8
        entries.append((begin, end, name, info["dtype"], info["shape"], size))
    entries.sort()
    at, start, out = 0, 8 + n, []
    for begin, end, name, dtype, shape, size in entries:
        if begin != at or end - begin != size:
            raise ValueError(f"tensor {name}: bad data_offsets")
        at = end
        raw = data[start + begin:start + end]
        f32 = decode(dtype, raw)
        t = {"name": name, "dtype": dtype, "shape": shape, "hex": raw.hex()}
        if f32 is not None:
            t["f32"] = [str(x) for x in f32.view(np.uint32).tolist()]
        out.append(t)
    if start + at != len(data):
        raise ValueError("the tensors do not cover the file")
    return meta, out


def dump(path):
    if path.endswith(".json"):
        index = json.load(open(path))
        files = sorted(set(index["weight_map"].values()))
        meta, tensors = None, []
        for f in files:
            m, ts = read_file(os.path.join(os.path.dirname(path), f))
            for t in ts:
                if index["weight_map"].get(t["name"]) != f:
                    raise ValueError(f"{t['name']} is not listed for {f}")
            meta = m if meta is None else meta
            tensors += ts
        if len(tensors) != len(index["weight_map"]):
            raise ValueError("the index lists tensors the shards do not hold")
        return {"metadata": meta or {}, "tensors": tensors}
    meta, tensors = read_file(path)
    return {"metadata": meta, "tensors": tensors}


def write(path, tensors, meta):
    """tensors: list of (name, dtype, shape, raw bytes). Laid out as the upstream
    writer does: dtype alignment descending, then name; compact JSON with
    "__metadata__" first (keys sorted); header padded with spaces to 8 bytes."""
    order = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0].encode("utf-8")))
    header, at = {}, 0
    if meta:
        header["__metadata__"] = {k: meta[k] for k in sorted(meta, key=lambda k: k.encode("utf-8"))}
    for name, dtype, shape, raw in order:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        at += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, _, raw in order:
            f.write(raw)


def sample_tensors(rng, prefix=""):
    x = rng.standard_normal(24).astype(np.float32)
    return [
        (prefix + "model.embed_tokens.weight", "F32", [4, 6], x.tobytes()),
        (prefix + "model.norm.weight", "F16", [6], rng.standard_normal(6).astype(np.float16).tobytes()),
        (prefix + "lm_head.weight", "BF16", [3, 2],
         (rng.standard_normal(6).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()),
        (prefix + "f64", "F64", [2], rng.standard_normal(2).tobytes()),
        (prefix + "i64", "I64", [3], rng.integers(-2**62, 2**62, 3).astype(np.int64).tobytes()),
        (prefix + "u8", "U8", [5], rng.integers(0, 256, 5).astype(np.uint8).tobytes()),
        (prefix + "bool", "BOOL", [2], bytes([0, 1])),
        (prefix + "fp8", "F8_E4M3", [4], bytes([0x00, 0x38, 0xfe, 0x7f])),
        (prefix + "scalar", "I32", [], struct.pack("<i", -7)),
        (prefix + "empty", "F32", [0, 3], b""),
        (prefix + "unicodé ✓", "U16", [1], struct.pack("<H", 65535)),
    ]


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "dump" and len(sys.argv) == 3:
        out = dump(sys.argv[2])
    elif cmd == "rewrite" and len(sys.argv) == 4:
        meta, tensors = read_file(sys.argv[2])
        write(sys.argv[3], [(t["name"], t["dtype"], t["shape"], bytes.fromhex(t["hex"])) for t in tensors], meta)
        out = dump(sys.argv[3])
    elif cmd == "write" and len(sys.argv) == 3:
        write(sys.argv[2], sample_tensors(np.random.default_rng(3)), {"format": "pt", "note": "réf"})
        out = dump(sys.argv[2])
    elif cmd == "write-sharded" and len(sys.argv) == 3:
        d = sys.argv[2]
        ts = sample_tensors(np.random.default_rng(5))
        shards = {"model-00001-of-00002.safetensors": ts[:5], "model-00002-of-00002.safetensors": ts[5:]}
        weight_map = {}
        for f, part in shards.items():
            write(os.path.join(d, f), part, {"format": "pt"})
            weight_map.update({t[0]: f for t in part})
        total = sum(len(t[3]) for t in ts)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        out = dump(os.path.join(d, "model.safetensors.index.json"))
    else:
        sys.exit(__doc__)
    json.dump(out, sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
