#!/usr/bin/env python3
"""Synthetic 1-bit deltas for bench/aggregate_bench.sh and
bench/aggregate_7b.sh: N users, each a shared random sign pattern with 1/8
of the bits flipped (the AND of three random words) and per-tensor scale
0.5..1.5. Root attributes, the group and dataset layout (and the BF16 type
of a dense delta) are copied from TEMPLATE (a delta deltasoup wrote), so the
files are exactly what deltasoup reads; each file records its real
content_sha256 and per-dataset sha256 digests (docs/formats.md "Content
hash"), so builds that verify on read accept them and older builds too.
  TENSORS ROWS COLS: TENSORS coded tensors of ROWS x COLS, no dense part
    (default 8 4096 4096).
  llama7b BLOCKS: BLOCKS Llama-7B decoder blocks as a BF16 model's delta:
    q,k,v,o 4096x4096, gate,up 11008x4096, down 4096x11008 coded; the two
    RMSNorm weights [4096] dense (BF16, small random values).
usage: aggregate_gen.py TEMPLATE.bd.h5 OUTDIR N [TENSORS ROWS COLS | llama7b BLOCKS]"""
import hashlib
import os
import struct
import sys

import h5py
import numpy as np

DIM, HIDDEN = 4096, 11008
BLOCK_CODED = [("self_attn.q_proj", DIM, DIM), ("self_attn.k_proj", DIM, DIM), ("self_attn.v_proj", DIM, DIM),
               ("self_attn.o_proj", DIM, DIM), ("mlp.gate_proj", HIDDEN, DIM), ("mlp.up_proj", HIDDEN, DIM),
               ("mlp.down_proj", DIM, HIDDEN)]
BLOCK_DENSE = ["input_layernorm", "post_attention_layernorm"]
# Llama-7B's config, so the files read as deltas of that model.
LLAMA7B = {"dim": DIM, "hidden_dim": HIDDEN, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32,
           "vocab_size": 32000, "max_seq_len": 4096, "tied_embeddings": 0}


def layout(args):
    """(coded [(name, rows, cols)], dense [(name, length)], source dtype, config overrides)."""
    if args and args[0] == "llama7b":
        blocks = int(args[1])
        coded = [("model.layers.%d.%s.weight" % (b, t), r, c) for b in range(blocks) for t, r, c in BLOCK_CODED]
        dense = [("model.layers.%d.%s.weight" % (b, t), DIM) for b in range(blocks) for t in BLOCK_DENSE]
        return sorted(coded), sorted(dense), b"BF16", LLAMA7B
    nt, rows, cols = (int(x) for x in (args[:3] if args else (8, 4096, 4096)))
    return [("t%02d.weight" % i, rows, cols) for i in range(nt)], [], None, {}


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns (round to nearest even)."""
    u = x.astype("<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def entry_digest(name, dtype, shape, raw):
    """docs/formats.md: SHA-256(name NUL dtype NUL ndim:u32le dims:u64le... data)."""
    h = hashlib.sha256(name.encode() + b"\0" + dtype.encode() + b"\0")
    h.update(struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape))
    h.update(raw)
    return h.digest()


def main():
    tmpl, outdir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    coded, dense, dtype, config = layout(sys.argv[4:])
    assert all(c % 64 == 0 for _, _, c in coded)
    rng = np.random.default_rng(1)
    truth = [rng.integers(0, 2**64, size=(r, c // 64), dtype=np.uint64) for _, r, c in coded]
    with h5py.File(tmpl, "r") as t:
        root = {k: t.attrs[k] for k in t.attrs}
        gattrs = {k: t["bits/a.weight"].attrs[k] for k in t["bits/a.weight"].attrs}
        bf16 = t["dense/d.norm"].id.get_type().copy()  # deltasoup's BF16 file type
    root.update({k: np.int32(v) for k, v in config.items()})
    if dtype:
        gattrs["dtype"] = np.bytes_(dtype)
    for u in range(n):
        path = os.path.join(outdir, "u%03d.bd.h5" % u)
        with h5py.File(path, "w") as f:
            for k, v in root.items():
                f.attrs[k] = v
            f.attrs["owner"] = np.bytes_("user%03d" % u)
            bits, dgroup = f.create_group("bits"), f.create_group("dense")
            digests = {}

            def record(ds, entry, dtype, raw):
                d = entry_digest(entry, dtype, ds.shape, raw)
                ds.attrs.create("sha256", np.bytes_(d.hex()))
                digests[entry] = d
            for (name, rows, cols), tr in zip(coded, truth):
                g = bits.create_group(name)
                for k, v in gattrs.items():
                    g.attrs[k] = v
                g.attrs["rows"], g.attrs["cols"] = np.int64(rows), np.int64(cols)
                g.attrs["scale_mode"] = np.bytes_("tensor")
                shape = (rows, cols // 64)
                flip = (rng.integers(0, 2**64, size=shape, dtype=np.uint64)
                        & rng.integers(0, 2**64, size=shape, dtype=np.uint64)
                        & rng.integers(0, 2**64, size=shape, dtype=np.uint64))
                signs = (tr ^ flip).astype("<u8")
                scale = np.array([0.5 + rng.random()], dtype="<f4")
                record(g.create_dataset("signs", data=signs), name + "/signs", "U64", signs.tobytes())
                record(g.create_dataset("scale", data=scale), name + "/scale", "F32", scale.tobytes())
            for name, length in dense:
                d = h5py.h5d.create(dgroup.id, name.encode(), bf16, h5py.h5s.create_simple((length,)))
                v = bf16_bits(rng.normal(0, 1e-3, length))
                d.write(h5py.h5s.ALL, h5py.h5s.ALL, v, mtype=bf16)
                record(dgroup[name], name + "/dense", "BF16", v.tobytes())
            content = hashlib.sha256(b"".join(digests[e] for e in sorted(digests, key=lambda e: e.encode())))
            f.attrs["content_sha256"] = np.bytes_(content.hexdigest())


if __name__ == "__main__":
    main()
