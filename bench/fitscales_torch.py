#!/usr/bin/python3
"""PyTorch peer of `deltasoup fit-scales` (bench/fitscales_bench.sh): the same
scale distillation in eager float32 on the same files. Per step: the teacher
(fine-tuned model) forward without gradients; the student's coded tensors
rebuilt as W_b + g * (2b - 1) from the scales (autograd on the scales only;
everything else is frozen); student forward; per-token KL(p_teacher ||
p_student) averaged over the batch; backward; torch.optim.Adam on the scales
(beta 0.9/0.999, eps 1e-8). Prints seconds per step (mean over the steps
after the first).
  fitscales_torch.py BASE.h5 FT.h5 DELTA.bd.h5 BATCH SEQ_LEN STEPS THREADS"""
import sys
import time

import h5py
import numpy as np
import torch

base_p, ft_p, delta_p = sys.argv[1:4]
B, T, STEPS, THREADS = map(int, sys.argv[4:8])
torch.set_num_threads(THREADS)
torch.manual_seed(1)


def load(path):
    with h5py.File(path, "r") as f:
        cfg = {k: (float(f.attrs[k]) if k in ("norm_eps", "rope_theta") else int(f.attrs[k]))
               for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "norm_eps",
                         "rope_theta", "tied_embeddings")}
        return cfg, {k: torch.from_numpy(f["tensors"][k].astype("f4")[()]) for k in f["tensors"]}


cfg, wb = load(base_p)
_, wf = load(ft_p)
D, H, KVH, L, V = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["n_layers"], cfg["vocab_size"]
hs = D // H
student = dict(wb)
coded = []  # (name, sign tensor, scale parameter, shape of g for broadcasting)
with h5py.File(delta_p, "r") as f:
    for k in f["dense"]:
        student[k] = wb[k] + torch.from_numpy(f["dense"][k].astype("f4")[()])
    for k in f["bits"]:
        g = f["bits"][k]
        rows, cols = wb[k].shape
        words = g["signs"][()].astype(np.uint64)
        bits = ((words[:, :, None] >> np.arange(64, dtype=np.uint64)) & 1).reshape(rows, -1)[:, :cols]
        mode = g.attrs["scale_mode"]
        mode = mode.decode() if isinstance(mode, bytes) else mode
        shape = {"tensor": (1, 1), "row": (rows, 1), "col": (1, cols)}[mode]
        scale = torch.nn.Parameter(torch.from_numpy(g["scale"][()].astype("f4")).reshape(shape))
        coded.append((k, torch.from_numpy(2.0 * bits.astype(np.float32) - 1.0), scale))
opt = torch.optim.Adam([c[2] for c in coded], lr=1e-4, betas=(0.9, 0.999), eps=1e-8)

inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hs, 2).float() / hs))
ang = torch.arange(T).float()[:, None] * inv[None, :]
cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["norm_eps"]) * w


def rope(x):
    return x * cos + torch.cat([-x[..., hs // 2:], x[..., :hs // 2]], -1) * sin


def forward(W, tok):
    x = W["model.embed_tokens.weight"][tok]
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, hs).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, KVH, hs).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, KVH, hs).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)
        s = (q @ k.transpose(-1, -2)) / hs ** 0.5
        o = (torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        x = x + (torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) \
            @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg["tied_embeddings"] else W["lm_head.weight"]
    return (x @ head.T).reshape(B * T, V)


times = []
for step in range(STEPS):
    tok = torch.randint(0, V, (B, T))
    t0 = time.perf_counter()
    with torch.no_grad():
        lt = torch.log_softmax(forward(wf, tok), -1)
    W = dict(student)
    for name, sign, scale in coded:
        W[name] = wb[name] + scale * sign
    lp = torch.log_softmax(forward(W, tok), -1)
    loss = (lt.exp() * (lt - lp)).sum(-1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
sec = sum(times[1:]) / max(1, len(times) - 1)
print("pytorch_s_per_step=%.4f objective=%.5f" % (sec, float(loss)))
