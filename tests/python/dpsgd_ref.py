#!/usr/bin/python3
"""Independent reference for DP-SGD (src/dp_sgd.h, docs/privacy.md), driving
tests/privacy/dpsgd_probe:

  dpsgd_ref.py PROBE stories260K.bin

- clipping and the noise-free sum: per-example gradients of the mean
  cross-entropy of stories260K on windows of a token stream, computed one
  example at a time by PyTorch in float64 (tests/python/llama_ref.py's model,
  loaded from the llama2.c file by llama_ref's own loader), their flat L2
  norms over every tensor, the factor min(1, C / (norm + 1e-6)) and the sum:
  norms to 1e-5 relative, the sum to 1e-5 of its largest magnitude, once
  with C above every norm (no clipping) and once with C the median norm
  (half the examples clipped);
- the generator: splitmix64, the keys, Box-Muller and the Poisson sample as
  src/dp_sgd.h documents them, re-implemented here, to 1e-12;
- the noise: 50 steps of 20000 parameters (1e6 draws) with no example give
  a gradient of mean 0 and standard deviation S C / B (within 5 standard
  errors and 1%), no correlation between steps, and the same units when the
  parameters are shared out in three slices (the probe checks that).
Exits 77 when torch is missing, 1 on a mismatch."""
import math
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    import llama_ref as L
except ImportError:
    print("dpsgd_ref.py: numpy/torch not available, skipping", file=sys.stderr)
    sys.exit(77)

FAILED = []
M64 = (1 << 64) - 1


def report(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILED.append(what)


def mix(k, c):
    z = (k + (c + 1) * 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def key(seed, step, domain):
    return mix(mix(seed, domain), step)


def normal(seed, step, j):
    k = key(seed, step, 2)
    u1 = ((mix(k, 2 * j) >> 11) + 1.0) * 2.0 ** -53
    u2 = (mix(k, 2 * j + 1) >> 11) * 2.0 ** -53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def uniform(seed, step, i):
    return (mix(key(seed, step, 1), i) >> 11) * 2.0 ** -53


def per_example(cfg, w, stream, T, idx):
    """float64 per-example gradients (flattened in engine order) of the mean CE."""
    names = L.tensor_names(cfg)
    out = []
    for i in idx:
        W = L.to_torch(w, grad=True)
        win = torch.tensor(stream[i * T:i * T + T + 1], dtype=torch.long)
        z = L.forward(cfg, W, win[None, :T])[0]
        loss = torch.nn.functional.cross_entropy(z, win[1:])
        loss.backward()
        out.append(np.concatenate([W[n].grad.numpy().reshape(-1) for n in names]))
    return np.array(out)


def check_clip(probe, stories, tmp):
    cfg, w = L.load_llama2c(stories)
    rng = np.random.default_rng(17)
    T, nex = 32, 7
    stream = rng.integers(3, cfg["vocab_size"], nex * T + 1).astype("<i4")
    stream[::T] = 1  # a BOS at the start of every window
    idx = [0, 2, 3, 5, 6]
    raw, sp, out = (os.path.join(tmp, n) for n in ("w.raw", "stream.bin", "out.bin"))
    L.write_raw(raw, cfg, w)
    stream.tofile(sp)
    G = per_example(cfg, w, stream, T, idx)
    norms = np.sqrt((G ** 2).sum(1))
    for tag, C in (("no clipping", 1e3 * norms.max()), ("C = median norm", float(np.median(norms)))):
        subprocess.run([probe, "clip", raw, sp, str(T), repr(C), out] + [str(i) for i in idx], check=True)
        got = np.fromfile(out, dtype="<f8")
        gn, gs = got[:len(idx)], got[len(idx):]
        f = np.minimum(1.0, C / (norms + 1e-6))
        want = (G * f[:, None]).sum(0)
        rel_n = float(np.abs(gn - norms).max() / norms.min())
        report(rel_n < 1e-5, "%s: %d per-example norms (%.4g..%.4g), max relative err %.2e" %
               (tag, len(idx), norms.min(), norms.max(), rel_n))
        err = float(np.abs(gs - want).max() / np.abs(want).max())
        report(gs.size == want.size and err < 1e-5,
               "%s: clipped sum of %d parameters (%d clipped), max err %.2e of its largest magnitude" %
               (tag, want.size, int((f < 1).sum()), err))


def check_draws(probe, tmp):
    seed, step, n, q = 1234567, 42, 300, 0.1
    out = os.path.join(tmp, "draws.bin")
    subprocess.run([probe, "draws", str(seed), str(step), str(n), repr(q), out], check=True)
    b = open(out, "rb").read()
    got = np.frombuffer(b[:16 * n], dtype="<f8")
    c = struct.unpack("<q", b[16 * n:16 * n + 8])[0]
    gidx = list(np.frombuffer(b[16 * n + 8:], dtype="<i8"))
    wn = np.array([normal(seed, step, j) for j in range(n)])
    wu = np.array([uniform(seed, step, j) for j in range(n)])
    report(float(np.abs(got[:n] - wn).max()) < 1e-12, "normal draws: %d equal the re-implementation" % n)
    report(float(np.abs(got[n:] - wu).max()) == 0.0, "sampling uniforms: %d equal the re-implementation" % n)
    widx = [i for i in range(n) if wu[i] < q]
    report(c == len(widx) and gidx == widx, "Poisson sample at rate %g: %d of %d examples, the same list" % (q, c, n))


def check_noise(probe, tmp):
    seed, steps, numel, S, C, B = 99, 50, 20000, 1.3, 0.7, 16.0
    out = os.path.join(tmp, "noise.bin")
    r = subprocess.run([probe, "noise", str(seed), str(steps), str(numel), repr(S), repr(C), repr(B), out])
    report(r.returncode == 0, "noise drawn in three slices (three ranks) equals one draw")
    x = np.fromfile(out, dtype="<f4").astype(np.float64).reshape(steps, numel)
    sd = S * C / B
    m, s = float(x.mean()), float(x.std())
    report(abs(m) < 5 * sd / math.sqrt(x.size), "noise mean %.3e (5 standard errors: %.3e)" % (m, 5 * sd / math.sqrt(x.size)))
    report(abs(s / sd - 1) < 0.01, "noise std %.6f, S C / B = %.6f (ratio %.5f)" % (s, sd, s / sd))
    k = float(((x - m) ** 4).mean() / s ** 4)
    report(abs(k - 3) < 0.05, "noise kurtosis %.4f (normal: 3)" % k)
    cor = float(np.corrcoef(x[0], x[1])[0, 1])
    report(abs(cor) < 5 / math.sqrt(numel), "correlation of two steps' noise %.2e" % cor)
    want = np.array([normal(seed, 1, j) for j in range(200)]) * S * C / B
    report(float(np.abs(x[0, :200] - want).max()) < 1e-6 * sd, "step 1's first 200 values = S C N_j / B")


def main():
    probe, stories = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        check_clip(probe, stories, tmp)
        check_draws(probe, tmp)
        check_noise(probe, tmp)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
