"""Independent check of a deltasoup HDF5 model checkpoint with h5py/torch.

usage: check_h5_bf16.py MODEL.h5 REF.bin [INSPECT.json ...]
(the inspect reports may come from other rank counts and from copies of the
model written at other rank counts: they must all agree but for "file")

REF.bin holds each tensor's source values (float32 LE, tensors in name
order). Checks, without any deltasoup code:
- the root attributes and the on-disk types of docs/formats.md (bf16: an
  IEEE-like 16-bit float, sign 15, exponent 7..14 bias 127, mantissa 0..6);
- that HDF5's own conversion to float32 (ds.astype('f4')) gives exactly the
  source values rounded by torch to the tensor's dtype (round to nearest even);
- the content hash: SHA-256 over the entry digests in name order, an entry
  digest = SHA-256(name NUL dtype NUL ndim:u32 dims:u64... data LE), equal to
  the recorded content_sha256 and to what `deltasoup inspect --json` printed;
- inspect's per-tensor min/max (exact) and mean/std (numpy, float64).
Exit 0 ok, 1 mismatch, 77 when h5py/torch/numpy are missing.
"""
import hashlib
import json
import struct
import sys

try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:  # skip, not fail, where the reference stack is absent
    print("skip: %s" % e)
    sys.exit(77)

FIELDS = {  # (size, (spos, epos, esize, mpos, msize), ebias)
    "F32": (4, (31, 23, 8, 0, 23), 127),
    "F16": (2, (15, 10, 5, 0, 10), 15),
    "BF16": (2, (15, 7, 8, 0, 7), 127),
}
TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def fail(msg):
    print("check_h5_bf16: FAIL: " + msg)
    sys.exit(1)


def dtype_of(ds):
    t = ds.id.get_type()
    if t.get_class() != h5py.h5t.FLOAT:
        fail("%s: not a float type" % ds.name)
    for name, (size, fields, ebias) in FIELDS.items():
        if t.get_size() == size and tuple(t.get_fields()) == fields and t.get_ebias() == ebias:
            return name
    fail("%s: unknown float layout %s" % (ds.name, t.get_fields()))


def stored_bytes(dt, f4):
    """The element bytes in the stored dtype, from exact float32 values."""
    if dt == "F32":
        return f4.astype("<f4").tobytes()
    if dt == "F16":
        return f4.astype("<f2").tobytes()
    return (f4.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    path, ref_path, inspect_files = sys.argv[1], sys.argv[2], sys.argv[3:]
    ref = np.fromfile(ref_path, dtype="<f4")
    f = h5py.File(path, "r")
    a = f.attrs
    if attr_str(a["format"]) != "deltasoup.model" or int(a["format_version"]) != 1:
        fail("format attributes: %r %r" % (a["format"], a["format_version"]))
    if attr_str(a["architecture"]) != "llama":
        fail("architecture")
    cfg = {k: a[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                             "max_seq_len", "norm_eps", "rope_theta", "tied_embeddings")}
    if float(cfg["norm_eps"]) != 1e-5 or float(cfg["rope_theta"]) != 10000.0:
        fail("float config attributes are not their shortest decimal: %r" % cfg)
    names = sorted(f["tensors"].keys(), key=lambda s: s.encode())
    off = 0
    digests = []
    stats = {}
    seen = set()
    for name in names:
        ds = f["tensors"][name]
        dt = dtype_of(ds)
        seen.add(dt)
        n = int(np.prod(ds.shape))
        src = torch.from_numpy(ref[off:off + n].copy()).reshape(ds.shape)
        off += n
        want = src.to(TORCH[dt]).to(torch.float32).numpy()
        got = ds.astype("f4")[()]
        if got.view("<u4").tobytes() != want.view("<u4").tobytes():
            bad = np.flatnonzero(got.view("<u4") != want.view("<u4"))[0]
            fail("%s (%s): element %d: file %r, torch %r" % (name, dt, bad, got.flat[bad], want.flat[bad]))
        h = hashlib.sha256()
        h.update(name.encode() + b"\0" + dt.encode() + b"\0")
        h.update(struct.pack("<I", len(ds.shape)) + b"".join(struct.pack("<Q", d) for d in ds.shape))
        h.update(stored_bytes(dt, got))
        digests.append(h.digest())
        v = got.astype(np.float64)
        stats[name] = (dt, list(ds.shape), v.min(), v.max(), v.mean(), v.std())
    if off != ref.size:
        fail("reference has %d values, the tensors %d" % (ref.size, off))
    if seen != set(FIELDS):
        fail("test model should mix F32, F16 and BF16, has %s" % sorted(seen))
    content = hashlib.sha256(b"".join(digests)).hexdigest()
    recorded = attr_str(a["content_sha256"])
    if recorded != content:
        fail("content_sha256 recorded %s, Python computes %s" % (recorded, content))
    tok = f["tokenizer"]
    offs, data = tok["offsets"][()], tok["bytes"][()]
    if offs[0] != 0 or offs[-1] != data.size or np.any(np.diff(offs) < 0) or tok["scores"].shape[0] + 1 != offs.size:
        fail("tokenizer offsets")
    reports = [json.load(open(p)) for p in inspect_files]
    for p, rep in zip(inspect_files, reports):
        # Rank count and writer must not matter: all reports agree but for "file".
        if dict(rep, file=None) != dict(reports[0], file=None):
            fail("%s differs from %s" % (p, inspect_files[0]))
        if rep["content_sha256"] != {"recorded": content, "computed": content, "match": True}:
            fail("%s: content_sha256 %r, Python computes %s" % (p, rep["content_sha256"], content))
        if [t["name"] for t in rep["tensors"]] != names:
            fail("%s: tensor list" % p)
        for t in rep["tensors"]:
            dt, shape, lo, hi, mean, std = stats[t["name"]]
            if t["dtype"] != dt or t["shape"] != shape or t["min"] != lo or t["max"] != hi:
                fail("%s: %s: dtype/shape/min/max %r vs %r" % (p, t["name"], t, stats[t["name"]]))
            if abs(t["mean"] - mean) > 1e-9 * (1 + abs(mean)) or abs(t["std"] - std) > 1e-9 * (1 + std):
                fail("%s: %s: mean/std %r %r vs numpy %r %r" % (p, t["name"], t["mean"], t["std"], mean, std))
        if rep["config"]["dim"] != int(cfg["dim"]) or rep["tokenizer"]["vocab_size"] != tok["scores"].shape[0]:
            fail("%s: config/tokenizer" % p)
    print("check_h5_bf16: ok: %d tensors (%s), content %s" % (len(names), ", ".join(sorted(seen)), content))


main()
