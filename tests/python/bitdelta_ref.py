#!/usr/bin/env python3
"""Independent numpy reference for BitDelta files (tests/bitdelta/*.sh).

Reads .h5 / .bd.h5 files with h5py only (no deltasoup code) and checks:
  perturb BASE OUT SEED [--zero-frac F]  write a "fine-tune": BASE + noise
  check BASE FT DELTA APPLIED [--scale tensor|row|col] [--bits-for GLOB]... [--dense-for GLOB]...
        signs == (F - B >= 0) packed 64 to a little-endian word, zero padding;
        scales == mean |F - B| (per tensor / row / column); dense deltas ==
        round(F - B); APPLIED == round(B + g(2b - 1)) (dense: round(B + d));
        base_sha256 / content_sha256 recomputed from the raw stored bytes;
        the compression ratio counted as docs/bitdelta.md says.
  hash FILE                              print the recomputed content hash
"""
import fnmatch
import json
import hashlib
import re
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # the test is skipped, not failed, without them
    print("bitdelta_ref.py: %s" % e, file=sys.stderr)
    sys.exit(77)

DEFAULT = [re.compile(r"^model\.layers\.[^/]*\.self_attn\.[^/]*_proj\.weight$"),
           re.compile(r"^model\.layers\.[^/]*\.mlp\.[^/]*_proj\.weight$")]


def raw(ds):
    """The stored bytes of a dataset, as unsigned integers of its width."""
    size = ds.id.get_type().get_size()
    arr = np.empty(ds.shape, dtype={2: "<u2", 4: "<u4", 8: "<u8"}[size])
    ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, arr, mtype=ds.id.get_type())
    return arr


def dtype_name(ds):
    t = ds.id.get_type()
    if isinstance(t, h5py.h5t.TypeIntegerID):
        return "U64"
    size = t.get_size()
    if size == 4:
        return "F32"
    return "BF16" if t.get_fields()[2] == 8 else "F16"  # (spos, epos, esize, mpos, msize)


def as_f32(ds):
    name = dtype_name(ds)
    r = raw(ds)
    if name == "F32":
        return r.view("<f4").astype(np.float32)
    if name == "BF16":
        return (r.astype(np.uint32) << 16).view("<f4")
    return r.view("<f2").astype(np.float32)


def round_to(x, name):
    """float32 -> stored bits of dtype name (round to nearest even)."""
    x = np.asarray(x, dtype=np.float32)
    if name == "F32":
        return x.view("<u4")
    if name == "F16":
        return x.astype("<f2").view("<u2")
    u = x.view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def bits_to_f32(bits, name):
    if name == "F32":
        return bits.view("<f4")
    if name == "BF16":
        return (bits.astype(np.uint32) << 16).view("<f4")
    return bits.view("<f2").astype(np.float32)


def entry_digest(name, dname, shape, data):
    h = hashlib.sha256()
    h.update(name.encode() + b"\0" + dname.encode() + b"\0")
    h.update(len(shape).to_bytes(4, "little"))
    for d in shape:
        h.update(int(d).to_bytes(8, "little"))
    h.update(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
    return name, h.digest()


def content_hash(entries):
    h = hashlib.sha256()
    for _, d in sorted(entries, key=lambda e: e[0].encode()):
        h.update(d)
    return h.hexdigest()


def model_hash(path):
    with h5py.File(path, "r") as f:
        t = f["tensors"]
        return content_hash([entry_digest(k, dtype_name(t[k]), t[k].shape, raw(t[k])) for k in t])


def delta_hash(f):
    e = []
    for k in f["bits"]:
        g = f["bits"][k]
        e.append(entry_digest(k + "/signs", "U64", g["signs"].shape, raw(g["signs"])))
        e.append(entry_digest(k + "/scale", "F32", g["scale"].shape, raw(g["scale"])))
    for k in f["dense"]:
        d = f["dense"][k]
        e.append(entry_digest(k + "/dense", dtype_name(d), d.shape, raw(d)))
    return content_hash(e)


def pack_signs(d):
    rows, cols = d.shape
    words = (cols + 63) // 64
    b = np.zeros((rows, words * 64), dtype=np.uint64)
    b[:, :cols] = (d >= 0)
    b = b.reshape(rows, words, 64) << np.arange(64, dtype=np.uint64)
    return np.bitwise_or.reduce(b, axis=2)


def perturb(base, out, seed, zero_frac):
    import shutil
    shutil.copyfile(base, out)
    rng = np.random.default_rng(seed)
    with h5py.File(out, "r+") as f:
        del f.attrs["content_sha256"]  # the data changes below
        for k in f["tensors"]:
            f["tensors"][k].attrs.pop("sha256", None)  # and its per-tensor digests (docs/formats.md)
        for k in f["tensors"]:
            ds = f["tensors"][k]
            w = as_f32(ds)
            noise = rng.standard_normal(w.shape).astype(np.float32) * np.float32(0.01 * (1 + np.std(w)))
            noise[rng.random(w.shape) < zero_frac] = 0  # delta exactly 0: bit 1
            newbits = round_to(w + noise, dtype_name(ds))
            ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, newbits, mtype=ds.id.get_type())


def check(base, ft, delta, applied, scale, bits_for, dense_for):
    fails = []

    def fail(msg):
        fails.append(msg)
        print("MISMATCH: " + msg, file=sys.stderr)

    fb, ff, fd, fa = (h5py.File(p, "r") for p in (base, ft, delta, applied))
    if fd.attrs["format"].decode() != "deltasoup.bitdelta":
        fail("format attribute")
    if fd.attrs["base_sha256"].decode() != model_hash(base):
        fail("base_sha256 %s != recomputed %s" % (fd.attrs["base_sha256"].decode(), model_hash(base)))
    if fd.attrs["content_sha256"].decode() != delta_hash(fd):
        fail("delta content_sha256 != recomputed")
    if fa.attrs["content_sha256"].decode() != model_hash(applied):
        fail("applied content_sha256 != recomputed")
    full = stored = 0
    for k in fb["tensors"]:
        b, f = fb["tensors"][k], ff["tensors"][k]
        dname = dtype_name(b)
        wb, wf = as_f32(b), as_f32(f)
        d = wf - wb  # float32, as the contract says
        esize = {"F32": 4, "F16": 2, "BF16": 2}[dname]
        full += d.size * esize
        coded = (d.ndim == 2 and any(p.match(k) for p in DEFAULT)) or any(fnmatch.fnmatchcase(k, g) for g in bits_for)
        coded = coded and not any(fnmatch.fnmatchcase(k, g) for g in dense_for)
        if coded != (k in fd["bits"]):
            fail("%s: coded=%s expected %s" % (k, k in fd["bits"], coded))
            continue
        if coded:
            g = fd["bits"][k]
            signs, sc = raw(g["signs"]), raw(g["scale"]).view("<f4")
            if not np.array_equal(signs, pack_signs(d)):
                fail("%s: sign bits differ" % k)
            ad = np.abs(d.astype(np.float64))
            want = {"tensor": np.array([ad.mean()]), "row": ad.mean(axis=1), "col": ad.mean(axis=0)}[scale]
            if sc.shape != want.shape or not np.allclose(sc, want, rtol=1e-6, atol=0):
                fail("%s: scales differ from mean |delta| (max rel err %g)" % (k, np.max(np.abs(sc - want) / want)))
            gg = np.float32(sc[0]) if scale == "tensor" else (sc[:, None] if scale == "row" else sc[None, :])
            sgn = np.where(d >= 0, np.float32(1), np.float32(-1))
            ref = (wb + (gg * sgn).astype(np.float32)).astype(np.float32)
            stored += signs.size * 8 + sc.size * 4
        else:
            dd = raw(fd["dense"][k])
            if not np.array_equal(dd, round_to(d, dname)):
                fail("%s: dense delta differs from round(F - B)" % k)
            ref = (wb + bits_to_f32(round_to(d, dname), dname)).astype(np.float32)
            stored += d.size * esize
        got = as_f32(fa["tensors"][k])
        refr = bits_to_f32(round_to(ref, dname), dname)
        # float rounding only: one ulp of the stored dtype (scales may differ in the last f32 bit)
        ulp = {"F32": 2.0 ** -23, "F16": 2.0 ** -10, "BF16": 2.0 ** -7}[dname]
        err = np.abs(got.astype(np.float64) - refr) - ulp * np.abs(refr) - 1e-30
        if got.shape != refr.shape or np.any(err > 0):
            fail("%s: applied model differs from numpy B + g(2b-1) (max abs err %g)" % (k, np.max(np.abs(got - refr))))
    print("ratio %.6f" % (full / stored))
    return 1 if fails else 0


def stats(delta, report):
    """inspect's per-tensor min/max/mean/std of a delta file against numpy:
    coded entries expanded to g (2b - 1) with the bits unpacked here, dense
    entries as stored; float64 statistics over all values."""
    fd = h5py.File(delta, "r")
    rows = {t["name"]: t for t in json.load(open(report))["tensors"]}
    bad = 0
    for k in list(fd["bits"]) + list(fd["dense"]):
        if k in fd["bits"]:
            g = fd["bits"][k]
            r, c = int(g.attrs["rows"]), int(g.attrs["cols"])
            bits = np.unpackbits(raw(g["signs"]).astype("<u8").view(np.uint8), bitorder="little").reshape(r, -1)[:, :c]
            sc = raw(g["scale"]).view("<f4").astype(np.float64)
            mode = g.attrs["scale_mode"].decode() if isinstance(g.attrs["scale_mode"], bytes) else str(g.attrs["scale_mode"])
            gg = sc[0] if mode == "tensor" else (sc[:, None] if mode == "row" else sc[None, :])
            v = gg * (2.0 * bits - 1.0)
        else:
            v = as_f32(fd["dense"][k]).astype(np.float64)
        want = [v.min(), v.max(), v.mean(), v.std()]
        got = [rows[k][n] for n in ("min", "max", "mean", "std")]
        tol = 1e-9 * max(abs(want[0]), abs(want[1]), 1e-30)
        if any(abs(a - b) > tol for a, b in zip(got, want)):
            print("MISMATCH: %s: inspect min/max/mean/std %s, numpy %s" % (k, got, want), file=sys.stderr)
            bad = 1
    return bad


def main(argv):
    if argv[1] == "stats":
        return stats(argv[2], argv[3])
    if argv[1] == "perturb":
        zf = float(argv[argv.index("--zero-frac") + 1]) if "--zero-frac" in argv else 0.01
        perturb(argv[2], argv[3], int(argv[4]), zf)
        return 0
    if argv[1] == "hash":
        with h5py.File(argv[2], "r") as f:
            print(delta_hash(f) if "bits" in f else model_hash(argv[2]))
        return 0
    if argv[1] == "check":
        scale, bits_for, dense_for, rest = "tensor", [], [], argv[6:]
        for i, a in enumerate(rest):
            if a == "--scale":
                scale = rest[i + 1]
            if a == "--bits-for":
                bits_for.append(rest[i + 1])
            if a == "--dense-for":
                dense_for.append(rest[i + 1])
        return check(argv[2], argv[3], argv[4], argv[5], scale, bits_for, dense_for)
    print("usage: see the docstring", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
