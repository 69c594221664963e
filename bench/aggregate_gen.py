#!/usr/bin/env python3
"""Synthetic 1-bit deltas for bench/aggregate_bench.sh: N users, TENSORS
coded tensors of ROWS x COLS with per-tensor scales, no dense part. Every
user is a shared random sign pattern with 1/8 of the bits flipped (the AND
of three random words) and scale 0.5..1.5. Root attributes, the group and
dataset layout are copied from TEMPLATE (a delta deltasoup wrote), so the
files are exactly what deltasoup reads.
usage: aggregate_gen.py TEMPLATE.bd.h5 OUTDIR N [TENSORS ROWS COLS]"""
import os
import sys

import h5py
import numpy as np


def main():
    tmpl, outdir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nt, rows, cols = (int(x) for x in (sys.argv[4:7] if len(sys.argv) > 4 else (8, 4096, 4096)))
    assert cols % 64 == 0
    words = cols // 64
    rng = np.random.default_rng(1)
    truth = [rng.integers(0, 2**64, size=(rows, words), dtype=np.uint64) for _ in range(nt)]
    with h5py.File(tmpl, "r") as t:
        root = {k: t.attrs[k] for k in t.attrs}
        gattrs = {k: t["bits/a.weight"].attrs[k] for k in t["bits/a.weight"].attrs}
    for u in range(n):
        path = os.path.join(outdir, "u%03d.bd.h5" % u)
        with h5py.File(path, "w") as f:
            for k, v in root.items():
                f.attrs[k] = v
            f.attrs["owner"] = np.bytes_("user%03d" % u)
            f.attrs["content_sha256"] = np.bytes_("%064x" % (u + 1))  # not verified without --trusted-keys
            bits, dense = f.create_group("bits"), f.create_group("dense")
            for i in range(nt):
                g = bits.create_group("t%02d.weight" % i)
                for k, v in gattrs.items():
                    g.attrs[k] = v
                g.attrs["rows"], g.attrs["cols"] = np.int64(rows), np.int64(cols)
                g.attrs["scale_mode"] = np.bytes_("tensor")
                flip = (rng.integers(0, 2**64, size=(rows, words), dtype=np.uint64)
                        & rng.integers(0, 2**64, size=(rows, words), dtype=np.uint64)
                        & rng.integers(0, 2**64, size=(rows, words), dtype=np.uint64))
                g.create_dataset("signs", data=truth[i] ^ flip, dtype="<u8")
                g.create_dataset("scale", data=np.array([0.5 + rng.random()], dtype="<f4"))
            del dense


if __name__ == "__main__":
    main()
