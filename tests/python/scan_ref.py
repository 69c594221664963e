#!/usr/bin/python3
"""Independent numpy reference for `deltasoup scan` (docs/scan.md), and a
writer of synthetic honest deltas for a real base.

usage:
  scan_ref.py make TEMPLATE.bd.h5 OUTDIR N [--noise P] [--dense-noise R]
      N honest deltas OUTDIR/honest<i>.bd.h5 (owner honest<i>, i = 1..N): copies of
      TEMPLATE (a delta from `deltasoup compress`, which fixes the format) whose
      data are noisy versions of the template's: each sign bit flipped with
      probability P (default 0.1), each scale times 1 + k/8 (k uniform in 0..2), each
      dense value plus R (default 0.3) times the tensor's rms times N(0, 1); the
      per-dataset sha256 attributes and content_sha256 recomputed (docs/formats.md).
  scan_ref.py check REPORT.json [--byzantine F] [--threshold T] [PREFIX:WANT ...]
      Recompute every statistic, z-score and flag of the report's deltas (read with
      h5py from the files it names) and compare: statistics and z-scores to 1e-6
      relative, flags and reasons exactly. Then each PREFIX:WANT: every delta whose
      owner starts with PREFIX is not flagged (WANT clean), flagged (flagged), or
      flagged with at least the rules RULE,RULE,... (WANT a list of rule names).
      Exit 0 when all match.
  scan_ref.py expect REPORT.json PREFIX:WANT ...
      Only the expectations (no recomputation).

Values: 1-bit tensors g (2b - 1), dense tensors their values, all tensors
concatenated, in float64. Written from docs/scan.md, not from the C code.
"""
import hashlib
import json
import os
import shutil
import struct
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print("scan_ref.py: %s" % e, file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aggregate_ref import load  # noqa: E402
from h5_redigest import dtype_name, raw_bytes  # noqa: E402

RULES = ["norm_high", "norm_low", "cosine_low", "agreement_low", "krum_high", "duplicate"]
STATS = ["norm", "cosine_median", "sign_agreement", "krum_score"]


def entry_digest(name, ds):
    h = hashlib.sha256(name.encode() + b"\0" + dtype_name(ds).encode() + b"\0")
    h.update(struct.pack("<I", len(ds.shape)) + b"".join(struct.pack("<Q", d) for d in ds.shape))
    h.update(raw_bytes(ds))
    return h


def set_str(attrs, key, value):
    if key in attrs:
        del attrs[key]
    attrs.create(key, np.bytes_(value))


def make(template, outdir, n, noise, dense_noise):
    os.makedirs(outdir, exist_ok=True)
    for i in range(1, n + 1):
        rng = np.random.default_rng(1000 + i)
        path = os.path.join(outdir, "honest%d.bd.h5" % i)
        shutil.copyfile(template, path)
        with h5py.File(path, "r+") as f:
            entries = []
            for name in sorted(f["bits"]):
                g = f["bits"][name]
                w = g["signs"][()]
                flip = rng.random((w.shape[0], w.shape[1] * 64)) < noise
                cols = int(g.attrs["cols"])
                flip[:, cols:] = False
                g["signs"][...] = w ^ np.packbits(flip, axis=1, bitorder="little").view("<u8")
                sc = g["scale"][()]
                g["scale"][...] = (sc * (1 + 0.125 * rng.integers(0, 3, sc.shape))).astype(np.float32)
                entries += [(name + "/signs", g["signs"]), (name + "/scale", g["scale"])]
            for name in sorted(f["dense"]):
                d = f["dense"][name]
                if dtype_name(d) != "F32":
                    raise SystemExit("scan_ref.py make: %s: only F32 dense deltas" % name)
                v = d[()].astype(np.float64)
                rms = np.sqrt(np.mean(v * v)) if v.size else 0.0
                d[...] = (v + dense_noise * rms * rng.standard_normal(v.shape)).astype(np.float32)
                entries.append((name + "/dense", d))
            digests = {}
            for ename, ds in entries:
                h = entry_digest(ename, ds)
                if "sha256" in ds.attrs:
                    ds.attrs.modify("sha256", np.bytes_(h.hexdigest()))
                digests[ename] = h.digest()
            content = hashlib.sha256(b"".join(digests[k] for k in sorted(digests, key=lambda k: k.encode())))
            set_str(f.attrs, "content_sha256", content.hexdigest())
            set_str(f.attrs, "owner", "honest%d" % i)


def values(path):
    d, attrs = load(path)
    v, bits = [], []
    for name in sorted(d):
        t = d[name]
        v.append(t["v"].ravel())
        if t["coded"]:
            bits.append((t["b"] ^ (t["g"] < 0)).ravel())
        else:
            bits.append((t["v"] >= 0).astype(np.int64).ravel())
    content = attrs["content_sha256"]
    return np.concatenate(v), np.concatenate(bits), content.decode() if isinstance(content, bytes) else content


def robust_z(x):
    med = np.median(x)
    sigma = 1.4826 * np.median(np.abs(x - med))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - med) / sigma if sigma > 0 else np.where(x == med, 0.0, np.sign(x - med) * np.inf)
    return z, med, sigma


def statistics(files, f, threshold):
    loaded = [values(p) for p in files]
    V = np.stack([x[0] for x in loaded])
    B = np.stack([x[1] for x in loaded])
    content = [x[2] for x in loaded]
    n = len(files)
    med = np.median(V, axis=0).astype(np.float32).astype(np.float64)
    norm = np.sqrt((V * V).sum(axis=1))
    mnorm = np.sqrt((med * med).sum())
    cos = np.where((norm > 0) & (mnorm > 0), V @ med / np.maximum(norm * mnorm, 1e-300), 0.0)
    maj = 2 * B.sum(axis=0) >= n
    agree = (B == maj).mean(axis=1)
    D = np.array([[((V[i] - V[j]) ** 2).sum() for j in range(n)] for i in range(n)])
    krum = np.array([np.sort(np.delete(D[i], i))[:n - f - 2].sum() for i in range(n)])
    stats = {"norm": norm, "cosine_median": cos, "sign_agreement": agree, "krum_score": krum}
    z = {"norm": robust_z(np.log(np.maximum(norm, np.finfo(float).tiny)))[0], "cosine_median": robust_z(cos)[0],
         "sign_agreement": robust_z(agree)[0], "krum_score": robust_z(krum)[0]}
    reasons = []
    for u in range(n):
        r = []
        if z["norm"][u] > threshold:
            r.append("norm_high")
        if z["norm"][u] < -threshold:
            r.append("norm_low")
        if z["cosine_median"][u] < -threshold:
            r.append("cosine_low")
        if z["sign_agreement"][u] < -threshold:
            r.append("agreement_low")
        if z["krum_score"][u] > threshold:
            r.append("krum_high")
        if sum(c == content[u] for c in content) > 1:
            r.append("duplicate")
        reasons.append(r)
    return stats, z, reasons


def close(got, want, rtol=1e-6, atol=1e-9):
    if got is None:
        return not np.isfinite(want)
    return abs(got - want) <= rtol * abs(want) + atol


def check(report, f, threshold):
    rep = json.load(open(report))
    deltas = rep["deltas"]
    n = len(deltas)
    if f is None:
        f = rep.get("byzantine", (n - 3) // 2)
    if threshold is None:
        threshold = rep.get("threshold", 3.5)
    stats, z, reasons = statistics([d["file"] for d in deltas], f, threshold)
    bad = 0
    for u, d in enumerate(deltas):
        for k in STATS:
            if not close(d[k], stats[k][u]):
                print("scan_ref.py: %s: %s %r, numpy %r" % (d["file"], k, d[k], stats[k][u]), file=sys.stderr)
                bad += 1
            if not close(d["z"][k], z[k][u], 1e-6, 1e-6):
                print("scan_ref.py: %s: z of %s %r, numpy %r" % (d["file"], k, d["z"][k], z[k][u]), file=sys.stderr)
                bad += 1
        if d["reasons"] != reasons[u] or d["flagged"] != bool(reasons[u]):
            print("scan_ref.py: %s: reasons %r (flagged %r), numpy %r" % (d["file"], d["reasons"], d["flagged"],
                                                                          reasons[u]), file=sys.stderr)
            bad += 1
    print("scan_ref.py: %d deltas, %d statistics compared, %d mismatches; %d flagged" %
          (n, n * 8, bad, sum(bool(r) for r in reasons)))
    return 1 if bad else 0


def expect(report, specs):
    deltas = json.load(open(report))["deltas"]
    bad = 0
    for spec in specs:
        prefix, want = spec.rsplit(":", 1)
        hit = [d for d in deltas if d["owner"].startswith(prefix)]
        if not hit:
            print("scan_ref.py: no delta owned by %s*" % prefix, file=sys.stderr)
            bad += 1
        for d in hit:
            rules = [] if want in ("clean", "flagged") else want.split(",")
            if d["flagged"] != (want != "clean") or any(r not in d["reasons"] for r in rules):
                print("scan_ref.py: %s (%s): flagged %r, expected %s (reasons %r, z %r)" %
                      (d["file"], d["owner"], d["flagged"], want, d["reasons"], d["z"]), file=sys.stderr)
                bad += 1
    return 1 if bad else 0


def opt(argv, name, conv, default):
    if name in argv:
        i = argv.index(name)
        val = conv(argv[i + 1])
        del argv[i:i + 2]
        return val
    return default


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, rest = argv[1], argv[2:]
    if cmd == "make":
        noise = opt(rest, "--noise", float, 0.1)
        dense_noise = opt(rest, "--dense-noise", float, 0.3)
        make(rest[0], rest[1], int(rest[2]), noise, dense_noise)
        return 0
    if cmd == "check":
        f = opt(rest, "--byzantine", int, None)
        t = opt(rest, "--threshold", float, None)
        return check(rest[0], f, t) | expect(rest[0], rest[1:])
    if cmd == "expect":
        return expect(rest[0], rest[1:])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
