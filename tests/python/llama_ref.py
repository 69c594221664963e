#!/usr/bin/python3
"""Independent reference of the Llama engine (src/model.c) in PyTorch float64.

Written from the Hugging Face LlamaForCausalLM math, not from the C code:
embedding, RMSNorm, rotate-half RoPE, grouped-query causal attention
(repeat_kv), SwiGLU, final norm, tied or untied head; gradients by autograd.

  llama_ref.py check PROBE STORIES_BIN   engine vs reference: forward logits,
                                         gradients of CE/KL/MSE, greedy KV
                                         generation, on random configs and on
                                         stories260K (read from llama2.c .bin here)
  llama_ref.py check-generate M.h5 OUT.json
                                         `deltasoup generate --temperature 0 --json`
                                         output against greedy decoding here
  llama_ref.py check-eval M.h5 TOK.bin TEXT SEQ_LEN NLL
                                         eval --ppl's mean NLL against this
                                         reference (own document split, the
                                         tokenizer's Python reference bpe_ref.py)
  llama_ref.py check-hf PROBE DIR M.h5 T
                                         `deltasoup import --from hf DIR -o M.h5`:
                                         the engine's logits on M.h5 (PROBE
                                         forward-h5) against this reference on
                                         the folder read here (config.json with
                                         rope_scaling linear/llama3, safetensors)
Exits 77 when torch is missing (test skipped), 1 on a mismatch.
"""
import json
import struct
import subprocess
import sys
import tempfile
import os

try:
    import numpy as np
    import torch
except ImportError:
    print("llama_ref.py: numpy/torch not available, skipping", file=sys.stderr)
    sys.exit(77)

F64 = torch.float64
ROLES = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
         "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
         "mlp.down_proj"]


def tensor_names(cfg):
    """Engine order of the tensors (the layout documented in src/model.h)."""
    names = ["model.embed_tokens.weight"]
    for l in range(cfg["n_layers"]):
        names += ["model.layers.%d.%s.weight" % (l, r) for r in ROLES]
    names.append("model.norm.weight")
    if not cfg["tied_embeddings"]:
        names.append("lm_head.weight")
    return names


def random_model(cfg, seed):
    rng = np.random.default_rng(seed)
    D, F, V = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"]
    kvd = D // cfg["n_heads"] * cfg["n_kv_heads"]
    shapes = {"input_layernorm": (D,), "post_attention_layernorm": (D,),
              "self_attn.q_proj": (D, D), "self_attn.k_proj": (kvd, D), "self_attn.v_proj": (kvd, D),
              "self_attn.o_proj": (D, D), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D),
              "mlp.down_proj": (D, F)}
    w = {}
    for name in tensor_names(cfg):
        if name.endswith("norm.weight"):
            w[name] = 1 + 0.1 * rng.standard_normal(D)
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            w[name] = rng.standard_normal((V, D))
        else:
            role = name.split(".", 3)[3][:-len(".weight")]
            w[name] = rng.standard_normal(shapes[role]) / np.sqrt(shapes[role][1])
    return {k: v.astype(np.float32) for k, v in w.items()}


def load_llama2c(path):
    """stories260K .bin (llama2.c legacy format) -> config and HF-layout weights.
    q/k rows are permuted from llama2.c's interleaved RoPE pairs to HF's
    rotate-half order, as transformers' convert_llama_weights_to_hf does."""
    with open(path, "rb") as f:
        D, F, L, H, KVH, V, S = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    tied = V > 0
    V = abs(V)
    hs = D // H
    kvd = hs * KVH
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = data[off:off + n].reshape(shape)
        off += n
        return a

    emb = take(V, D)
    att_n, wq, wk, wv, wo = take(L, D), take(L, D, D), take(L, kvd, D), take(L, kvd, D), take(L, D, D)
    ffn_n, w1, w2, w3 = take(L, D), take(L, F, D), take(L, D, F), take(L, F, D)
    fin = take(D)
    off += S * hs  # freq_cis_real/imag
    head = None if tied else take(V, D)

    def permute(w, nh):
        rows, cols = w.shape
        return w.reshape(nh, rows // nh // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)

    w = {"model.embed_tokens.weight": emb, "model.norm.weight": fin}
    for l in range(L):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = att_n[l]
        w[p + "self_attn.q_proj.weight"] = permute(wq[l], H)
        w[p + "self_attn.k_proj.weight"] = permute(wk[l], KVH)
        w[p + "self_attn.v_proj.weight"] = wv[l]
        w[p + "self_attn.o_proj.weight"] = wo[l]
        w[p + "post_attention_layernorm.weight"] = ffn_n[l]
        w[p + "mlp.gate_proj.weight"] = w1[l]
        w[p + "mlp.down_proj.weight"] = w2[l]
        w[p + "mlp.up_proj.weight"] = w3[l]
    if head is not None:
        w["lm_head.weight"] = head
    cfg = dict(dim=D, hidden_dim=F, n_layers=L, n_heads=H, n_kv_heads=KVH, vocab_size=V,
               max_seq_len=S, tied_embeddings=int(tied), norm_eps=1e-5, rope_theta=10000.0)
    return cfg, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def load_h5(path):
    import h5py
    with h5py.File(path, "r") as f:
        a = f.attrs
        cfg = {k: int(a[k]) for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                      "vocab_size", "max_seq_len", "tied_embeddings")}
        cfg["norm_eps"] = float(a["norm_eps"])
        cfg["rope_theta"] = float(a["rope_theta"])
        w = {}
        for name in tensor_names(cfg):
            w[name] = f["tensors"][name].astype("f4")[()]  # HDF5 converts f16/bf16
    return cfg, w


def write_raw(path, cfg, w):
    with open(path, "wb") as f:
        f.write(struct.pack("<8i2d", cfg["dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["n_heads"],
                            cfg["n_kv_heads"], cfg["vocab_size"], cfg["max_seq_len"],
                            cfg["tied_embeddings"], cfg["norm_eps"], cfg["rope_theta"]))
        for name in tensor_names(cfg):
            f.write(np.ascontiguousarray(w[name], dtype="<f4").tobytes())


# ---- the reference model

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def inv_freq(hs, theta, scaling=None):
    """RoPE inverse frequencies, as transformers' ROPE_INIT_FUNCTIONS:
    default, "linear" (_compute_linear_scaling_rope_parameters: inv_freq /
    factor) and "llama3" (_compute_llama3_parameters)."""
    inv = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=F64) / hs))
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = scaling["factor"]
    if kind == "linear":
        return inv / factor
    assert kind == "llama3", kind
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * np.pi / inv
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope(x, theta, scaling=None):
    """x [B, heads, T, hs]; HF rotate_half convention."""
    T, hs = x.shape[2], x.shape[3]
    inv = inv_freq(hs, theta, scaling)
    ang = torch.arange(T, dtype=F64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    rot = torch.cat([-x[..., hs // 2:], x[..., :hs // 2]], -1)
    return x * emb.cos() + rot * emb.sin()


def forward(cfg, W, tokens):
    """tokens: LongTensor [B, T] -> logits [B, T, V] (float64)."""
    D, H, KVH = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    hs, eps = D // H, cfg["norm_eps"]
    B, T = tokens.shape
    x = W["model.embed_tokens.weight"][tokens]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(cfg["n_layers"]):
        p = "model.layers.%d." % l
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, hs).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, KVH, hs).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, KVH, hs).transpose(1, 2)
        sc = cfg.get("rope_scaling")
        q, k = rope(q, cfg["rope_theta"], sc), rope(k, cfg["rope_theta"], sc)
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        s = (q @ k.transpose(-1, -2)) / np.sqrt(hs)
        s = s.masked_fill(mask, float("-inf"))
        o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + g @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tied_embeddings"] else W["lm_head.weight"]
    return x @ head.T


def to_torch(w, grad=False):
    return {k: torch.tensor(v, dtype=F64, requires_grad=grad) for k, v in w.items()}


def greedy(cfg, W, prompt, n):
    toks = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            z = forward(cfg, W, torch.tensor([toks]))[0, -1]
            toks.append(int(torch.argmax(z)))
    return toks[len(prompt):]


# ---- checks against the engine (through tests/model/model_probe)

FAILED = []


def report(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILED.append(what)


def probe(*args):
    env = dict(os.environ)
    if args[0] == "forward-h5":
        # MPI (for the checkpoint reader): Open MPI's own allocations read as
        # leaks at MPI_Finalize in a sanitizer build (src/mpi_asan.h); the
        # other modes keep leak checking.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    r = subprocess.run([PROBE] + [str(a) for a in args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("model_probe %s: exit %d" % (args[0], r.returncode))
    return r.stdout


def write_batch(path, tokens, targets, ref=None):
    B, T = tokens.shape
    with open(path, "wb") as f:
        f.write(struct.pack("<2i", B, T))
        f.write(tokens.astype("<i4").tobytes())
        f.write(targets.astype("<i4").tobytes())
        if ref is not None:
            f.write(ref.astype("<f4").tobytes())


def check_forward(tag, cfg, w, tokens, tmp):
    raw, bat, out = (os.path.join(tmp, n) for n in ("w.raw", "b.bin", "o.bin"))
    write_raw(raw, cfg, w)
    write_batch(bat, tokens, tokens)
    probe("forward", raw, bat, out)
    got = np.fromfile(out, dtype="<f4").reshape(*tokens.shape, cfg["vocab_size"])
    with torch.no_grad():
        want = forward(cfg, to_torch(w), torch.tensor(tokens, dtype=torch.long)).numpy()
    err = float(np.abs(got - want).max())
    report(err <= 1e-4, "%s: forward logits max abs err %.2e (|logit| up to %.1f)" % (tag, err, np.abs(want).max()))


def check_grads(tag, cfg, w, tokens, targets, loss, tmp, rng):
    raw, bat, out = (os.path.join(tmp, n) for n in ("w.raw", "b.bin", "o.bin"))
    B, T = tokens.shape
    V = cfg["vocab_size"]
    ref = rng.standard_normal((B, T, V)).astype(np.float32) * 2 if loss != "ce" else None
    write_raw(raw, cfg, w)
    write_batch(bat, tokens, targets, ref)
    probe("grads", raw, bat, loss, out)
    raw_out = open(out, "rb").read()
    got_loss = struct.unpack("<d", raw_out[:8])[0]
    got = np.frombuffer(raw_out[8:], dtype="<f4")

    W = to_torch(w, grad=True)
    z = forward(cfg, W, torch.tensor(tokens, dtype=torch.long)).reshape(B * T, V)
    tg = torch.tensor(targets.reshape(-1), dtype=torch.long)
    keep = tg >= 0
    if loss == "ce":
        L = torch.nn.functional.cross_entropy(z[keep], tg[keep])
    else:
        r = torch.tensor(ref.reshape(B * T, V), dtype=F64)[keep]
        if loss == "kl":
            lpr = torch.log_softmax(r, -1)
            L = (lpr.exp() * (lpr - torch.log_softmax(z[keep], -1))).sum(-1).mean()
        else:
            L = ((z[keep] - r) ** 2).mean(-1).mean()
    L.backward()
    report(abs(got_loss - L.item()) <= 1e-5 * max(1.0, abs(L.item())),
           "%s: %s loss %.8f vs reference %.8f" % (tag, loss, got_loss, L.item()))
    off, worst, worst_name = 0, 0.0, ""
    for name in tensor_names(cfg):
        want = W[name].grad.numpy().reshape(-1)
        g = got[off:off + want.size].astype(np.float64)
        off += want.size
        # relative error per coordinate, floored at 1% of the tensor's largest
        # gradient so that coordinates with (near) zero gradient do not divide by 0
        floor = 1e-2 * np.abs(want).max() + 1e-30
        rel = float((np.abs(g - want) / np.maximum(np.abs(want), floor)).max())
        if rel > worst:
            worst, worst_name = rel, name
    report(off == got.size and worst < 1e-3,
           "%s: %s gradients of all %d tensors, max relative err %.2e (%s)" %
           (tag, loss, len(tensor_names(cfg)), worst, worst_name))


def check_generate(tag, cfg, w, prompt, n, tmp):
    raw = os.path.join(tmp, "w.raw")
    write_raw(raw, cfg, w)
    got = [int(t) for t in probe("generate", raw, n, *prompt).split()]
    want = greedy(cfg, to_torch(w), prompt, n)
    report(got == want, "%s: greedy KV-cached generation of %d tokens matches (%s ...)" %
           (tag, n, " ".join(map(str, got[:8]))))
    if got != want:
        print("  engine:    ", got, "\n  reference: ", want)


def main_check(stories):
    rng = np.random.default_rng(7)
    configs = [
        ("gqa-untied", dict(dim=32, hidden_dim=72, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61,
                            max_seq_len=16, tied_embeddings=0, norm_eps=1e-5, rope_theta=10000.0)),
        ("mha-tied", dict(dim=24, hidden_dim=40, n_layers=3, n_heads=3, n_kv_heads=3, vocab_size=37,
                          max_seq_len=12, tied_embeddings=1, norm_eps=1e-6, rope_theta=500.0)),
        ("mqa-untied", dict(dim=16, hidden_dim=24, n_layers=1, n_heads=4, n_kv_heads=1, vocab_size=19,
                            max_seq_len=9, tied_embeddings=0, norm_eps=1e-5, rope_theta=10000.0)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (tag, cfg) in enumerate(configs):
            w = random_model(cfg, 100 + i)
            B, T = 3, cfg["max_seq_len"]
            tokens = rng.integers(0, cfg["vocab_size"], (B, T))
            targets = rng.integers(0, cfg["vocab_size"], (B, T))
            targets[0, :2] = -1  # ignored positions
            check_forward(tag, cfg, w, tokens, tmp)
            for loss in ("ce", "kl", "mse"):
                check_grads(tag, cfg, w, tokens, targets, loss, tmp, rng)
            check_generate(tag, cfg, w, list(tokens[0, :3]), cfg["max_seq_len"] - 3, tmp)
        cfg, w = load_llama2c(stories)
        tokens = rng.integers(3, cfg["vocab_size"], (2, 48))
        tokens[:, 0] = 1
        check_forward("stories260K", cfg, w, tokens, tmp)
        check_generate("stories260K", cfg, w, [1, 403, 407, 261], 60, tmp)
    return 1 if FAILED else 0


def check_generate_h5(h5, out_json):
    cfg, w = load_h5(h5)
    got = json.load(open(out_json))
    prompt, toks = got["prompt_tokens"], got["tokens"]
    want = greedy(cfg, to_torch(w), prompt, len(toks) + 1)
    # the engine stops before BOS/EOS or at max_seq_len / --max-tokens
    ok = want[:len(toks)] == toks and len(toks) > 0
    report(ok, "greedy generation of %d tokens after a %d-token prompt matches the reference" %
           (len(toks), len(prompt)))
    if not ok:
        print("  engine:    ", toks, "\n  reference: ", want)
    return 1 if FAILED else 0


def split_docs(text):
    import re
    docs = []
    for seg in text.split("<|endoftext|>"):
        docs += [d.strip() for d in re.split(r"\n[ \t\r\f\v]*\n", seg)]
    return [d for d in docs if d]


def check_eval(h5, tok_bin, text_path, seq_len, nll):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bpe_ref
    pieces, scores, lookup = bpe_ref.load(tok_bin)
    cfg, w = load_h5(h5)
    W = to_torch(w)
    total, count = 0.0, 0
    with torch.no_grad():
        for doc in split_docs(open(text_path, encoding="utf-8").read()):
            ids = bpe_ref.encode(doc.encode("utf-8"), pieces, scores, lookup)[:seq_len]
            if len(ids) < 2:
                continue
            lp = torch.log_softmax(forward(cfg, W, torch.tensor([ids]))[0, :-1], -1)
            total -= float(lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
            count += len(ids) - 1
    ref = total / count
    report(abs(nll - ref) <= 1e-5 * ref, "eval --ppl NLL %.8f vs reference %.8f (%d tokens)" % (nll, ref, count))
    return 1 if FAILED else 0


def load_hf(folder):
    """A Hugging Face folder read here (numpy only): config.json's fields and
    the safetensors (one file or the index's shards) as float32."""
    c = json.load(open(os.path.join(folder, "config.json")))
    cfg = {"dim": c["hidden_size"], "hidden_dim": c["intermediate_size"], "n_layers": c["num_hidden_layers"],
           "n_heads": c["num_attention_heads"], "n_kv_heads": c.get("num_key_value_heads", c["num_attention_heads"]),
           "vocab_size": c["vocab_size"], "max_seq_len": c.get("max_position_embeddings", 2048),
           "tied_embeddings": int(bool(c.get("tie_word_embeddings", False))),
           "norm_eps": c.get("rms_norm_eps", 1e-6), "rope_theta": c.get("rope_theta", 10000.0),
           "rope_scaling": c.get("rope_scaling")}
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    w = {}
    for fn in files:
        raw = open(os.path.join(folder, fn), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        head = json.loads(raw[8:8 + n])
        for name, t in head.items():
            if name == "__metadata__":
                continue
            b = raw[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]]
            if t["dtype"] == "BF16":
                x = (np.frombuffer(b, "<u2").astype("<u4") << 16).view("<f4")
            else:
                assert t["dtype"] == "F32", t["dtype"]
                x = np.frombuffer(b, "<f4")
            w[name] = x.reshape(t["shape"]).astype(np.float32)
    return cfg, w


def check_hf(probe_path, folder, h5, seq):
    """deltasoup's import of an HF folder (M.h5, read by the engine's own
    loader in model_probe forward-h5) against this reference on the folder."""
    global PROBE
    PROBE = probe_path
    cfg, w = load_hf(folder)
    sc = cfg["rope_scaling"]
    hs = cfg["dim"] // cfg["n_heads"]
    if sc and sc.get("rope_type", sc.get("type")) == "llama3":
        inv = inv_freq(hs, cfg["rope_theta"])
        wl = 2 * np.pi / inv.numpy()
        orig = sc["original_max_position_embeddings"]
        lo, hi = orig / sc["low_freq_factor"], orig / sc["high_freq_factor"]
        n = (int((wl < hi).sum()), int(((wl >= hi) & (wl <= lo)).sum()), int((wl > lo).sum()))
        report(min(n) > 0, "llama3 rule: %d frequencies kept, %d smoothed, %d divided by the factor" % n)
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, cfg["vocab_size"], size=(2, seq))
    with tempfile.TemporaryDirectory() as tmp:
        bat, out = os.path.join(tmp, "b.bin"), os.path.join(tmp, "o.bin")
        write_batch(bat, tokens, tokens)
        probe("forward-h5", h5, bat, out)
        got = np.fromfile(out, dtype="<f4").reshape(2, seq, cfg["vocab_size"])
    with torch.no_grad():
        want = forward(cfg, to_torch(w), torch.tensor(tokens, dtype=torch.long)).numpy()
        plain = forward(dict(cfg, rope_scaling=None), to_torch(w), torch.tensor(tokens, dtype=torch.long)).numpy()
    err = float(np.abs(got - want).max())
    report(err <= 1e-4, "%s: imported model's logits vs PyTorch float64, max abs err %.2e (|logit| up to %.1f, "
           "vocab %d, T %d)" % (os.path.basename(folder.rstrip("/")), err, np.abs(want).max(), cfg["vocab_size"], seq))
    if sc:
        d = float(np.abs(plain - want).max())
        report(d > 1e-2, "without rope_scaling the reference differs by %.2e (the rule is exercised)" % d)
    return 1 if FAILED else 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) >= 4 and sys.argv[1] == "check":
        PROBE = sys.argv[2]
        sys.exit(main_check(sys.argv[3]))
    if len(sys.argv) == 4 and sys.argv[1] == "check-generate":
        sys.exit(check_generate_h5(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 7 and sys.argv[1] == "check-eval":
        sys.exit(check_eval(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])))
    if len(sys.argv) == 6 and sys.argv[1] == "check-hf":
        sys.exit(check_hf(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
