#!/usr/bin/python3
"""Independent checks of fit-scales outputs (tests/fitscales/*.sh), with
h5py, numpy and the PyTorch float64 Llama of llama_ref.py only.

  fitscales_check.py output IN.bd.h5 OUT.bd.h5 CALIB OBJECTIVE STEPS
      OUT keeps IN's signs and dense deltas byte for byte and its base_sha256,
      has new scales, content_sha256 recomputed from its stored bytes, and
      records the fit (scale_fit = OBJECTIVE, steps, SHA-256 of CALIB, ...).
  fitscales_check.py quality BASE.h5 FT.h5 TOK.bin TEXT SEQ_LEN MEAN.bd.h5 FIT.bd.h5 [MEAN2 FIT2 ...]
      On TEXT (split into documents, tokenized with BOS by bpe_ref.py,
      concatenated, cut into at most 24 windows of SEQ_LEN): per-token
      KL(p_ft || p) and NLL of base + delta for each delta (applied here in
      numpy from the stored signs, scales and dense parts) and the
      fine-tune's NLL. Passes when each FIT has a lower KL than its MEAN (the
      NLLs are printed: on text the fine-tune never saw they move little and
      either way, docs/fit-scales.md).
  fitscales_check.py scales A.bd.h5 B.bd.h5 ATOL
      every scale of A and B agrees within ATOL (absolute; 0: bit for bit).
      Runs at different rank counts differ by float rounding, which Adam's
      per-scale normalisation turns into differences of a small fraction of
      its step lr (largest where a scale's gradient changes sign from step to
      step), so tests pass ATOL as a fraction of lr * steps.
Exits 77 when h5py/numpy/torch are missing, 1 on a failed check.
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import h5py
    import numpy as np
    import torch
except ImportError as e:
    print("fitscales_check.py: %s, skipping" % e, file=sys.stderr)
    sys.exit(77)
import bitdelta_ref  # noqa: E402
import bpe_ref  # noqa: E402
from llama_ref import F64, forward, load_h5  # noqa: E402


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def attr(f, k):
    v = f.attrs[k]
    return v.decode() if isinstance(v, bytes) else v


def check_output(src, out, calib, objective, steps):
    with h5py.File(src, "r") as a, h5py.File(out, "r") as b:
        if sorted(a["bits"]) != sorted(b["bits"]) or sorted(a["dense"]) != sorted(b["dense"]):
            fail("tensor sets differ")
        moved = 0
        for k in a["bits"]:
            if not np.array_equal(bitdelta_ref.raw(a["bits"][k]["signs"]), bitdelta_ref.raw(b["bits"][k]["signs"])):
                fail("%s: signs changed" % k)
            if attr(a["bits"][k], "scale_mode") != attr(b["bits"][k], "scale_mode"):
                fail("%s: scale_mode changed" % k)
            sa, sb = a["bits"][k]["scale"][()], b["bits"][k]["scale"][()]
            if sa.shape != sb.shape or not np.all(np.isfinite(sb)):
                fail("%s: scales shape %s -> %s or not finite" % (k, sa.shape, sb.shape))
            moved += int(np.sum(sa != sb))
        if moved == 0:
            fail("no scale moved")
        for k in a["dense"]:
            if not np.array_equal(bitdelta_ref.raw(a["dense"][k]), bitdelta_ref.raw(b["dense"][k])):
                fail("%s: dense delta changed" % k)
        want = {"scale_fit": objective, "base_sha256": attr(a, "base_sha256"),
                "scale_fit_calib_sha256": hashlib.sha256(open(calib, "rb").read()).hexdigest(),
                "scale_fit_input_sha256": attr(a, "content_sha256"), "scale_fit_from": attr(a, "scale_fit"),
                "content_sha256": bitdelta_ref.delta_hash(b), "scale_fit_steps": int(steps)}
        for k, v in want.items():
            if attr(b, k) != v:
                fail("attribute %s = %r, expected %r" % (k, attr(b, k), v))
        for k in ("scale_fit_lr", "scale_fit_objective_initial", "scale_fit_objective_final"):
            if not np.isfinite(float(attr(b, k))):
                fail("attribute %s missing or not finite" % k)
        if attr(b, "content_sha256") == attr(a, "content_sha256"):
            fail("content hash unchanged")
    print("ok: %s keeps the signs and dense parts of %s, %d scales moved, fit recorded" % (out, src, moved))


def apply_delta(base, path):
    w = {k: v.astype(np.float64) for k, v in base.items()}
    with h5py.File(path, "r") as f:
        for k in f["bits"]:
            g = f["bits"][k]
            rows, cols = w[k].shape
            words = bitdelta_ref.raw(g["signs"]).astype(np.uint64)
            bits = ((words[:, :, None] >> np.arange(64, dtype=np.uint64)) & 1).reshape(rows, -1)[:, :cols]
            s = g["scale"][()].astype(np.float32).astype(np.float64)
            mode = attr(g, "scale_mode")
            s = s[0] if mode == "tensor" else (s[:, None] if mode == "row" else s[None, :])
            w[k] = w[k] + s * (2.0 * bits - 1.0)
        for k in f["dense"]:
            w[k] = w[k] + bitdelta_ref.as_f32(f["dense"][k]).astype(np.float64)
    return {k: torch.tensor(v, dtype=F64) for k, v in w.items()}


def windows(tok_path, text_path, T):
    pieces, scores, lookup = bpe_ref.load(tok_path)
    text = open(text_path, "rb").read().decode()
    docs = [d.strip() for d in text.replace("<|endoftext|>", "\n\n").split("\n\n") if d.strip()]
    stream = []
    for d in docs:
        stream += bpe_ref.encode(d.encode(), pieces, scores, lookup)
    n = len(stream) // T
    return torch.tensor(np.array(stream[:n * T]).reshape(n, T))


def quality(base_p, ft_p, tok_p, text_p, T, *pairs):
    cfg, base = load_h5(base_p)
    _, ft = load_h5(ft_p)
    toks = windows(tok_p, text_p, int(T))[:24]
    with torch.no_grad():
        lt = torch.log_softmax(forward(cfg, {k: torch.tensor(v, dtype=F64) for k, v in ft.items()}, toks), -1)

        def stats(W):
            lp = torch.log_softmax(forward(cfg, W, toks), -1)
            kl = float((lt.exp() * (lt - lp)).sum(-1).mean())
            nll = float(-lp[:, :-1].gather(-1, toks[:, 1:, None]).mean())
            return kl, nll
        nll_ft = float(-lt[:, :-1].gather(-1, toks[:, 1:, None]).mean())
        for mean_p, fit_p in zip(pairs[0::2], pairs[1::2]):
            kl_m, nll_m = stats(apply_delta(base, mean_p))
            kl_f, nll_f = stats(apply_delta(base, fit_p))
            print("%s: held-out %s, %d windows of %d: KL %.5f (%s) -> %.5f; NLL %.4f -> %.4f (fine-tune %.4f)" % (
                fit_p, os.path.basename(text_p), toks.shape[0], int(T), kl_m, mean_p, kl_f, nll_m, nll_f, nll_ft))
            if not kl_f < kl_m:
                fail("%s did not lower the held-out KL below %s's" % (fit_p, mean_p))


def scales(a_p, b_p, atol):
    atol = float(atol)
    worst = 0.0
    with h5py.File(a_p, "r") as a, h5py.File(b_p, "r") as b:
        for k in a["bits"]:
            if atol == 0:
                if bitdelta_ref.raw(a["bits"][k]["scale"]).tobytes() != bitdelta_ref.raw(b["bits"][k]["scale"]).tobytes():
                    fail("%s: scales of %s and %s differ (bit for bit)" % (k, a_p, b_p))
            else:
                sa, sb = (f["bits"][k]["scale"][()].astype(np.float64) for f in (a, b))
                worst = max(worst, float(np.max(np.abs(sa - sb))))
        if atol == 0 and attr(a, "content_sha256") != attr(b, "content_sha256"):
            fail("content hashes of %s and %s differ" % (a_p, b_p))
    if worst > atol:
        fail("scales of %s and %s differ by up to %.3g (> %g)" % (a_p, b_p, worst, atol))
    print("ok: scales of %s and %s agree (%s)" % (a_p, b_p, "bit for bit" if atol == 0 else
                                                 "max difference %.3g, tolerance %g" % (worst, atol)))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "output" and len(argv) == 7:
        check_output(*argv[2:])
    elif cmd == "quality" and len(argv) >= 9 and len(argv) % 2 == 1:
        quality(*argv[2:])
    elif cmd == "scales" and len(argv) == 5:
        scales(*argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
