#!/usr/bin/python3
"""Replace the weights of a Hugging Face model folder (made by
tests/python/make_hf_folder.py) with a 'chain' model whose greedy output is
known exactly: every layer's projections are zero, so the last hidden state
is the current token's embedding; token KEY's embedding is a unit vector of
its own and lm_head maps that vector to the id NEXT[KEY]. Greedy decoding
from a prompt ending in a chain's first id yields the rest of the chain.

  chain_model.py DIR CHAIN [CHAIN...]     CHAIN: comma-separated ids
  chain_model.py DIR ... --chat-template VECTORS.jsonl NAME
      also put the Jinja text of NAME (from a chat vectors file) into
      DIR/tokenizer_config.json as its chat_template.
Refuses chains whose transitions disagree (a token with two successors).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from make_hf_folder import ROLES, write_safetensors  # noqa: E402

args = sys.argv[1:]
tmpl = None
if "--chat-template" in args:
    i = args.index("--chat-template")
    tmpl = (args[i + 1], args[i + 2])
    del args[i:i + 3]
d, chains = args[0], [[int(x) for x in c.split(",")] for c in args[1:]]
cfg = json.load(open(os.path.join(d, "config.json")))
D, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
kvd = D // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
nxt = {}
for c in chains:
    for a, b in zip(c, c[1:]):
        if nxt.get(a, b) != b:
            sys.exit(f"chain_model: token {a} would lead to {nxt[a]} and {b}")
        nxt[a] = b
if len(nxt) > D:
    sys.exit(f"chain_model: {len(nxt)} transitions for hidden_size {D}")
emb = np.zeros((V, D), np.float32)
head = np.zeros((V, D), np.float32)
for slot, (a, b) in enumerate(sorted(nxt.items())):
    emb[a, slot] = 1.0
    head[b, slot] = 1.0
shapes = {"self_attn.q_proj": (D, D), "self_attn.k_proj": (kvd, D), "self_attn.v_proj": (kvd, D),
          "self_attn.o_proj": (D, D), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D), "mlp.down_proj": (D, F)}
w = {"model.embed_tokens.weight": emb, "lm_head.weight": head, "model.norm.weight": np.ones(D, np.float32)}
for layer in range(L):
    for r in ROLES:
        w[f"model.layers.{layer}.{r}.weight"] = (np.ones(D, np.float32) if r.endswith("layernorm")
                                                 else np.zeros(shapes[r], np.float32))
for f in os.listdir(d):
    if f.endswith(".safetensors") or f == "model.safetensors.index.json":
        os.remove(os.path.join(d, f))
write_safetensors(os.path.join(d, "model.safetensors"), w, "f32")
if tmpl:
    jinja = [json.loads(x)["jinja"] for x in open(tmpl[0], encoding="utf-8")
             if '"jinja"' in x and json.loads(x).get("template") == tmpl[1]][0]
    p = os.path.join(d, "tokenizer_config.json")
    c = json.load(open(p, encoding="utf-8"))
    c["chat_template"] = jinja
    with open(p, "w", encoding="utf-8") as f:
        json.dump(c, f, indent=2, ensure_ascii=False)
