#!/usr/bin/python3
"""A Hugging Face Llama model folder with random weights, written with numpy
alone (independent of deltasoup): config.json as transformers writes it,
model.safetensors (or N shards + model.safetensors.index.json), and the
tokenizer.json / tokenizer_config.json of TOKDIR copied byte for byte.

  make_hf_folder.py OUT_DIR --tokenizer TOKDIR [--vocab N] [--dim D]
      [--hidden F] [--layers L] [--heads H] [--kv-heads K] [--max-pos P]
      [--rope-theta T] [--rope-scaling none|linear:F|llama3:F:LOW:HIGH:ORIG]
      [--tied] [--shards N] [--dtype bf16|f32] [--seed S]
      [--bos ID] [--eos ID[,ID...]] [--set KEY=JSON ...] [--drop KEY ...]

--set/--drop edit config.json after it is built (bad-input tests). The
weights are what tests/python/llama_ref.py's load_hf reads back.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

ROLES = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
         "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
         "mlp.down_proj"]


def to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN-free input)."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def weights(a, rng):
    D, F, V, L = a.dim, a.hidden, a.vocab, a.layers
    kvd = D // a.heads * a.kv_heads
    shapes = {"input_layernorm": (D,), "post_attention_layernorm": (D,),
              "self_attn.q_proj": (D, D), "self_attn.k_proj": (kvd, D), "self_attn.v_proj": (kvd, D),
              "self_attn.o_proj": (D, D), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D),
              "mlp.down_proj": (D, F)}
    w = {"model.embed_tokens.weight": rng.standard_normal((V, D)).astype(np.float32),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)}
    if not a.tied:
        w["lm_head.weight"] = rng.standard_normal((V, D)).astype(np.float32)
    for l in range(L):
        for r in ROLES:
            shape = shapes[r]
            if len(shape) == 1:
                x = 1 + 0.1 * rng.standard_normal(shape)
            else:
                x = rng.standard_normal(shape) / np.sqrt(shape[1])
            w["model.layers.%d.%s.weight" % (l, r)] = x.astype(np.float32)
    return w


def write_safetensors(path, tensors, dtype):
    """tensors: {name: float32 array}; sorted names, packed data, header
    padded with spaces to a multiple of 8 (as the safetensors library)."""
    head, blobs, off = {}, [], 0
    for name in sorted(tensors):
        x = tensors[name]
        raw = to_bf16_bits(x).tobytes() if dtype == "bf16" else np.ascontiguousarray(x, "<f4").tobytes()
        head[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(x.shape),
                      "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    head["__metadata__"] = {"format": "pt"}
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def config(a):
    c = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
         "hidden_act": "silu", "hidden_size": a.dim, "initializer_range": 0.02,
         "intermediate_size": a.hidden, "max_position_embeddings": a.max_pos, "mlp_bias": False,
         "model_type": "llama", "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
         "num_key_value_heads": a.kv_heads, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
         "rope_scaling": None, "rope_theta": a.rope_theta, "tie_word_embeddings": a.tied,
         "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
         "transformers_version": "4.43.0", "use_cache": True, "vocab_size": a.vocab}
    if a.bos is not None:
        c["bos_token_id"] = a.bos
    if a.eos is not None:
        ids = [int(x) for x in a.eos.split(",")]
        c["eos_token_id"] = ids if len(ids) > 1 else ids[0]
    kind = a.rope_scaling.split(":")
    if kind[0] == "linear":
        c["rope_scaling"] = {"factor": float(kind[1]), "rope_type": "linear"}
    elif kind[0] == "llama3":
        c["rope_scaling"] = {"factor": float(kind[1]), "low_freq_factor": float(kind[2]),
                             "high_freq_factor": float(kind[3]),
                             "original_max_position_embeddings": int(kind[4]), "rope_type": "llama3"}
    for kv in a.set:
        k, v = kv.split("=", 1)
        c[k] = json.loads(v)
    for k in a.drop:
        c.pop(k, None)
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=160)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--max-pos", type=int, default=128)
    p.add_argument("--rope-theta", type=float, default=500000.0)
    p.add_argument("--rope-scaling", default="none")
    p.add_argument("--tied", action="store_true")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bos", type=int)
    p.add_argument("--eos")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--drop", action="append", default=[])
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    w = weights(a, np.random.default_rng(a.seed))
    names = sorted(w)
    if a.shards <= 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), w, a.dtype)
    else:
        wmap, total = {}, 0
        for s in range(a.shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
            part = {n: w[n] for i, n in enumerate(names) if i % a.shards == s}
            total += write_safetensors(os.path.join(a.out, fn), part, a.dtype)
            wmap.update({n: fn for n in part})
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(a), f, indent=2, sort_keys=True)
        f.write("\n")
    for n in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer, n)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(a.out, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
