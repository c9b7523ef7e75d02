#!/usr/bin/env python3
"""An independent GGUF reader and writer, written from the format's specification
(ggml's docs/gguf.md) and not from lowbit's code, for lowbit's interoperability tests.

  gguf_ref.py dump FILE      print FILE as canonical JSON (below), checking it strictly
  gguf_ref.py write FILE     write a sample GGUF file of its own to FILE and print its
                             canonical JSON (what a reader must find in it)

Canonical JSON, shared with gguf_js_dump.mjs and tests/test_gguf.c:
  {"version": 3, "alignment": 32,
   "kv": [{"key": K, "type": T, "value": V}, ...],        in file order
   "tensors": [{"name": N, "type": ggml_type_id, "ne": ["4", "2"], "offset": "0",
                "hex": raw data bytes, "f32": ["bits", ...] (decoded, when known)}]}
Scalars: integers as decimal strings, f32/f64 as the decimal string of their IEEE
bits, bools as true/false, strings as the hex of their bytes. Arrays: {"type": "arr",
"elem": T, "value": [elements]}, an element of an array of arrays being
{"elem": T, "value": [...]}.
"""
import json
import struct
import sys

import numpy as np

TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"]
FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<I",
       "bool": "<B", "u64": "<Q", "i64": "<q", "f64": "<Q"}
# ggml tensor types this script decodes: id -> (name, block, bytes per block)
GGML = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 8: ("q8_0", 32, 34), 24: ("i8", 1, 1),
        25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8), 28: ("f64", 1, 8), 30: ("bf16", 1, 2),
        34: ("tq1_0", 256, 54), 35: ("tq2_0", 256, 66)}


class Reader:
    def __init__(self, data):
        self.b = data
        self.pos = 0

    def take(self, n, what):
        if n > len(self.b) - self.pos:
            raise ValueError(f"truncated reading {what} at byte {self.pos}")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.unpack("<Q", what + " length")
        return self.take(n, what)

    def value(self, t, depth=0):
        name = TYPES[t]
        if name == "str":
            return self.string("string").hex()
        v = self.unpack(FMT[name], name)
        if name == "bool":
            return v != 0
        return str(v)

    def nested(self, depth):
        # one element of an array of arrays: its own type, count and elements
        elem = self.unpack("<I", "array type")
        if elem >= len(TYPES):
            raise ValueError(f"array of unknown type {elem}")
        n = self.unpack("<Q", "array length")
        if TYPES[elem] == "arr":
            return {"elem": "arr", "value": [self.nested(depth + 1) for _ in range(n)]}
        return {"elem": TYPES[elem], "value": [self.value(elem, depth + 1) for _ in range(n)]}


def f16_to_f32(u16):
    return u16.view(np.float16).astype(np.float32)


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def decode(type_id, raw, n):
    """float32 values of n elements stored as ggml type type_id (from the layouts in
    ggml-common.h / the GGUF docs)."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if type_id == 0:
        return b.view(np.float32).copy()
    if type_id == 1:
        return f16_to_f32(b.view(np.uint16))
    if type_id == 30:
        return bf16_to_f32(b.view(np.uint16))
    if type_id == 28:
        return b.view(np.float64).astype(np.float32)
    if type_id in (24, 25, 26, 27):
        return b.view({24: np.int8, 25: np.int16, 26: np.int32, 27: np.int64}[type_id]).astype(np.float32)
    blocks = b.reshape(-1, GGML[type_id][2])
    if type_id == 8:  # Q8_0: fp16 d, 32 int8
        d = f16_to_f32(blocks[:, :2].copy().view(np.uint16))
        q = blocks[:, 2:].view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    if type_id == 2:  # Q4_0: fp16 d, 16 bytes: low nibbles = weights 0..15, high = 16..31
        d = f16_to_f32(blocks[:, :2].copy().view(np.uint16))
        qs = blocks[:, 2:]
        q = np.concatenate([(qs & 15).astype(np.int32) - 8, (qs >> 4).astype(np.int32) - 8], axis=1)
        return (q.astype(np.float32) * d).reshape(-1)
    if type_id == 35:  # TQ2_0: 64 bytes of 2-bit codes, then fp16 d
        d = f16_to_f32(blocks[:, 64:66].copy().view(np.uint16))
        out = np.empty((blocks.shape[0], 256), dtype=np.float32)
        for chunk in range(2):
            for k in range(4):
                codes = (blocks[:, 32 * chunk:32 * chunk + 32] >> (2 * k)) & 3
                out[:, 128 * chunk + 32 * k:128 * chunk + 32 * k + 32] = (codes.astype(np.int8) - 1).astype(np.float32) * d
        return out.reshape(-1)
    if type_id == 34:  # TQ1_0: 48 bytes of 5 trits, 4 of 4 trits, then fp16 d
        d = f16_to_f32(blocks[:, 52:54].copy().view(np.uint16))
        out = np.empty((blocks.shape[0], 256), dtype=np.float32)

        def trit(byte, k):  # k-th most significant trit of a byte scaled by 256/243
            q = (byte.astype(np.uint16) * (3 ** k)) & 0xFF
            return ((q * 3) >> 8).astype(np.int16) - 1

        pos = 0
        for first, count in ((0, 32), (32, 16)):
            for k in range(5):
                out[:, pos:pos + count] = trit(blocks[:, first:first + count], k).astype(np.float32) * d
                pos += count
        for k in range(4):
            out[:, pos:pos + 4] = trit(blocks[:, 48:52], k).astype(np.float32) * d
            pos += 4
        return out.reshape(-1)
    raise ValueError(f"no decoder for ggml type {type_id}")


def dump(path):
    data = open(path, "rb").read()
    r = Reader(data)
    if r.take(4, "magic") != b"GGUF":
        raise ValueError("bad magic")
    version = r.unpack("<I", "version")
    if version not in (2, 3):
        raise ValueError(f"version {version}")
    n_tensors = r.unpack("<q", "tensor count")
    n_kv = r.unpack("<q", "kv count")
    kv, alignment = [], 32
    for _ in range(n_kv):
        key = r.string("key").decode("utf-8")
        t = r.unpack("<I", "value type")
        if t >= len(TYPES):
            raise ValueError(f"unknown value type {t}")
        if TYPES[t] == "arr":
            elem = r.unpack("<I", "array type")
            if elem >= len(TYPES):
                raise ValueError(f"array of unknown type {elem}")
            n = r.unpack("<Q", "array length")
            if TYPES[elem] == "arr":
                vals = [r.nested(1) for _ in range(n)]
            else:
                vals = [r.value(elem, 1) for _ in range(n)]
            kv.append({"key": key, "type": "arr", "elem": TYPES[elem], "value": vals})
        else:
            v = r.value(t)
            kv.append({"key": key, "type": TYPES[t], "value": v})
            if key == "general.alignment":
                if TYPES[t] != "u32":
                    raise ValueError("general.alignment is not a u32")
                alignment = int(v)
    infos = []
    for _ in range(n_tensors):
        name = r.string("tensor name").decode("utf-8")
        nd = r.unpack("<I", "n_dims")
        ne = [r.unpack("<q", "dim") for _ in range(nd)]
        t = r.unpack("<i", "type")
        off = r.unpack("<Q", "offset")
        infos.append((name, ne, t, off))
    start = r.pos + (-r.pos) % alignment
    if any(data[r.pos:start]):
        raise ValueError("padding before the data section is not zero")
    tensors, expect = [], 0
    for name, ne, t, off in infos:
        if off % alignment or off != expect:
            raise ValueError(f"tensor {name}: offset {off}, expected {expect}")
        n = int(np.prod(ne)) if ne else 1
        block, size = GGML[t][1], GGML[t][2]
        if ne and ne[0] % block:
            raise ValueError(f"tensor {name}: row not a multiple of the block")
        nbytes = n // block * size
        raw = data[start + off:start + off + nbytes]
        if len(raw) != nbytes:
            raise ValueError(f"tensor {name}: data past the end of the file")
        pad_end = start + off + nbytes + (-(off + nbytes)) % alignment
        if any(data[start + off + nbytes:pad_end]):
            raise ValueError(f"tensor {name}: padding after the data is not zero")
        expect = off + nbytes + (-(off + nbytes)) % alignment
        f32 = decode(t, raw, n)
        tensors.append({"name": name, "type": t, "ne": [str(x) for x in ne], "offset": str(off), "hex": raw.hex(),
                        "f32": [str(x) for x in f32.view(np.uint32).tolist()]})
    return {"version": version, "alignment": alignment, "kv": kv, "tensors": tensors}


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def enc_value(t, v):
        if t == "str":
            b = v.encode("utf-8") if isinstance(v, str) else v
            return struct.pack("<Q", len(b)) + b
        if t == "f32":
            return struct.pack("<f", v)
        if t == "f64":
            return struct.pack("<d", v)
        if t == "bool":
            return struct.pack("<B", 1 if v else 0)
        return struct.pack(FMT[t], v)

    def enc_array(self, elem, vals):
        out = struct.pack("<IQ", TYPES.index(elem), len(vals))
        for v in vals:
            if elem == "arr":
                out += self.enc_array(v[0], v[1])
            else:
                out += self.enc_value(elem, v)
        return out

    def add(self, key, t, v, elem=None):
        body = self.enc_array(elem, v) if t == "arr" else self.enc_value(t, v)
        self.kv.append(struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", TYPES.index(t)) + body)

    def tensor(self, name, type_id, ne, raw):
        self.tensors.append((name, type_id, ne, raw))

    def bytes(self, alignment=32):
        out = b"GGUF" + struct.pack("<Iqq", 3, len(self.tensors), len(self.kv)) + b"".join(self.kv)
        off = 0
        for name, t, ne, raw in self.tensors:
            out += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(ne))
            out += b"".join(struct.pack("<q", x) for x in ne) + struct.pack("<iQ", t, off)
            off += len(raw) + (-len(raw)) % alignment
        out += b"\0" * ((-len(out)) % alignment)
        for _, _, _, raw in self.tensors:
            out += raw + b"\0" * ((-len(raw)) % alignment)
        return out


def quant_tq2_0(x):
    """TQ2_0 from its layout: d = amax per block of 256, codes round(x/d) + 1."""
    blocks = x.reshape(-1, 256)
    out = bytearray()
    for blk in blocks:
        d = np.float32(np.max(np.abs(blk)))
        codes = np.zeros(256, dtype=np.uint8) + 1 if d == 0 else (np.rint(blk / d).astype(np.int32) + 1).astype(np.uint8)
        qs = np.zeros(64, dtype=np.uint8)
        for chunk in range(2):
            for k in range(4):
                qs[32 * chunk:32 * chunk + 32] |= codes[128 * chunk + 32 * k:128 * chunk + 32 * k + 32] << (2 * k)
        out += qs.tobytes() + np.float16(d).tobytes()
    return bytes(out)


def write_sample(path):
    rng = np.random.default_rng(7)
    w = Writer()
    w.add("general.architecture", "str", "llama")
    w.add("general.name", "str", "réf ✓")
    w.add("general.alignment", "u32", 64)
    w.add("test.u8", "u8", 200)
    w.add("test.i8", "i8", -100)
    w.add("test.u16", "u16", 65000)
    w.add("test.i16", "i16", -32000)
    w.add("test.i32", "i32", -2000000000)
    w.add("test.f32", "f32", 0.1)
    w.add("test.bool", "bool", True)
    w.add("test.u64", "u64", 2**64 - 1)
    w.add("test.i64", "i64", -2**63)
    w.add("test.f64", "f64", -1e300)
    w.add("tokenizer.ggml.tokens", "arr", ["<s>", "a", "ü", ""], elem="str")
    w.add("test.f32s", "arr", [1.5, -2.25], elem="f32")
    w.add("test.nested", "arr", [("str", ["x", "yz"]), ("i32", [1, -2, 3]), ("arr", [("bool", [True])])], elem="arr")
    x = rng.standard_normal(256 * 2).astype(np.float32)
    w.tensor("blk.0.attn_q.weight", 0, [8, 3], rng.standard_normal(24).astype(np.float32).tobytes())
    w.tensor("f16", 1, [5], rng.standard_normal(5).astype(np.float16).tobytes())
    w.tensor("bf16", 30, [3], (rng.standard_normal(3).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes())
    w.tensor("i8", 24, [7], rng.integers(-128, 128, 7).astype(np.int8).tobytes())
    w.tensor("tq2", 35, [256, 2], quant_tq2_0(np.sign(x) * (np.abs(x) > 0.7) * np.float32(0.25)))
    data = w.bytes(alignment=64)
    with open(path, "wb") as f:
        f.write(data)
    return dump(path)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("dump", "write"):
        sys.exit(__doc__)
    out = dump(sys.argv[2]) if sys.argv[1] == "dump" else write_sample(sys.argv[2])
    json.dump(out, sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
