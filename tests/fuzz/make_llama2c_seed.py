#!/usr/bin/python3
"""A tiny llama2.c legacy checkpoint for the fuzz corpora (tests/fuzz/llama2c_corpus,
and imported into the h5_model / h5_delta seeds): stories260K's layout with
dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 32, seq_len 4; the
weights are the first floats of data/models/stories260K/stories260K.bin,
scaled by SCALE (a second model for a delta). usage: make_llama2c_seed.py OUT [SCALE] [SHARED]"""
import os, struct, sys
import numpy as np

out = sys.argv[1]
scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
shared = int(sys.argv[3]) if len(sys.argv) > 3 else 1
dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 1, 2, 2, 32, 4
hs = dim // heads
n = (vocab * dim + layers * (dim + dim * dim + 2 * dim * kv * hs + dim * dim + dim + 3 * dim * hidden)
     + dim + seq * hs // 2 * 2 + (0 if shared else vocab * dim))
top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
src = np.fromfile(os.path.join(top, "data/models/stories260K/stories260K.bin"), dtype="<f4", offset=28, count=n)
with open(out, "wb") as f:
    f.write(struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq))
    f.write((src * np.float32(scale)).astype("<f4").tobytes())
