#!/usr/bin/python3
"""PyTorch peer of bench/model_bench.c: the same Llama math in eager float32
(embedding, RMSNorm, rotate-half RoPE from precomputed tables, GQA causal
attention, SwiGLU, untied/tied head, cross-entropy), forward+backward tokens/s.
  model_torch.py DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB SEQ TIED B T ITERS THREADS [prefill f32|bf16]
prefill: the forward only, under torch.no_grad(), with the weights in f32 or
bf16 (activations in the same dtype: PyTorch's CPU bf16 matmul); tokens/s of
the best of ITERS forwards after a warm-up, and tokens per CPU-second of the
process (as bench/model_bench.c)."""
import sys
import time
import torch
import torch.nn.functional as F

D, HID, L, H, KVH, V, S, TIED, B, T, ITERS, THREADS = map(int, sys.argv[1:13])
PREFILL = sys.argv[13:14] == ["prefill"]
DT = torch.bfloat16 if sys.argv[14:15] == ["bf16"] else torch.float32
if PREFILL:
    torch.set_grad_enabled(False)
torch.set_num_threads(THREADS)
torch.manual_seed(1)
hs = D // H
kvd = hs * KVH


def p(*shape, norm=False):
    w = torch.ones(shape) if norm else torch.randn(shape) * 0.02
    return w.to(DT) if PREFILL else torch.nn.Parameter(w)


emb = p(V, D)
layers = [dict(an=p(D, norm=True), q=p(D, D), k=p(kvd, D), v=p(kvd, D), o=p(D, D), fn=p(D, norm=True),
               g=p(HID, D), u=p(HID, D), d=p(D, HID)) for _ in range(L)]
fin = p(D, norm=True)
head = emb if TIED else p(V, D)
params = [emb, fin] + ([] if TIED else [head]) + [t for l in layers for t in l.values()]
inv = 1.0 / (10000.0 ** (torch.arange(0, hs, 2).float() / hs))
ang = torch.arange(T).float()[:, None] * inv[None, :]
cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w


def rope(x):
    rot = torch.cat([-x[..., hs // 2:], x[..., :hs // 2]], -1)
    return x * cos + rot * sin


def forward(tok):
    x = emb[tok]
    for w in layers:
        h = rms(x, w["an"])
        q = rope((h @ w["q"].t()).view(B, T, H, hs).transpose(1, 2))
        k = rope((h @ w["k"].t()).view(B, T, KVH, hs).transpose(1, 2)).repeat_interleave(H // KVH, 1)
        v = (h @ w["v"].t()).view(B, T, KVH, hs).transpose(1, 2).repeat_interleave(H // KVH, 1)
        s = (q @ k.transpose(-1, -2)) / hs ** 0.5
        a = torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, D) @ w["o"].t()
        h = rms(x, w["fn"])
        x = x + (F.silu(h @ w["g"].t()) * (h @ w["u"].t())) @ w["d"].t()
    return rms(x, fin) @ head.t()


cos, sin = cos.to(DT), sin.to(DT)
tok = torch.randint(0, V, (B, T))
if PREFILL:  # one warm-up, then the best of ITERS
    best, cpu = float("inf"), float("inf")
    for it in range(-1, ITERS):
        t0, c0 = time.perf_counter(), time.process_time()
        forward(tok)
        if it >= 0:
            best = min(best, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
    print("prefill_tokens_per_s=%.1f tokens_per_cpu_s=%.1f" % (B * T / best, B * T / cpu))
    sys.exit(0)
tgt = torch.randint(0, V, (B * T,))
for it in range(-2, ITERS):
    if it == 0:
        t0 = time.perf_counter()
    for q in params:
        q.grad = None
    F.cross_entropy(forward(tok).view(B * T, V), tgt).backward()
print("fwd_bwd_tokens_per_s=%.1f" % (ITERS * B * T / (time.perf_counter() - t0)))
