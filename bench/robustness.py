#!/usr/bin/python3
"""Numpy side of bench/robustness.sh (docs/robustness.md): how far poisoned
deltas pull each aggregation method, against bounds computed from the
honest deltas alone.

usage:
  robustness.py synth DIR --byzantine F --trim T --attacks "A ..." --methods "M ..." [--must-pull "A ..."]
      DIR/honest.list: the honest deltas; DIR/agg/<attack>-<method>.bd.h5 the
      aggregates (attack "none": the honest ones only). Prints the tables and
      exits 1 when a robust method leaves its bound, or when the mean is not
      pulled beyond the median's bound by an attack listed in --must-pull.
  robustness.py slices CSV OUTDIR N
      TruthfulQA rows as text: every 7th row to OUTDIR/heldout.txt, the rest
      in N contiguous slices OUTDIR/user<i>.txt.
  robustness.py tau HONEST.list
      centered-clipping's --tau for the bench: the median ||h - honest mean||.
  robustness.py real EVAL.json
      The held-out NLL table from `deltasoup eval --json` over the aggregates.

Values are the deltas' effective values (1-bit: g (2b - 1); dense: the
values), all tensors concatenated, read with tests/python/aggregate_ref.py's
independent loader (h5py, no deltasoup code).
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from aggregate_ref import load  # noqa: E402

# Worst relative rounding of a stored value (round to nearest): the bound is
# on exact statistics, the file holds them rounded to the output dtype.
EPS = {"F32": 2.0 ** -24, "F16": 2.0 ** -11, "BF16": 2.0 ** -8}


def tensors(path):
    d, _ = load(path)
    return [(name, d[name]) for name in sorted(d)]


def flat(ts):
    return np.concatenate([t["v"].ravel() for _, t in ts])


def trim_envelope(S, n, f, k):
    """Per coordinate, the range [L, U] of a trimmed mean that drops k values
    per side of n = len(S) + f, whatever the f other values are: kept rank j
    lies between the honest order statistics S[j - f] and S[j] (S sorted
    along axis 0). None when k < f (then one value can go anywhere)."""
    if k < f:
        return None
    return S[k - f:n - k - f].mean(axis=0), S[k:n - k].mean(axis=0)


def worst(env, mu):
    L, U = env
    return np.maximum(np.abs(L - mu), np.abs(U - mu))


def majority_worst(hon, mu_t, n, f, k):
    """Majority on one tensor: worst |output - honest mean| per coordinate.
    Coded: the bit can be 1 iff the honest b' = 1 count plus f reaches n/2, 0
    iff the honest count alone stays below n/2; the scale is a trimmed mean of
    the users' |g| per tensor/row/column (envelope as above). Dense: median."""
    if not hon[0]["coded"]:
        S = np.sort(np.stack([h["v"].ravel() for h in hon]), axis=0)
        return worst(trim_envelope(S, n, f, (n - 1) // 2), mu_t)
    G = np.stack([h["g"].ravel() for h in hon])
    B = np.stack([h["b"].ravel() for h in hon]) ^ (G < 0)
    c1 = B.sum(axis=0)
    can1, can0 = 2 * (c1 + f) >= n, 2 * c1 < n
    scales = np.sort(np.abs(np.stack([np.atleast_1d(h["scale"]).astype(np.float64) for h in hon])), axis=0)
    env = trim_envelope(scales, n, f, k)
    if env is None:
        return np.full(mu_t.shape, np.inf)
    rows, cols = hon[0]["rows"], hon[0]["cols"]
    expand = {"tensor": lambda s: np.full((rows, cols), s[0]), "row": lambda s: np.repeat(s[:, None], cols, 1),
              "col": lambda s: np.repeat(s[None, :], rows, 0)}[hon[0]["mode"]]
    w = np.zeros(mu_t.shape)
    for s in (expand(env[0]).ravel(), expand(env[1]).ravel()):
        w = np.maximum(w, np.where(can1, np.abs(s - mu_t), 0))
        w = np.maximum(w, np.where(can0, np.abs(-s - mu_t), 0))
    return w


def krum_radius(H, mu, n, f, score_of):
    """Krum's output is one input x with score(x) <= some honest score, and
    score(h) <= s_h, h's sum over its n - f - 2 nearest honest deltas. A
    poisoned x counts at least n - 2f - 1 honest deltas among its n - f - 2
    nearest, so one lies within sqrt(s / (n - 2f - 1)): ||x - mu|| <= R + that,
    R = max ||h - mu||. Multi-Krum averages such deltas (convex: same bound).
    score_of picks the s (min for Krum, max for Multi-Krum)."""
    sq = (H * H).sum(axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * H @ H.T, 0)
    np.fill_diagonal(D, np.inf)
    s = np.sort(D, axis=1)[:, :n - f - 2].sum(axis=1)
    R = np.sqrt(((H - mu) ** 2).sum(axis=1)).max()
    return R + np.sqrt(score_of(s) / (n - 2 * f - 1))


def bounds(hon_ts, H, mu, n, f, trim):
    """Certified worst case of ||aggregate - mu|| over every choice of the f
    poisoned deltas, per method (None: no bound)."""
    S = np.sort(H, axis=0)
    norm = lambda w: None if w is None else float(np.sqrt((w ** 2).sum()))  # noqa: E731
    env_t = trim_envelope(S, n, f, int(np.floor(trim * n)))
    off, maj = 0, []
    for i, (name, t0) in enumerate(hon_ts[0]):
        size = t0["v"].size
        maj.append(majority_worst([h[i][1] for h in hon_ts], mu[off:off + size], n, f, int(np.floor(trim * n))))
        off += size
    return {
        "mean": None,
        "median": norm(worst(trim_envelope(S, n, f, (n - 1) // 2), mu)),
        "trimmed-mean": None if env_t is None else norm(worst(env_t, mu)),
        "krum": float(krum_radius(H, mu, n, f, np.min)),
        "multi-krum": float(krum_radius(H, mu, n, f, np.max)),
        "majority": norm(np.concatenate(maj)),
    }


def rounding(ts):
    return float(np.sqrt(sum((EPS["F32" if t["coded"] else t["dtype"]] * np.linalg.norm(t["v"])) ** 2
                             for _, t in ts)))


def synth(a):
    hon_paths = [l.strip() for l in open(os.path.join(a.dir, "honest.list")) if l.strip()]
    hon_ts = [tensors(p) for p in hon_paths]
    H = np.stack([flat(ts) for ts in hon_ts])
    mu = H.mean(axis=0)
    nmu = np.linalg.norm(mu)
    f, attacks, methods = a.byzantine, a.attacks.split(), a.methods.split()
    n = len(hon_paths) + f
    B = {m: (None if b is None else b / nmu) for m, b in bounds(hon_ts, H, mu, n, f, a.trim).items()}
    d, shift, cos, outside, clean = {}, {}, {}, {}, {}
    for att in ["none"] + attacks:
        for m in methods:
            ts = tensors(os.path.join(a.dir, "agg", f"{att}-{m}.bd.h5"))
            v = flat(ts)
            if att == "none":
                clean[m] = v
            d[att, m] = np.linalg.norm(v - mu) / nmu
            shift[att, m] = np.linalg.norm(v - clean[m]) / nmu
            cos[att, m] = v @ mu / (np.linalg.norm(v) * nmu)
            outside[att, m] = att != "none" and B.get(m) is not None and d[att, m] > B[m] + rounding(ts) / nmu
    ok = not any(outside.values())
    head = "| attack | " + " | ".join(methods) + " |\n|---" * 1 + "|---" * len(methods) + "|"
    print(f"{len(hon_paths)} honest + {f} poisoned per attack (n = {n}), "
          f"trim {a.trim} (k = {int(np.floor(a.trim * n))}), byzantine {f}; ||honest mean|| = {nmu:.4g}")
    print("\nrelative distance ||aggregate - honest mean|| / ||honest mean|| (* = outside the bound)\n")
    print(head)
    for att in ["none"] + attacks:
        cells = [f"{d[att, m]:.4f}{' *' if outside[att, m] else ''}" for m in methods]
        print(f"| {att} | " + " | ".join(cells) + " |")
    print("| **bound** | " + " | ".join("none" if B.get(m) is None else f"{B[m]:.4f}" for m in methods) + " |")
    print("\nshift from the same method's honest-only aggregate, ||agg - agg_honest|| / ||honest mean||\n")
    print(head)
    for att in attacks:
        print(f"| {att} | " + " | ".join(f"{shift[att, m]:.4f}" for m in methods) + " |")
    print("\ncosine similarity of the aggregate with the honest mean (negative: the attack reversed it)\n")
    print(head)
    for att in ["none"] + attacks:
        print(f"| {att} | " + " | ".join(f"{cos[att, m]:.4f}" for m in methods) + " |")
    if "median" in B and "mean" in methods:
        for att in a.must_pull.split():
            if d[att, "mean"] <= B["median"]:
                print(f"FAIL: {att}: the mean moved only {d[att, 'mean']:.4f}, within the median's bound {B['median']:.4f}")
                ok = False
    print("\nrobust methods within their bounds" + (" (and the mean pulled beyond the median's bound by: "
                                                       f"{a.must_pull})" if a.must_pull else "") + ": "
          + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def slices(a):
    rows = list(csv.DictReader(open(a.csv, encoding="utf-8-sig")))
    text = [r["Question"] + " " + r["Best Answer"] + "\n\n" for r in rows]
    with open(os.path.join(a.outdir, "heldout.txt"), "w") as g:
        g.writelines(text[::7])
    rest = [t for i, t in enumerate(text) if i % 7]
    for u, part in enumerate(np.array_split(np.arange(len(rest)), a.n)):
        with open(os.path.join(a.outdir, f"user{u}.txt"), "w") as g:
            g.writelines(rest[i] for i in part)
    return 0


def tau(a):
    """centered-clipping's radius for the bench: the median over the honest
    deltas of ||h - honest mean||."""
    H = np.stack([flat(tensors(l.strip())) for l in open(a.list) if l.strip()])
    print(f"{float(np.median(np.linalg.norm(H - H.mean(axis=0), axis=1))):.6g}")
    return 0


def real(a):
    ev = json.load(open(a.eval_json))
    nll = {r["delta"]: r["value"] for r in ev["results"] if r["metric"] == "nll"}
    base = nll.pop("base")
    users = [v for k, v in nll.items() if "/agg/" not in k]
    agg = {os.path.basename(k)[:-len(".bd.h5")]: v for k, v in nll.items() if "/agg/" in k}
    methods = a.methods.split()
    print(f"held-out NLL per token ({ev['tasks'][0]['n']} documents): base {base:.4f}; "
          f"each honest user alone: {min(users):.4f} .. {max(users):.4f} (mean {np.mean(users):.4f})\n")
    print("| attack | " + " | ".join(methods) + " |\n" + "|---" * (len(methods) + 1) + "|")
    for att in ["none"] + a.attacks.split():
        print(f"| {att} | " + " | ".join(f"{agg[f'{att}-{m}']:.4f}" for m in methods) + " |")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth")
    s.add_argument("dir")
    s.add_argument("--byzantine", type=int, required=True)
    s.add_argument("--trim", type=float, required=True)
    s.add_argument("--attacks", required=True)
    s.add_argument("--methods", required=True)
    s.add_argument("--must-pull", default="")
    s = sub.add_parser("slices")
    s.add_argument("csv")
    s.add_argument("outdir")
    s.add_argument("n", type=int)
    s = sub.add_parser("real")
    s.add_argument("eval_json")
    s.add_argument("--attacks", required=True)
    s.add_argument("--methods", required=True)
    s = sub.add_parser("tau")
    s.add_argument("list")
    a = p.parse_args()
    return {"synth": synth, "slices": slices, "real": real, "tau": tau}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
