"""Write a synthetic bf16 Llama model in safetensors (+ config.json) for
bench/import_export.sh: import_export_gen.py OUTDIR [GB] (default 1).
Streams tensor by tensor; values are random finite bf16 (|x| < 2)."""
import json
import struct
import sys

import numpy as np

out, gb = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
D, H, NH, V = 2048, 5504, 16, 32000
per_layer = 4 * D * D + 3 * D * H
L = max(1, round((gb * 1e9 / 2 - 2 * V * D) / per_layer))
shapes = {"model.embed_tokens.weight": (V, D), "lm_head.weight": (V, D), "model.norm.weight": (D,)}
for i in range(L):
    p = "model.layers.%d." % i
    shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                   p + "self_attn.q_proj.weight": (D, D), p + "self_attn.k_proj.weight": (D, D),
                   p + "self_attn.v_proj.weight": (D, D), p + "self_attn.o_proj.weight": (D, D),
                   p + "mlp.gate_proj.weight": (H, D), p + "mlp.up_proj.weight": (H, D),
                   p + "mlp.down_proj.weight": (D, H)})
hdr, pos = {"__metadata__": {"format": "pt"}}, 0
names = sorted(shapes, key=lambda s: s.encode())
for n in names:
    size = 2 * int(np.prod(shapes[n]))
    hdr[n] = {"dtype": "BF16", "shape": list(shapes[n]), "data_offsets": [pos, pos + size]}
    pos += size
head = json.dumps(hdr, separators=(",", ":")).encode()
head += b" " * (-len(head) % 8)
rng = np.random.default_rng(0)
with open(out + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head)
    for n in names:
        bits = rng.integers(0, 1 << 16, int(np.prod(shapes[n])), dtype=np.uint16) & 0xBFFF
        f.write(bits.astype("<u2").tobytes())
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D, "intermediate_size": H,
       "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NH, "vocab_size": V,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
       "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
json.dump(cfg, open(out + "/config.json", "w"), indent=2)
print("%d layers, %.3f GB" % (L, (8 + len(head) + pos) / 1e9))
