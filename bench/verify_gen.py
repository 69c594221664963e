#!/usr/bin/env python3
"""Synthetic 7B-shaped checkpoints for bench/verify.sh: LAYERS decoder blocks
of the Llama 2 7B shapes (dim 4096, hidden 11008, 32 heads), bf16, and the
512-piece vocabulary and tokenizer of TEMPLATE (stories260K imported with
--tokenizer, so that eval --ppl can run); a base and a "fine-tune" (base +
small noise). Root attributes, the bf16 type and the tokenizer group are
copied from TEMPLATE; no content_sha256 (deltasoup reads such files without
a check): bench/verify.sh rewrites the base through deltasoup first.
usage: verify_gen.py TEMPLATE.h5 BASE.h5 FT.h5 [LAYERS]   (FT "-": the base only)
With FT "-" the matrices are cut from one block of 2^26 bf16 normal draws,
each at its own offset (fast: 13 GB in about a minute), not drawn anew; with
FAST=1 in the environment and an FT path, the same for the base, and the
fine-tune's matrices are the base's plus 0.1 x another slice of the block
(a base and a fine-tune in about two minutes)."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compress_gen import bf16, tensors  # noqa: E402  the same 7B shapes and bf16 rounding


def main(template, base, ft, layers=2):
    rng = np.random.default_rng(11)
    t = h5py.File(template, "r")
    tt = t["tensors/model.norm.weight"].id.get_type()
    files = [h5py.File(p, "w") for p in (base, ft) if p != "-"]
    for f in files:
        for k, v in t.attrs.items():
            if k != "content_sha256":
                f.attrs[k] = v
        f.attrs["dim"], f.attrs["hidden_dim"], f.attrs["n_layers"] = 4096, 11008, layers
        f.attrs["n_heads"], f.attrs["n_kv_heads"], f.attrs["vocab_size"] = 32, 32, 512
        f.attrs["max_seq_len"], f.attrs["tied_embeddings"] = 512, 1
        f.create_group("tensors")
        t.copy("tokenizer", f)
    block = None
    fast = len(files) == 1 or os.environ.get("FAST") == "1"
    if fast:  # a block of draws reused at offsets
        block = bf16(rng.standard_normal(1 << 26, dtype=np.float32) * np.float32(0.02))
        block = np.concatenate([block, block])
    for k, (name, shape) in enumerate(tensors(layers, vocab=512)):
        n = int(np.prod(shape))
        if block is not None and len(shape) == 2 and n <= 1 << 26:
            off = (k * 7919 * 4099) % (1 << 26)
            w = np.ascontiguousarray(block[off:off + n].reshape(shape))
            xs = [w]
            if len(files) > 1:
                off2 = (off + (1 << 25) + 12345) % (1 << 26)
                f32 = lambda u: (u.astype(np.uint32) << 16).view(np.float32)  # noqa: E731  bf16 bits -> f32
                d = f32(block[off2:off2 + n].reshape(shape))
                xs.append(bf16(f32(w) + d * np.float32(0.1)))
            for f, x in zip(files, xs):
                ds = h5py.h5d.create(f["tensors"].id, name.encode(), tt, h5py.h5s.create_simple(shape))
                ds.write(h5py.h5s.ALL, h5py.h5s.ALL, x, mtype=tt)
                ds.close()
            continue
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        if len(shape) == 1:
            w += 1
        xs = (w, w + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.002)) if len(files) > 1 else (w,)
        for f, x in zip(files, xs):
            ds = h5py.h5d.create(f["tensors"].id, name.encode(), tt, h5py.h5s.create_simple(shape))
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, bf16(x), mtype=tt)
            ds.close()
    for f in files:
        f.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
