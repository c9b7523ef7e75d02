"""Compares two lowbit checkpoints, dataset by dataset, with h5py.

Usage: dist_compare.py A.h5 B.h5 exact
       dist_compare.py A.h5 B.h5 TOL
"exact": every dataset but the config (which names the run's own paths) is
equal bit for bit. TOL: no model weight tensor differs by more than TOL in
relative RMS, ||a − b|| / ||a||; the largest is printed either way.
Exits non-zero with the first mismatch.
"""
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    out.pop("config", None)
    return out


def main(a_path, b_path, mode):
    with h5py.File(a_path, "r") as fa, h5py.File(b_path, "r") as fb:
        a, b = datasets(fa), datasets(fb)
    if sorted(a) != sorted(b):
        sys.exit(f"dist_compare: {a_path} and {b_path} hold different datasets: {sorted(set(a) ^ set(b))}")
    if mode == "exact":
        for name in sorted(a):
            x, y = np.asarray(a[name]), np.asarray(b[name])
            if x.shape != y.shape or x.tobytes() != y.tobytes():
                sys.exit(f"dist_compare: '{name}' differs between {a_path} and {b_path}")
        print(f"dist_compare: {len(a)} datasets equal bit for bit")
        return
    tol = float(mode)
    worst, worst_name = 0.0, ""
    for name in sorted(a):
        if not name.startswith("model/"):
            continue
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        rel = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
        if rel > worst:
            worst, worst_name = rel, name
    print(f"dist_compare: largest relative RMS weight difference {worst:.3e} ({worst_name}); tolerance {tol:.1e}")
    if not worst <= tol:
        sys.exit(f"dist_compare: {worst:.3e} exceeds the tolerance {tol:.1e}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
