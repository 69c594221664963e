#!/usr/bin/python3
"""Independent numpy reference for `deltasoup aggregate` (docs/aggregate.md).

Reads the input deltas with h5py, expands every 1-bit tensor to one float
per user per coordinate, computes each method naively (full sorts, a full
distance matrix) and compares with the output file and its --report JSON.

usage: aggregate_ref.py CASES
Each line of CASES: METHOD OUT REPORT [key=value ...] -- IN1 IN2 ...
keys: trim=T byzantine=F select=M requantize=1 dropped=i,j (input indices
the trust filter must have dropped). Exit 0 when every case matches.
"""
import hashlib
import json
import sys

import h5py
import numpy as np


def unpack(words, rows, cols):
    b = np.unpackbits(np.ascontiguousarray(words, dtype="<u8").view(np.uint8).reshape(rows, -1), axis=1,
                      bitorder="little")
    return b[:, :cols].astype(np.int64)


def load(path):
    """{name: dict} with the values v (float64) of every tensor."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in f["bits"]:
            g = f["bits"][name]
            rows, cols = int(g.attrs["rows"]), int(g.attrs["cols"])
            mode = g.attrs["scale_mode"].decode()
            words = g["signs"][()]
            sc = g["scale"][()].astype(np.float64)
            G = {"tensor": lambda: np.full((rows, cols), sc[0]), "row": lambda: np.repeat(sc[:, None], cols, 1),
                 "col": lambda: np.repeat(sc[None, :], rows, 0)}[mode]()
            b = unpack(words, rows, cols)
            out[name] = dict(coded=True, mode=mode, rows=rows, cols=cols, words=words, scale=g["scale"][()],
                             g=G, b=b, v=G * (2 * b - 1), dtype=g.attrs["dtype"].decode())
        for name in f["dense"]:
            d = f["dense"][name]
            size = d.id.get_type().get_size()  # h5py shows deltasoup's bf16 as float32: look at the size
            dt = "F16" if d.dtype == np.float16 else "BF16" if size == 2 else "F32"
            out[name] = dict(coded=False, v=d.astype("f4")[()].astype(np.float64), dtype=dt)
        attrs = {k: f.attrs[k] for k in f.attrs}
    return out, attrs


def round_to(x, dtype_name):
    """float64 -> the stored dtype's nearest value (as float64)."""
    x32 = x.astype(np.float32)
    if dtype_name == "F16":
        return x32.astype(np.float16).astype(np.float64)
    if dtype_name == "BF16":
        u = x32.view(np.uint32).astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
        return u.astype(np.uint32).view(np.float32).astype(np.float64)
    return x32.astype(np.float64)


def trimmed(users, name, k):
    """Per-coordinate trimmed mean with the value order of the docs; returns
    (result float64 flat, kept counts per user)."""
    n = len(users)
    V = np.stack([u[name]["v"].ravel() for u in users], axis=1)  # (N, n)
    idx = np.broadcast_to(np.arange(n), V.shape)
    if users[0][name]["coded"]:
        G = np.stack([u[name]["g"].ravel() for u in users], axis=1)
        B = np.stack([u[name]["b"].ravel() for u in users], axis=1)
        bp = B ^ (G < 0)
        m = np.abs(G)
        vk = np.where(bp == 1, m, -m)
        sec = np.where(bp == 1, idx, -idx)
        order = np.lexsort((sec, bp, vk), axis=-1)
    else:
        order = np.lexsort((idx, V), axis=-1)
    S = np.take_along_axis(V, order, axis=1)
    res = S[:, k:n - k].sum(axis=1) / (n - 2 * k)
    kept = np.bincount(order[:, k:n - k].ravel(), minlength=n)
    return res, kept


def check_close(what, got, want, rtol, atol):
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    bad = np.abs(got - want) > atol + rtol * np.abs(want)
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ, first at {i}: {got[i]!r} vs {want[i]!r}")


def run_case(line):
    head, ins = line.split(" -- ")
    tok = head.split()
    method, outp, repp = tok[:3]
    kv = dict(t.split("=", 1) for t in tok[3:])
    ins = ins.split()
    trim = float(kv.get("trim", 0.1))
    f = int(kv.get("byzantine", 0))
    requant = kv.get("requantize") == "1"
    dropped = set(int(i) for i in kv["dropped"].split(",")) if kv.get("dropped") else set()
    rep = json.load(open(repp))
    loaded = [load(p) for p in ins]
    used = [i for i in range(len(ins)) if i not in dropped]
    users = [loaded[i][0] for i in used]
    n = len(users)
    out, oattrs = load(outp)
    names = sorted(users[0])
    assert sorted(out) == names, f"{outp}: tensors {sorted(out)} != {names}"
    total = sum(users[0][t]["v"].size for t in names)

    # report: inputs, statuses, drops
    cs = rep["contributors"]
    assert [c["path"] for c in cs] == ins, "report lists other inputs"
    for i, c in enumerate(cs):
        assert (c["status"] == "dropped") == (i in dropped), f"input {i}: status {c['status']}"
        assert c["owner"] == loaded[i][1]["owner"].decode(), f"input {i}: owner"
        assert c["content_sha256"] == loaded[i][1]["content_sha256"].decode(), f"input {i}: content hash"

    # version hash: method, parameters, contributors in input order
    params = ""
    if method in ("trimmed-mean", "majority"):
        params += "trim=%.17g\n" % trim
    if method in ("krum", "multi-krum"):
        params += "byzantine=%d\n" % f
    sel_m = {"krum": 1, "multi-krum": int(kv.get("select", n - f))}.get(method)
    if method == "multi-krum":
        params += "select=%d\n" % sel_m
    if method not in ("krum", "majority"):
        params += "requantize=%d\n" % requant
    stmt = "deltasoup.aggregate.v1\nmethod=%s\n%s" % (method, params)
    stmt += "".join("input=%s\n" % loaded[i][1]["content_sha256"].decode() for i in used)
    assert rep["version_sha256"] == hashlib.sha256(stmt.encode()).hexdigest(), "version hash"
    assert oattrs["aggregate_version_sha256"].decode() == rep["version_sha256"]
    assert oattrs["aggregate_method"].decode() == method

    weights = np.zeros(n)
    part = list(range(n))
    if method in ("krum", "multi-krum"):
        X = np.concatenate([np.concatenate([u[t]["v"].ravel() for t in names]) for u in users]).reshape(n, -1)
        D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
        score = np.array([np.sort(np.delete(D[u], u))[:n - f - 2].sum() for u in range(n)])
        check_close("krum scores", [cs[i]["krum_score"] for i in used], score, 1e-9, 1e-9)
        part = sorted(range(n), key=lambda u: (score[u], u))[:sel_m]
        weights[part] = 1.0 / len(part)
        if method == "krum":
            src = h5py.File(ins[used[part[0]]], "r")
            dst = h5py.File(outp, "r")
            for t in names:
                if users[0][t]["coded"]:
                    for p in ("signs", "scale"):
                        assert np.array_equal(src["bits"][t][p][()], dst["bits"][t][p][()]), f"krum copy {t}/{p}"
                else:
                    assert np.array_equal(src["dense"][t][()], dst["dense"][t][()]), f"krum copy {t}"
            check_close("weights", [cs[i]["weight"] for i in used], weights, 0, 1e-15)
            return
    pusers = [users[u] for u in part]
    np_ = len(pusers)
    kept_all = np.zeros(np_, dtype=np.int64)
    for t in names:
        t0 = pusers[0][t]
        o = out[t]
        if method == "majority" and t0["coded"]:
            G = np.stack([u[t]["g"].ravel() for u in pusers], axis=1)
            B = np.stack([u[t]["b"].ravel() for u in pusers], axis=1)
            bp = B ^ (G < 0)
            bit = (2 * bp.sum(axis=1) >= np_).astype(np.int64)
            assert o["coded"], f"{t}: majority output not 1-bit"
            assert np.array_equal(o["b"].ravel(), bit), f"{t}: majority bits"
            kept_all += (bp == bit[:, None]).sum(axis=0)
            ks = int(np.floor(trim * np_))
            S = np.sort(np.abs(np.stack([u[t]["scale"].astype(np.float64) for u in pusers])), axis=0)
            check_close(f"{t}: majority scales", o["scale"], S[ks:np_ - ks].mean(axis=0), 1e-6, 0)
            continue
        if method == "median" or (method == "majority" and not t0["coded"]):
            k = (np_ - 1) // 2
        elif method == "trimmed-mean":
            k = int(np.floor(trim * np_))
        else:
            k = 0
        res, kept = trimmed(pusers, t, k)
        kept_all += kept
        scale_max = max(np.abs(u[t]["v"]).max() for u in pusers)
        if t0["coded"] and requant:
            assert o["coded"] and o["mode"] == t0["mode"], f"{t}: --requantize output not 1-bit"
            r = res.reshape(t0["rows"], t0["cols"]).astype(np.float32).astype(np.float64)
            near0 = np.abs(r) <= 1e-6 * scale_max
            assert np.array_equal(o["b"][~near0], (r >= 0).astype(np.int64)[~near0]), f"{t}: requantized signs"
            want = {"tensor": lambda: np.array([np.abs(r).mean()]), "row": lambda: np.abs(r).mean(axis=1),
                    "col": lambda: np.abs(r).mean(axis=0)}[t0["mode"]]()
            check_close(f"{t}: requantized scales", o["scale"], want, 1e-5, 1e-7 * scale_max)
            continue
        if t0["coded"]:
            assert not o["coded"] and o["dtype"] == "F32", f"{t}: expected a float32 dense output"
            check_close(t, o["v"], res, 1e-6, 1e-7 * scale_max)
        else:
            dn = t0["dtype"]
            assert o["dtype"] == dn, f"{t}: output dtype {o['dtype']} != {dn}"
            tol = {"F32": 1e-6, "F16": 2.0 ** -10, "BF16": 2.0 ** -7}[dn]
            check_close(t, o["v"], round_to(res, dn), tol, 1e-7 * scale_max)
    got_kept = np.array([round(cs[used[u]]["kept_fraction"] * total) for u in part])
    assert np.array_equal(got_kept, kept_all), f"kept counts {got_kept} != {kept_all}"
    w = np.zeros(n)
    w[part] = kept_all / kept_all.sum()
    check_close("weights", [cs[i]["weight"] for i in used], w, 1e-12, 1e-15)
    with h5py.File(outp, "r") as fo:
        pw = fo["provenance"]["weight"][()]
        check_close("provenance weights", pw[used], w, 1e-12, 1e-15)
        own = [s.decode() for s in fo["provenance"]["owner"][()]]
        assert own == [loaded[i][1]["owner"].decode() for i in range(len(ins))], "provenance owners"


def run_cases(run_case, path):
    """The case runner of this file, merge_ref.py and robust_ref.py: each
    non-comment line of PATH through run_case; the first failed assertion
    prints FAIL with the line and exits 1."""
    lines = [l.strip() for l in open(path) if l.strip() and not l.startswith("#")]
    for line in lines:
        try:
            run_case(line)
        except AssertionError as e:
            print("FAIL:", line, "\n  ", e)
            sys.exit(1)
        print("ok:", line.split(" -- ")[0])


if __name__ == "__main__":
    run_cases(run_case, sys.argv[1])
