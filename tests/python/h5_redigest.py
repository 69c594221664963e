#!/usr/bin/python3
"""Recompute the per-tensor `sha256` attribute of datasets a test edited on
purpose (docs/formats.md "Per-tensor digests"), so that a reader's check of
what it is testing (a NaN scale, an Inf dense value) is reached instead of
the digest check. Written from the format's definition, not from the C code:

  entry digest = SHA-256(name NUL dtype NUL ndim:u32le dims:u64le... data LE)

Entry names: /tensors/NAME -> NAME; /bits/T/signs|scale -> T/signs|scale;
/dense/T -> T/dense.
usage: h5_redigest.py FILE DATASET...   (e.g. bits/b.weight/scale dense/c.dense)"""
import hashlib
import struct
import sys

import h5py
import numpy as np

FLOATS = {(4, (31, 23, 8, 0, 23), 127): "F32", (2, (15, 10, 5, 0, 10), 15): "F16",
          (2, (15, 7, 8, 0, 7), 127): "BF16"}


def dtype_name(ds):
    t = ds.id.get_type()
    if t.get_class() == h5py.h5t.FLOAT:
        return FLOATS[(t.get_size(), tuple(t.get_fields()), t.get_ebias())]
    if t.get_class() == h5py.h5t.INTEGER and t.get_size() == 8 and t.get_sign() == h5py.h5t.SGN_NONE:
        return "U64"
    raise SystemExit("h5_redigest: %s: unknown type" % ds.name)


def entry_name(path):
    p = path.strip("/").split("/")
    if p[0] == "tensors":
        return "/".join(p[1:])
    if p[0] == "bits":
        return "/".join(p[1:])
    if p[0] == "dense":
        return "/".join(p[1:]) + "/dense"
    raise SystemExit("h5_redigest: %s: not a tensor dataset" % path)


def raw_bytes(ds):
    size = ds.id.get_type().get_size()
    buf = np.empty(ds.shape, dtype="<u%d" % size)
    ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=ds.id.get_type())
    return buf.tobytes()


def main(path, names):
    with h5py.File(path, "r+") as f:
        for n in names:
            ds = f[n]
            h = hashlib.sha256(entry_name(n).encode() + b"\0" + dtype_name(ds).encode() + b"\0")
            h.update(struct.pack("<I", len(ds.shape)) + b"".join(struct.pack("<Q", d) for d in ds.shape))
            h.update(raw_bytes(ds))
            hexd = np.bytes_(h.hexdigest())
            if "sha256" in ds.attrs:
                ds.attrs.modify("sha256", hexd)  # keeps the attribute's stored type
            else:
                ds.attrs.create("sha256", hexd)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
