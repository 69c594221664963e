#!/usr/bin/env python3
"""Bad inputs for tests/bitdelta/bad_input.sh, made with h5py from a good
checkpoint BASE (f32): bitdelta_bad.py KIND BASE OUT
  untied    tied_embeddings = 0 and an lm_head.weight (a tensor the base lacks)
  kvheads   n_kv_heads doubled: k/v projections of another shape
  nan       a NaN in layer 1's q_proj (a 1-bit tensor)
  inf       +Inf in model.norm.weight (a dense tensor)
  big       q_proj of layer 0 at +3e38 at [0, 1] (a base for:)
  overflow  q_proj of layer 0 at -3e38 at [0, 1] (the float32 delta from "big" overflows)
  bits      a delta file (OUT, already a copy of a good one) whose first signs dataset has a wrong shape"""
import shutil
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print("bitdelta_bad.py: %s" % e, file=sys.stderr)
    sys.exit(77)


def main(kind, base, out):
    if kind != "bits":
        shutil.copyfile(base, out)
    with h5py.File(out, "r+") as f:
        if kind == "bits":
            g = f["bits"][sorted(f["bits"])[0]]
            s = g["signs"][...]
            del g["signs"]
            g["signs"] = s[:, :0] if s.shape[1] > 1 else np.zeros((s.shape[0], 2), dtype=s.dtype)
            return 0
        del f.attrs["content_sha256"]
        t = f["tensors"]
        if kind == "untied":
            f.attrs["tied_embeddings"] = 0
            t["lm_head.weight"] = t["model.embed_tokens.weight"][...]
        elif kind == "kvheads":
            f.attrs["n_kv_heads"] = f.attrs["n_kv_heads"] * 2
            for k in list(t):
                if k.endswith(("k_proj.weight", "v_proj.weight")):
                    w = t[k][...]
                    del t[k]
                    t[k] = np.concatenate([w, w])
        elif kind == "nan":
            w = t["model.layers.1.self_attn.q_proj.weight"]
            a = w[...]
            a[3, 5] = np.nan
            w[...] = a
        elif kind == "inf":
            w = t["model.norm.weight"]
            a = w[...]
            a[7] = np.inf
            w[...] = a
        elif kind in ("big", "overflow"):
            w = t["model.layers.0.self_attn.q_proj.weight"]
            a = w[...]
            a[0, 1] = 3e38 if kind == "big" else -3e38
            w[...] = a
        else:
            print("unknown kind " + kind, file=sys.stderr)
            return 2
        # an edited file, as a tool that edits tensors leaves it (docs/formats.md):
        # no content_sha256 and no per-tensor digests, so readers reach the check under test
        for k in t:
            if "sha256" in t[k].attrs:
                del t[k].attrs["sha256"]
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
