#!/usr/bin/python3
"""Independent numpy reference for aggregate's merging methods
(task-arithmetic, ties, dare-ties, dare-linear; docs/aggregate.md "Merging
methods"), written from mergekit's definitions
(mergekit/merge_methods/generalized_task_arithmetic.py and sparsify.py:
magnitude trim to int(D N) per tensor, Bernoulli(D) masks rescaled by 1/D,
"sum" sign consensus, normalize only for ties), with deltasoup's documented
choices: a 1-bit coordinate's magnitude is its scale, ties at the boundary
magnitude are kept when U < p, and U is numpy's own Philox generator
(Generator(Philox(key=[seed, key1])).random()).

usage: merge_ref.py CASES   (lines: METHOD OUT REPORT [density= lambda= seed=
requantize=1] -- IN1 IN2 ...). Exit 0 when every case matches.
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from aggregate_ref import check_close, load, round_to, run_cases  # noqa: E402  (readers, case runner)

M64 = (1 << 64) - 1


def key1(name, u):
    h = 0xCBF29CE484222325
    for ch in name.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return (h + u * 0x9E3779B97F4A7C15) & M64


def uniforms(seed, name, u, n):
    g = np.random.Generator(np.random.Philox(key=np.array([seed, key1(name, u)], dtype=np.uint64)))
    return g.random(n)


def magnitudes(t):
    """Per-coordinate magnitude: |scale| of a 1-bit tensor, |value| of a dense one."""
    return np.abs(t["g"]).ravel() if t["coded"] else np.abs(t["v"]).ravel()


def ties_keep(a, density, U):
    """mergekit's magnitude(): the int(D N) largest; deltasoup breaks ties at the
    boundary magnitude with U < p."""
    n = a.size
    k = int(density * n)
    if density >= 1 or k >= n:
        return np.ones(n, bool)
    if k == 0:
        return np.zeros(n, bool)
    a32 = a.astype(np.float32).astype(np.float64)
    m = np.sort(a32)[::-1][k - 1]
    above, eq = int((a32 > m).sum()), int((a32 == m).sum())
    p = (k - above) / eq
    return (a32 > m) | ((a32 == m) & (U < p))


def merge(method, users, name, density, lam, seed):
    n = len(users)
    T = []
    K = []
    for u, U_ in enumerate(users):
        t = U_[name]
        x = t["v"].ravel()
        U = uniforms(seed, name, u, x.size)
        if method == "ties":
            keep = ties_keep(magnitudes(t), density, U)
            T.append(np.where(keep, x, 0.0))
        elif method in ("dare-ties", "dare-linear"):
            keep = U < density
            T.append(np.where(keep, x / density, 0.0))
        else:
            keep = np.ones(x.size, bool)
            T.append(x)
        K.append(keep)
    T, K = np.stack(T), np.stack(K)
    if method in ("ties", "dare-ties"):
        elected = np.where(T.sum(axis=0) >= 0, 1.0, -1.0)
        mask = np.sign(T) == elected
        mixed = (T * mask).sum(axis=0)
        div = mask.sum(axis=0).astype(np.float64)
        counted = mask & K
    else:
        mixed = T.sum(axis=0)
        div = np.full(mixed.shape, float(n))
        counted = K
    if method == "ties":  # mergekit's default normalize: ties only
        div[div == 0] = 1
        mixed = mixed / div
    return mixed * lam, counted.sum(axis=1)


def run_case(line):
    head, ins = line.split(" -- ")
    tok = head.split()
    method, outp, repp = tok[:3]
    kv = dict(t.split("=", 1) for t in tok[3:])
    ins = ins.split()
    density = float(kv.get("density", 1))
    lam = float(kv.get("lambda", 1))
    seed = int(kv.get("seed", 0))
    requant = kv.get("requantize") == "1"
    rep = json.load(open(repp))
    loaded = [load(p) for p in ins]
    users = [l[0] for l in loaded]
    out, oattrs = load(outp)
    names = sorted(users[0])
    assert sorted(out) == names
    params = ""
    if method != "task-arithmetic":
        params += "density=%.17g\n" % density
    params += "lambda=%.17g\n" % lam
    if method != "task-arithmetic":
        params += "seed=%d\n" % seed
    params += "requantize=%d\n" % requant
    stmt = "deltasoup.aggregate.v1\nmethod=%s\n%s" % (method, params)
    stmt += "".join("input=%s\n" % l[1]["content_sha256"].decode() for l in loaded)
    assert rep["version_sha256"] == hashlib.sha256(stmt.encode()).hexdigest(), "version hash"
    assert oattrs["aggregate_method"].decode() == method
    kept = np.zeros(len(users), dtype=np.int64)
    total = 0
    for t in names:
        res, k = merge(method, users, t, density, lam, seed)
        kept += k
        total += res.size
        t0, o = users[0][t], out[t]
        big = max(np.abs(u[t]["v"]).max() for u in users) * len(users) / min(density, 1) * max(abs(lam), 1)
        if t0["coded"] and requant:
            assert o["coded"] and o["mode"] == t0["mode"], f"{t}: --requantize output not 1-bit"
            r = res.reshape(t0["rows"], t0["cols"]).astype(np.float32).astype(np.float64)
            far = np.abs(r) > 1e-6 * big
            assert np.array_equal(o["b"][far], (r >= 0).astype(np.int64)[far]), f"{t}: requantized signs"
            want = {"tensor": lambda: np.array([np.abs(r).mean()]), "row": lambda: np.abs(r).mean(axis=1),
                    "col": lambda: np.abs(r).mean(axis=0)}[t0["mode"]]()
            check_close(f"{t}: requantized scales", o["scale"], want, 1e-5, 1e-7 * big)
        elif t0["coded"]:
            assert not o["coded"] and o["dtype"] == "F32", f"{t}: expected a float32 dense output"
            check_close(t, o["v"], res, 1e-6, 1e-7 * big)
        else:
            dn = t0["dtype"]
            assert o["dtype"] == dn, f"{t}: output dtype {o['dtype']} != {dn}"
            tol = {"F32": 1e-6, "F16": 2.0 ** -10, "BF16": 2.0 ** -7}[dn]
            check_close(t, o["v"], round_to(res, dn), tol, 1e-7 * big)
    cs = rep["contributors"]
    got = np.array([round(c["kept_fraction"] * total) for c in cs])
    assert np.array_equal(got, kept), f"kept counts {got} != {kept}"
    if method in ("ties", "dare-ties", "dare-linear") and density < 1:
        frac = kept.sum() / (total * len(users))
        assert frac < min(1.0, density * 1.5), f"kept fraction {frac} for density {density}"


if __name__ == "__main__":
    run_cases(run_case, sys.argv[1])
