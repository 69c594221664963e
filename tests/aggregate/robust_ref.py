#!/usr/bin/python3
"""Independent numpy reference for aggregate's robust aggregators
(docs/aggregate.md "Robust aggregators"), computed on the expanded float64
vectors (every 1-bit tensor as g (2b - 1)), not on a Gram matrix:
  geometric-median  RFA's smoothed Weiszfeld (Pillutla et al. 2022): alpha = 1/n,
                    v = weighted mean, w_i = alpha / max(1e-6, ||v - x_i||), stop when
                    |obj_prev - obj| < tol * obj or after max_iter updates;
  centered-clipping v = 0; L times v += mean_i (x_i - v) min(1, tau / ||x_i - v||);
  bulyan            Krum (f) selects theta = n - 2f (the lowest scores); per
                    coordinate the mean of the beta = theta - 2f values closest to the
                    median (stable argsort of |v - median| over the sorted values);
  --pre nnm         x_i -> mean of its n - f nearest (itself included; ties: lower index),
                    then the method (per-coordinate ones on the mixes rounded to float32;
                    median: np.median).
usage: robust_ref.py CASES   (lines: METHOD OUT REPORT [byzantine= tol= max_iter= tau=
iters= pre=nnm] -- IN1 IN2 ...). Exit 0 when every case matches.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from aggregate_ref import check_close, load, round_to, run_cases  # noqa: E402  (readers, case runner)


def geomed(X, tol, max_iter, eps=1e-6):
    n = len(X)
    alpha = np.full(n, 1.0 / n)
    w = alpha.copy()
    v = w @ X
    obj = alpha @ np.linalg.norm(X - v, axis=1)
    for _ in range(max_iter):
        prev = obj
        w = alpha / np.maximum(eps, np.linalg.norm(X - v, axis=1))
        w = w / w.sum()
        v = w @ X
        obj = alpha @ np.linalg.norm(X - v, axis=1)
        if abs(prev - obj) < tol * obj:
            break
    return v, w


def cclip(X, tau, iters):
    v = np.zeros(X.shape[1])
    for _ in range(iters):
        diff = X - v
        nrm = np.linalg.norm(diff, axis=1)
        k = np.where(nrm > tau, tau / np.where(nrm > 0, nrm, 1), 1.0)
        v = v + (diff * k[:, None]).mean(axis=0)
    return v


def dists(X):
    sq = (X * X).sum(axis=1)
    D = sq[:, None] + sq[None, :] - 2 * X @ X.T
    np.fill_diagonal(D, 0)
    return np.maximum(D, 0)


def krum_scores(D, f):
    n = len(D)
    return np.array([np.sort(np.delete(D[u], u))[:n - f - 2].sum() for u in range(n)])


def bulyan(X, Xr, f):
    n = len(X)
    score = krum_scores(dists(X), f)
    picked = sorted(range(n), key=lambda u: (score[u], u))[:n - 2 * f]
    sel = sorted(picked)
    theta, beta = len(sel), len(sel) - 2 * f
    V = Xr[sel].T  # (coords, theta)
    order = np.lexsort((np.broadcast_to(np.arange(theta), V.shape), V), axis=-1)
    S = np.take_along_axis(V, order, axis=1)
    med = np.where(theta % 2, S[:, theta // 2], (S[:, (theta - 1) // 2] + S[:, theta // 2]) / 2)
    close = np.argsort(np.abs(S - med[:, None]), axis=1, kind="stable")[:, :beta]
    return np.take_along_axis(S, close, axis=1).sum(axis=1) / beta, sel


def nnm(X, f):
    n = len(X)
    D = dists(X)
    A = np.zeros((n, n))
    for i in range(n):
        row = D[i].copy()
        row[i] = 0
        A[i, np.argsort(row, kind="stable")[:n - f]] = 1.0 / (n - f)
    return A


def run_case(line):
    head, ins = line.split(" -- ")
    tok = head.split()
    method, outp, repp = tok[:3]
    kv = dict(t.split("=", 1) for t in tok[3:])
    ins = ins.split()
    f = int(kv.get("byzantine", 0))
    users = [load(p)[0] for p in ins]
    out, oattrs = load(outp)
    rep = json.load(open(repp))
    assert oattrs["aggregate_method"].decode() == method
    names = sorted(users[0])
    X = np.stack([np.concatenate([u[t]["v"].ravel() for t in names]) for u in users])
    n = len(X)
    coef = None
    if kv.get("pre") == "nnm":
        A = nnm(X, f)
        X = A @ X  # the mixes: distances and weighted sums on these
        Xr = X.astype(np.float32).astype(np.float64)  # per-coordinate methods: values rounded to float
    else:
        A = np.eye(n)
        Xr = X
    if method == "geometric-median":
        res, w = geomed(X, float(kv.get("tol", 1e-6)), int(kv.get("max_iter", 100)))
        coef = w @ A
    elif method == "centered-clipping":
        res = cclip(X, float(kv["tau"]), int(kv.get("iters", 1)))
    elif method == "bulyan":
        res, sel = bulyan(X, Xr, f)
        check_close("krum scores", [c["krum_score"] for c in rep["contributors"]], krum_scores(dists(X), f), 1e-7, 1e-9)
        if kv.get("pre") != "nnm":
            used = [c["status"] == "used" for c in rep["contributors"]]
            assert used == [i in sel for i in range(n)], f"bulyan's selection {used} != {sel}"
    elif method == "median":
        res = np.median(Xr, axis=0)
    elif method == "mean":
        res = X.mean(axis=0)
    else:
        raise AssertionError(f"no reference for {method}")
    if coef is not None:
        check_close("weights (coefficients)", [c["weight"] for c in rep["contributors"]], coef, 1e-5, 1e-9)
    big = np.abs(X).max()
    at = 0
    for t in names:
        t0, o = users[0][t], out[t]
        r = res[at:at + t0["v"].size]
        at += t0["v"].size
        tol_abs = 3e-6 * big if method == "geometric-median" else 1e-6 * big
        if t0["coded"]:
            assert not o["coded"] and o["dtype"] == "F32", f"{t}: expected a float32 dense output"
            check_close(t, o["v"], r, 1e-5, tol_abs)
        else:
            dn = t0["dtype"]
            assert o["dtype"] == dn, f"{t}: output dtype {o['dtype']} != {dn}"
            tol = {"F32": 1e-5, "F16": 2.0 ** -10, "BF16": 2.0 ** -7}[dn]
            check_close(t, o["v"], round_to(r, dn), tol, tol_abs)


if __name__ == "__main__":
    run_cases(run_case, sys.argv[1])
