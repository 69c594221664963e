#!/usr/bin/env python3
"""The peer for bench/aggregate_bench.sh: the same aggregation in PyTorch
(2 threads) the usual way, expanding every 1-bit delta to one float32 per
user per coordinate, block by block of rows (the full expansion of 64 users
of 8 x 4096 x 4096 would be 34 GB): mean, median (mean of the two middle
values for even n), trimmed mean, majority (sign of the vote), Krum
(squared distances from Gram matrices, float64 sums). Reads the files with
h5py like deltasoup does; prints one line per method: seconds.
usage: aggregate_peer.py METHODS(comma list) TRIM F FILE..."""
import sys
import time

import h5py
import numpy as np
import torch

torch.set_num_threads(2)
BLOCK_ELEMS = 1 << 26  # floats per block over all users (256 MB)


def run(method, trim, f, files):
    hs = [h5py.File(p, "r") for p in files]
    n = len(hs)
    names = sorted(hs[0]["bits"])
    D = torch.zeros((n, n), dtype=torch.float64)
    for name in names:
        g = [h["bits"][name] for h in hs]
        rows, cols = int(g[0].attrs["rows"]), int(g[0].attrs["cols"])
        sc = torch.tensor([float(x["scale"][0]) for x in g], dtype=torch.float32)
        B = max(1, BLOCK_ELEMS // (n * cols))
        for r0 in range(0, rows, B):
            w = np.stack([x["signs"][r0:r0 + B] for x in g])  # (n, b, words)
            bits = np.unpackbits(w.view(np.uint8), axis=-1, bitorder="little")[..., :cols]
            v = torch.from_numpy(bits).to(torch.float32).mul_(2).sub_(1).mul_(sc.view(n, 1, 1))
            if method == "mean":
                v.mean(dim=0)
            elif method == "median" or method == "trimmed-mean":
                k = (n - 1) // 2 if method == "median" else int(np.floor(trim * n))
                s, _ = torch.sort(v, dim=0)
                s[k:n - k].mean(dim=0)
            elif method == "majority":
                torch.sign(v).sum(dim=0) >= 0
            elif method == "krum":
                X = v.reshape(n, -1)
                G = (X @ X.T).to(torch.float64)
                d = torch.diag(G)
                D += d[:, None] + d[None, :] - 2 * G
    if method == "krum":
        D.fill_diagonal_(float("inf"))
        s, _ = torch.sort(D, dim=1)
        s[:, :n - f - 2].sum(dim=1).argmin()
    for h in hs:
        h.close()


def main():
    methods, trim, f, files = sys.argv[1].split(","), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    for m in methods:
        t0 = time.time()
        run(m, trim, f, files)
        print("%s %.2f" % (m, time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
