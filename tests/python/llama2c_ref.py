"""Independent reference for the llama2.c import (numpy only).

  llama2c_ref.py MODEL.bin EXPORTED.safetensors CONFIG.json
      reads MODEL.bin itself, maps it to Hugging Face names with the q/k row
      permutation of HF's convert_llama_weights_to_hf.py, parses the exported
      safetensors file itself and requires every tensor to be bit-identical;
      checks config.json; prints the content hash (src/hash.h) of the model.
  llama2c_ref.py index MODEL.bin TENSOR FLAT_INDEX
      the byte offset in MODEL.bin of element FLAT_INDEX of HF tensor TENSOR
      (for poking a NaN there).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_ref  # noqa: E402


def load(path):
    raw = open(path, "rb").read()
    D, H, L, NH, NKV, V, S = np.frombuffer(raw[:28], dtype="<i4").tolist()
    shared = V > 0
    V = abs(V)
    hs, kv = D // NH, D // NH * NKV
    w = np.frombuffer(raw[28:], dtype="<f4")
    sizes = [("emb", (V, D)), ("rms_att", (L, D)), ("wq", (L, D, D)), ("wk", (L, kv, D)), ("wv", (L, kv, D)),
             ("wo", (L, D, D)), ("rms_ffn", (L, D)), ("w1", (L, H, D)), ("w2", (L, D, H)), ("w3", (L, H, D)),
             ("rms_final", (D,)), ("freq_re", (S, hs // 2)), ("freq_im", (S, hs // 2))]
    if not shared:
        sizes.append(("wcls", (V, D)))
    a, pos = {}, 0
    for name, shape in sizes:
        n = int(np.prod(shape))
        a[name] = (w[pos:pos + n].reshape(shape), 28 + 4 * pos)
        pos += n
    assert pos == len(w), "size does not match the header"
    cfg = dict(dim=D, hidden=H, layers=L, heads=NH, kv_heads=NKV, vocab=V, seq=S, shared=shared)
    return cfg, a


def permute(w, n_heads):
    """HF's convert_llama_weights_to_hf.py permute: interleaved -> rotate-half."""
    d1, d2 = w.shape
    return w.reshape(n_heads, d1 // n_heads // 2, 2, d2).transpose(0, 2, 1, 3).reshape(d1, d2)


def hf_tensors(cfg, a):
    """{hf name: (array, source array name, layer, permuted heads or 0)}."""
    t = {"model.embed_tokens.weight": (a["emb"][0], "emb", None, 0),
         "model.norm.weight": (a["rms_final"][0], "rms_final", None, 0)}
    if not cfg["shared"]:
        t["lm_head.weight"] = (a["wcls"][0], "wcls", None, 0)
    m = [("input_layernorm", "rms_att", 0), ("post_attention_layernorm", "rms_ffn", 0),
         ("self_attn.q_proj", "wq", cfg["heads"]), ("self_attn.k_proj", "wk", cfg["kv_heads"]),
         ("self_attn.v_proj", "wv", 0), ("self_attn.o_proj", "wo", 0), ("mlp.gate_proj", "w1", 0),
         ("mlp.up_proj", "w3", 0), ("mlp.down_proj", "w2", 0)]
    for i in range(cfg["layers"]):
        for hf, src, heads in m:
            x = a[src][0][i]
            t["model.layers.%d.%s.weight" % (i, hf)] = (permute(x, heads) if heads else x, src, i, heads)
    return t


def main():
    if sys.argv[1] == "index":
        cfg, a = load(sys.argv[2])
        x, src, layer, heads = hf_tensors(cfg, a)[sys.argv[3]]
        k = int(sys.argv[4])
        base = a[src][1] + (0 if layer is None else layer * x.size * 4)
        r, c = divmod(k, x.shape[-1]) if x.ndim == 2 else (0, k)
        if heads:  # HF row r came from source row 2i (+1)
            hs = x.shape[0] // heads
            h, i = divmod(r, hs)
            r = h * hs + (2 * i if i < hs // 2 else 2 * (i - hs // 2) + 1)
        print(base + 4 * (r * (x.shape[-1] if x.ndim == 2 else 0) + c))
        return
    cfg, a = load(sys.argv[1])
    want = hf_tensors(cfg, a)
    meta, got, head, n = st_ref.parse(sys.argv[2])
    assert n % 8 == 0 and head.rstrip(" ").endswith("}") and len(head) - len(head.rstrip(" ")) < 8, "padding"
    names = [k for k in json.loads(head) if k != "__metadata__"]
    assert names == sorted(names, key=lambda s: s.encode()), "tensors not in sorted name order"
    assert sorted(got) == sorted(want), "tensor names differ: %s" % (set(got) ^ set(want))
    for name, (x, *_) in want.items():
        dt, shape, data = got[name]
        assert dt == "F32" and shape == x.shape, "%s: %s %s vs F32 %s" % (name, dt, shape, x.shape)
        if data != np.ascontiguousarray(x).astype("<f4").tobytes():
            y = np.frombuffer(data, dtype="<f4").reshape(shape)
            bad = np.argwhere(y.view("<u4") != x.view("<u4"))
            sys.exit("%s: %d elements differ, first at %s" % (name, len(bad), bad[0].tolist()))
    c = json.load(open(sys.argv[3]))
    expect = {"hidden_size": cfg["dim"], "intermediate_size": cfg["hidden"], "num_hidden_layers": cfg["layers"],
              "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["kv_heads"],
              "vocab_size": cfg["vocab"], "max_position_embeddings": cfg["seq"], "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "tie_word_embeddings": cfg["shared"], "model_type": "llama",
              "architectures": ["LlamaForCausalLM"], "torch_dtype": "float32"}
    for k, v in expect.items():
        assert c.get(k) == v, "config.json %s = %r, want %r" % (k, c.get(k), v)
    print(st_ref.content_hash({k: ("F32", x.shape, np.ascontiguousarray(x).astype("<f4").tobytes())
                               for k, (x, *_) in want.items()}))


if __name__ == "__main__":
    main()
