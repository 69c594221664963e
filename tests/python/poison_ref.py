#!/usr/bin/python3
"""Independent numpy reference for `deltasoup poison` (docs/poison.md).

Reads the honest deltas and the K outputs with h5py, computes each attack's
values from the documented formulas (float64, numpy's mean/std, its own
splitmix64 + Box-Muller for gaussian, the normal quantile from Python's
statistics module for ALIE's z_max) and checks every output: attributes
(owner, base, config), exactly the honest layout, 1-bit tensors re-coded as
sign(x >= 0) + mean |x| per tensor/row/column, dense tensors equal to x in
their dtype. Exit 0 when everything matches.

usage: poison_ref.py --attack A --count K [--strength S] [--seed N] [--z Z] OUTDIR HONEST...
--z: the z the job printed (alie), checked against the reference's.
"""
import argparse
import math
import os
import statistics
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aggregate_ref import load, round_to  # noqa: E402  (the delta reader the aggregate tests use)

DEFAULTS = {"sign-flip": 1.0, "scale": 10.0, "gaussian": 1.0, "alie": None, "ipm": 0.1}
CONFIG = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len", "norm_eps",
          "rope_theta", "tied_embeddings", "format", "format_version", "base_sha256"]
M64 = (1 << 64) - 1


def splitmix64_at(key, c):
    """The c-th splitmix64 output from state key; key a Python int, c a uint64 array."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (c.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sm_int(key, c):
    return int(splitmix64_at(key & M64, np.array([c], dtype=np.uint64))[0])


def normals(seed, k, ti, numel):
    key = sm_int(sm_int(seed, k), ti)
    j = np.arange(numel, dtype=np.uint64)
    u1 = ((splitmix64_at(key, 2 * j) >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
    u2 = (splitmix64_at(key, 2 * j + np.uint64(1)) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.sqrt(-2.0 * np.log(u1)), np.cos(2.0 * np.pi * u2)


def alie_zmax(n, k):
    N = n + k
    s = math.floor(N / 2 + 1) - k
    return statistics.NormalDist().inv_cdf((N - s) / N)


def expected(attack, S, z, seed, k, ti, V):
    """x (float32) of poisoned delta k for one tensor; V: (n, ...) honest values in float64."""
    n = V.shape[0]
    if attack in ("sign-flip", "ipm"):
        x = -S * V.mean(axis=0)
    elif attack == "alie":
        x = V.mean(axis=0) + z * V.std(axis=0)
    elif attack == "scale":
        x = S * V[k % n]
    else:
        rms = math.sqrt(float(np.mean(V ** 2)))
        r, c = normals(seed, k, ti, V[0].size)
        x = (S * rms * r * c).reshape(V[0].shape)
    return x.astype(np.float32)


def fail(msg):
    print("poison_ref: FAIL:", msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attack", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--strength", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--z", type=float)
    ap.add_argument("outdir")
    ap.add_argument("honest", nargs="+")
    a = ap.parse_args()
    S = a.strength if a.strength is not None else DEFAULTS[a.attack]
    n, K = len(a.honest), a.count
    z = None
    if a.attack == "alie":
        z = S if a.strength is not None else alie_zmax(n, K)
        if a.z is not None and abs(a.z - z) > 1e-12 * max(1.0, abs(z)):
            fail(f"alie: the job used z = {a.z!r}, the reference z = {z!r}")
    honest = [load(p) for p in a.honest]
    h0, attrs0 = honest[0]
    names = sorted(h0)
    V = {t: np.stack([h[0][t]["v"] for h in honest]) for t in names}
    seen = {}
    for k in range(K):
        path = os.path.join(a.outdir, f"{a.attack}-{k}.bd.h5")
        if not os.path.exists(path):
            fail(f"{path}: missing")
        out, attrs = load(path)
        if attrs["owner"].decode() != f"poison-{a.attack}-{k}":
            fail(f"{path}: owner {attrs['owner']!r}")
        for key in CONFIG:
            if key in attrs0 and not (key in attrs and np.array_equal(attrs[key], attrs0[key])):
                fail(f"{path}: attribute {key} {attrs.get(key)!r} != honest {attrs0[key]!r}")
        if "dp_epsilon" in attrs:
            fail(f"{path}: records a privacy budget")
        if sorted(out) != names:
            fail(f"{path}: tensors {sorted(out)} != honest {names}")
        for ti, t in enumerate(names):
            o, h = out[t], h0[t]
            x = expected(a.attack, S, z, a.seed, k, ti, V[t])
            if not np.all(np.isfinite(x)):
                fail(f"{path}: {t}: the reference overflows")
            if o["coded"] != h["coded"] or o["dtype"] != h["dtype"]:
                fail(f"{path}: {t}: coding/dtype differs from the honest layout")
            if h["coded"]:
                if (o["mode"], o["rows"], o["cols"]) != (h["mode"], h["rows"], h["cols"]):
                    fail(f"{path}: {t}: mode/shape {o['mode']} {o['rows']}x{o['cols']} != honest")
                bits = (x >= 0).astype(np.int64)
                bad = np.count_nonzero(bits != o["b"])
                if bad:
                    fail(f"{path}: {t}: {bad} sign bits differ from x >= 0")
                ax = np.abs(x.astype(np.float64))
                want = {"tensor": lambda: np.array([ax.mean()]), "row": lambda: ax.mean(axis=1),
                        "col": lambda: ax.mean(axis=0)}[h["mode"]]().astype(np.float32)
                got = o["scale"]
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=0):
                    fail(f"{path}: {t}: scales {got[:4]} != mean |x| {want[:4]}")
            else:
                got, want = o["v"], round_to(x.astype(np.float64), h["dtype"])
                tol = {"F32": 1e-6, "F16": 2.0 ** -10, "BF16": 2.0 ** -7}[h["dtype"]]
                if got.shape != want.shape or not np.allclose(got, want, rtol=tol, atol=1e-30):
                    fail(f"{path}: {t}: dense values differ, max |diff| {np.max(np.abs(got - want)):g}")
            seen.setdefault(t, []).append(x)
    # what the attacks are: identical copies, or K different deltas
    for t, xs in seen.items():
        same = all(np.array_equal(xs[0], x) for x in xs)
        if a.attack in ("sign-flip", "alie", "ipm") and not same:
            fail(f"{t}: the {a.attack} copies differ")
        if a.attack == "gaussian" and K > 1 and same:
            fail(f"{t}: every gaussian copy is the same")
    if a.attack == "gaussian":  # the documented construction gives standard normals
        r, c = normals(a.seed, 0, 0, 20000)
        g = r * c
        if abs(g.mean()) > 0.05 or abs(g.std() - 1) > 0.05:
            fail(f"splitmix64 + Box-Muller: mean {g.mean():.3f}, std {g.std():.3f}")
    print(f"poison_ref: ok: {a.attack} K={K} n={n} S={S if z is None else z}")


if __name__ == "__main__":
    main()
