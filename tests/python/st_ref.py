"""Independent safetensors reference (numpy + json only, no deltasoup code).

  st_ref.py hash FILE.safetensors      content hash per src/hash.h
  st_ref.py make OUTDIR [--dtype bf16|f16|f32|mixed] [--shards N] [--seed S]
            [--nan TENSOR:INDEX] [--tied]
      a small random Llama model in Hugging Face safetensors (+ config.json;
      with --shards, model-0000k-of-0000N.safetensors + the index), written
      canonically: tensors sorted by name, compact JSON, spaces to a multiple
      of 8, __metadata__ {"format": "pt"}.
"""
import hashlib
import json
import struct
import sys

import numpy as np

DT = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "U8": np.dtype("u1"),
      "I32": np.dtype("<i4"), "U64": np.dtype("<u8"), "F64": np.dtype("<f8")}


def parse(path):
    """(metadata, {name: (dtype, shape, raw bytes)}) with every rule checked."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    assert 8 + n <= len(raw), "header past the end"
    head = raw[8:8 + n].decode("utf-8")
    hdr = json.loads(head)
    meta = hdr.pop("__metadata__", {})
    data = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in hdr.items())
    pos = 0
    for b, e, k in spans:
        assert b == pos, "gap or overlap at %s" % k
        pos = e
    assert pos == len(data), "trailing data"
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        dt = DT[v["dtype"]]
        assert (e - b) == int(np.prod(v["shape"], dtype=np.int64)) * dt.itemsize, k
        out[k] = (v["dtype"], tuple(v["shape"]), data[b:e])
    return meta, out, head, n


def entry_digest(name, dtype, shape, data):
    h = hashlib.sha256()
    h.update(name.encode() + b"\0" + dtype.encode() + b"\0")
    h.update(struct.pack("<I", len(shape)))
    for d in shape:
        h.update(struct.pack("<Q", d))
    h.update(data)
    return h.digest()


def content_hash(tensors):
    """tensors: {name: (dtype, shape, bytes)} -> hex (src/hash.h)."""
    h = hashlib.sha256()
    for name in sorted(tensors, key=lambda s: s.encode()):
        h.update(entry_digest(name, *tensors[name]))
    return h.hexdigest()


def write(path, tensors, meta=None):
    """tensors: {name: (dtype, ndarray in that dtype's storage)}."""
    hdr = {}
    if meta is not None:
        hdr["__metadata__"] = meta
    pos, blobs = 0, []
    for name in sorted(tensors, key=lambda s: s.encode()):
        dt, a = tensors[name]
        b = np.ascontiguousarray(a).astype(DT[dt], copy=False).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [pos, pos + len(b)]}
        pos += len(b)
        blobs.append(b)
    head = json.dumps(hdr, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def llama_shapes(c):
    D, H, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = D // c["num_attention_heads"] * c["num_key_value_heads"]
    s = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not c["tie_word_embeddings"]:
        s["lm_head.weight"] = (V, D)
    for i in range(L):
        p = "model.layers.%d." % i
        s[p + "input_layernorm.weight"] = (D,)
        s[p + "post_attention_layernorm.weight"] = (D,)
        s[p + "self_attn.q_proj.weight"] = (D, D)
        s[p + "self_attn.k_proj.weight"] = (kv, D)
        s[p + "self_attn.v_proj.weight"] = (kv, D)
        s[p + "self_attn.o_proj.weight"] = (D, D)
        s[p + "mlp.gate_proj.weight"] = (H, D)
        s[p + "mlp.up_proj.weight"] = (H, D)
        s[p + "mlp.down_proj.weight"] = (D, H)
    return s


def to_bf16_bits(x):
    u = np.asarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even (finite inputs)


def make(outdir, dtype="bf16", shards=1, seed=1, nan=None, tied=False):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
         "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 32, "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
         "tie_word_embeddings": tied, "torch_dtype": "bfloat16"}
    c["torch_dtype"] = {"f16": "float16", "f32": "float32"}.get(dtype, "bfloat16")  # the embedding's dtype
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in llama_shapes(c).items():
        x = rng.standard_normal(shape).astype("<f4")
        x.flat[0] = -0.0
        if x.size > 2:
            x.flat[1] = 1e-40  # subnormal: must survive bit-exactly
        dt = {"bf16": "BF16", "f16": "F16", "f32": "F32"}.get(dtype)
        if dtype == "mixed":
            dt = "F32" if name.endswith("norm.weight") else "BF16"
        a = {"BF16": to_bf16_bits, "F16": lambda v: v.astype("<f2"), "F32": lambda v: v}[dt](x)
        tensors[name] = (dt, a)
    if nan:
        name, idx = nan.rsplit(":", 1)
        dt, a = tensors[name]
        a.flat[int(idx)] = {"BF16": 0x7FC0, "F16": np.float16("nan"), "F32": np.float32("nan")}[dt]
    json.dump(c, open(outdir + "/config.json", "w"), indent=2)
    names = sorted(tensors)
    if shards == 1:
        write(outdir + "/model.safetensors", tensors, {"format": "pt"})
        return
    wmap = {}
    for k in range(shards):
        fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        part = {n: tensors[n] for n in names[k::shards]}
        write(outdir + "/" + fn, part, {"format": "pt"})
        wmap.update({n: fn for n in part})
    json.dump({"metadata": {"total_size": 0}, "weight_map": wmap},
              open(outdir + "/model.safetensors.index.json", "w"), indent=2)


if __name__ == "__main__":
    if sys.argv[1] == "hash":
        print(content_hash(parse(sys.argv[2])[1]))
    elif sys.argv[1] == "make":
        args = sys.argv[3:]
        kw = {}
        while args:
            k = args.pop(0)
            if k == "--tied":
                kw["tied"] = True
            else:
                kw[k[2:]] = args.pop(0)
        for k in ("shards", "seed"):
            if k in kw:
                kw[k] = int(kw[k])
        make(sys.argv[2], **kw)
    else:
        sys.exit("usage: st_ref.py hash FILE | make OUTDIR [options]")
