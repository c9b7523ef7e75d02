"""Reads the sample checkpoint written by tests/test_checkpoint.c with h5py.

Usage: checkpoint_h5py.py FILE. Every value is recomputed here from the
formulas in write_sample(), independently of the C reader. Exits non-zero
with a message on the first mismatch.
"""
import sys

import h5py
import numpy as np


def check(cond, what):
    if not cond:
        sys.exit("checkpoint_h5py: " + what)


def main(path):
    with h5py.File(path, "r") as f:
        # Root attributes that mark a lowbit checkpoint.
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        check(fmt == "lowbit-checkpoint", "format attribute is %r" % fmt)
        check(int(f.attrs["format_version"]) == 1, "format_version is %r" % f.attrs["format_version"])
        by = f.attrs["created_by"]
        check((by.decode() if isinstance(by, bytes) else by) == "test_checkpoint", "created_by")

        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        expected = ["config/yaml", "data/ids", "model/tok.weight", "optim/tok.weight/m_codes",
                    "optim/tok.weight/v_codes", "train/rng", "train/step"]
        check(sorted(names) == expected, "datasets are %r" % sorted(names))

        w = f["model/tok.weight"]
        check(w.shape == (8, 16) and w.dtype == np.float32, "model/tok.weight is %r %s" % (w.shape, w.dtype))
        check(w.fletcher32, "model/tok.weight has no Fletcher32 checksum")
        i = np.arange(8 * 16)
        check(np.array_equal(w[()], ((i % 17) * 0.25 - 2.0).reshape(8, 16).astype(np.float32)),
              "model/tok.weight values")
        q = w.attrs["quant"]
        check((q.decode() if isinstance(q, bytes) else q) == "ternary:absmean", "quant attribute %r" % q)

        m = f["optim/tok.weight/m_codes"]
        check(m.dtype == np.uint8 and np.array_equal(m[()], (np.arange(128) * 7) % 256), "m_codes")
        v = f["optim/tok.weight/v_codes"]
        check(v.dtype == np.uint16 and v.shape == (4, 8), "v_codes shape/dtype")
        check(np.array_equal(v[()], (np.arange(32) * 2000).reshape(4, 8)), "v_codes values")
        codec = f["optim/tok.weight"].attrs["codec"]
        check((codec.decode() if isinstance(codec, bytes) else codec) == "int8-blockwise", "codec attribute")

        ids = f["data/ids"]
        check(ids.dtype == np.int32 and list(ids[()]) == [-2**31, -1, 0, 1, 2**31 - 1], "data/ids")
        step = f["train/step"]
        check(step.shape == () and step.dtype == np.int64 and step[()] == 1234567890123, "train/step")
        check(list(f["train/rng"][()]) == [42, 2, 2**40], "train/rng")
        check(int(f["train"].attrs["tokens_seen"]) == -7, "tokens_seen attribute")

        yaml = f["config/yaml"]
        text = yaml.asstr()[()]
        want = 'model:\n  dim: 64\nname: "lowbit \u2013 \u00fcnicode"\n'
        check(text == want, "config/yaml is %r" % text)
        check(yaml[()] == want.encode("utf-8"), "config/yaml bytes")
    print("checkpoint_h5py: ok (%d datasets)" % len(names))


if __name__ == "__main__":
    main(sys.argv[1])
