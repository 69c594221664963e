#!/bin/sh
# Hugging Face model folders (tests/python/make_hf_folder.py, numpy only)
# with the shipped Llama-2-style tokenizer (data/tokenizers/llama2-style-32k):
#  - a Llama-3-shaped model (vocab 128256 > the tokenizer's 32000 ids: padded
#    embeddings; GQA 4/2; rope_theta 500000; llama3 rope scaling with
#    original_max_position_embeddings 64, so that the 8 frequencies of a
#    16-wide head fall in all three bands of the rule; untied head; bf16 in
#    two shards + index): `import --from hf`, then the engine's logits on the
#    checkpoint (tests/model/model_probe forward-h5) against the PyTorch
#    float64 reference on the folder (tests/python/llama_ref.py check-hf),
#    1e-4; a checkpoint imported without the rope_scaling is refused by the
#    same check (the check can fail);
#  - linear rope scaling, the same check;
#  - round trip import -> export -> import: tokenizer.json and
#    tokenizer_config.json byte-identical beside model.safetensors, the
#    config's fields kept, the same content hash, the same stored tokenizer
#    bytes; 2 ranks import the same hash and export the same files; `--from safetensors --tokenizer
#    tokenizer.json` stores the same tokenizer as --from hf; apply carries
#    the tokenizer and the attributes to its output.
# The Llama 3 tokenizer's round trip: hf_llama3.sh.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy, torch, h5py' 2>/dev/null || { echo "numpy/torch/h5py missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
MK="$PY $top_srcdir/tests/python/make_hf_folder.py"
REF="$PY $top_srcdir/tests/python/llama_ref.py"
PROBE=$top_builddir/tests/model/model_probe
TOK=$top_srcdir/data/tokenizers/llama2-style-32k
T=$(mktemp -d /tmp/ds-hf-XXXXXX)
trap 'rm -rf "$T"' EXIT
hash_of() { sed -n 's/.*"content_sha256":"\([0-9a-f]*\)".*/\1/p'; }

# 1. Llama-3-shaped, llama3 rope scaling: logits against the reference.
$MK "$T/l3" --tokenizer "$TOK" --vocab 128256 --rope-scaling llama3:8:1:4:64 --shards 2 --bos 1 --eos 2
h=$($DS import --from hf "$T/l3/" -o "$T/l3.h5" --json --quiet | hash_of)
[ -n "$h" ]
$REF check-hf "$PROBE" "$T/l3" "$T/l3.h5" 40
# The same weights without the scaling must fail the check.
mkdir "$T/plain"
$PY -c 'import json,sys; c=json.load(open(sys.argv[1])); c["rope_scaling"]=None; json.dump(c, open(sys.argv[2],"w"))' \
    "$T/l3/config.json" "$T/plain/config.json"
for f in "$T"/l3/*.safetensors* "$T"/l3/tokenizer*; do ln -s "$f" "$T/plain/"; done
$DS import --from hf "$T/plain" -o "$T/plain.h5" --quiet
if $REF check-hf "$PROBE" "$T/l3" "$T/plain.h5" 40 > "$T/neg.txt"; then
    cat "$T/neg.txt"; echo "check-hf passed a model imported without its rope scaling"; exit 1
fi
grep -q '^FAIL .*logits' "$T/neg.txt"

# 2. Linear scaling, tied head, f32, one file.
$MK "$T/lin" --tokenizer "$TOK" --vocab 32000 --rope-scaling linear:4 --tied --dtype f32 --rope-theta 10000
$DS import --from hf "$T/lin" -o "$T/lin.h5" --quiet
$REF check-hf "$PROBE" "$T/lin" "$T/lin.h5" 40

# 3. Round trip, and 2 ranks.
mkdir "$T/out"
$DS export --to safetensors "$T/l3.h5" -o "$T/out/model.safetensors" --quiet
cmp "$TOK/tokenizer.json" "$T/out/tokenizer.json"
cmp "$TOK/tokenizer_config.json" "$T/out/tokenizer_config.json"
$PY - "$T/l3/config.json" "$T/out/config.json" <<'EOF2'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
          "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
          "tie_word_embeddings", "bos_token_id", "eos_token_id", "model_type", "hidden_act", "torch_dtype"):
    assert a[k] == b[k], (k, a[k], b[k])
EOF2
# Existing tokenizer files are outputs too: refused without --overwrite
# (exit 4, nothing written), replaced with it.
mkdir "$T/busy"
echo '{}' > "$T/busy/tokenizer_config.json"
set +e
$DS export --to safetensors "$T/l3.h5" -o "$T/busy/model.safetensors" > "$T/msg" 2>&1
rc=$?
set -e
[ "$rc" = 4 ] && grep -q 'tokenizer_config.json' "$T/msg" && [ "$(ls "$T/busy")" = tokenizer_config.json ] ||
    { cat "$T/msg"; echo "export over an existing tokenizer_config.json: exit $rc"; ls "$T/busy"; exit 1; }
$DS export --to safetensors "$T/l3.h5" -o "$T/busy/model.safetensors" --overwrite --quiet
cmp "$TOK/tokenizer_config.json" "$T/busy/tokenizer_config.json"
mkdir "$T/out2"
$MPIEXEC -n 2 $DS export --to safetensors "$T/l3.h5" -o "$T/out2/model.safetensors" --quiet
for f in model.safetensors config.json tokenizer.json tokenizer_config.json; do cmp "$T/out/$f" "$T/out2/$f"; done
h2=$($DS import --from hf "$T/out" -o "$T/l3b.h5" --json --quiet | hash_of)
[ "$h" = "$h2" ] || { echo "round trip: content hash $h -> $h2"; exit 1; }
h3=$($MPIEXEC -n 2 $DS import --from hf "$T/l3" -o "$T/l3r2.h5" --json --quiet | hash_of)
[ "$h" = "$h3" ] || { echo "2 ranks: content hash $h -> $h3"; exit 1; }
$DS import --from safetensors "$T/l3/model.safetensors.index.json" --tokenizer "$TOK/tokenizer.json" \
    -o "$T/st.h5" --quiet
$PY - "$T/l3.h5" "$T/l3b.h5" "$T/l3r2.h5" "$T/st.h5" "$TOK" <<'EOF2'
import sys, h5py, numpy as np
tok = sys.argv[5]
def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)
want = {"tokenizer_json": open(tok + "/tokenizer.json", "rb").read(),
        "tokenizer_config_json": open(tok + "/tokenizer_config.json", "rb").read()}
for p in sys.argv[1:5]:
    with h5py.File(p, "r") as f:
        g = f["tokenizer"]
        assert s(g.attrs["format"]) == "hf", p
        for k, v in want.items():
            assert g[k][()].tobytes() == v, (p, k)
        assert s(g.attrs["bos_token"]) == "<s>" and s(g.attrs["eos_token"]) == "</s>", p
        assert int(g.attrs["bos_token_id"]) == 1 and int(g.attrs["eos_token_id"]) == 2, p
        assert int(g.attrs["n_ids"]) == 32000, p
        a = f.attrs
        assert s(a["rope_scaling"]) == "llama3" and float(a["rope_scaling_factor"]) == 8, p
        assert int(a["rope_scaling_original_max_position_embeddings"]) == 64, p
        assert int(a["vocab_size"]) == 128256 and int(a["bos_token_id"]) == 1 and int(a["eos_token_id"]) == 2, p
print("ok   tokenizer bytes and attributes in all four checkpoints")
EOF2
# The stored tokenizer encodes and decodes as the tokenizer.json itself.
printf '%s\n' '{"text": "Hello world, 12345 été\t\r\n  日本語 🇫🇷 <s> x"}' '{"text": ""}' > "$T/in.jsonl"
$DS tokenize --model "$T/l3b.h5" "$T/in.jsonl" > "$T/a.jsonl"
$DS tokenize --tokenizer "$TOK/tokenizer.json" "$T/in.jsonl" > "$T/b.jsonl"
cmp "$T/a.jsonl" "$T/b.jsonl"
$DS tokenize --decode --model "$T/l3b.h5" "$T/a.jsonl" > "$T/c.jsonl"
$DS tokenize --decode --tokenizer "$TOK/tokenizer.json" "$T/b.jsonl" > "$T/d.jsonl"
cmp "$T/c.jsonl" "$T/d.jsonl"

# A tokenizer.json without a tokenizer_config.json beside it: stored alone,
# exported alone.
mkdir "$T/tokonly" "$T/out3"
cp "$TOK/tokenizer.json" "$T/tokonly/"
$DS import --from safetensors "$T/lin/model.safetensors" --tokenizer "$T/tokonly/tokenizer.json" -o "$T/tokonly.h5" --quiet
$DS export --to safetensors "$T/tokonly.h5" -o "$T/out3/model.safetensors" --quiet
cmp "$TOK/tokenizer.json" "$T/out3/tokenizer.json"
[ ! -e "$T/out3/tokenizer_config.json" ]
$PY - "$T/tokonly.h5" <<'EOF2'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    g = f["tokenizer"]
    assert "tokenizer_config_json" not in g and int(g.attrs["add_bos_token"]) == -1
    assert int(g.attrs["bos_token_id"]) == -1 and g.attrs["bos_token"] in (b"", "")
EOF2

# The tokenizer and the new attributes go on through apply (2 ranks): base l3,
# fine-tune = the same folder with other weights.
$MK "$T/l3s" --tokenizer "$TOK" --vocab 128256 --rope-scaling llama3:8:1:4:64 --bos 1 --eos 2 --seed 9
$DS import --from hf "$T/l3s" -o "$T/l3s.h5" --quiet
$DS compress --base "$T/l3.h5" --finetuned "$T/l3s.h5" -o "$T/d.bd.h5" --quiet
$MPIEXEC -n 2 $DS apply --base "$T/l3.h5" --delta "$T/d.bd.h5" -o "$T/ap.h5" --quiet
$PY - "$T/l3.h5" "$T/ap.h5" <<'EOF2'
import sys, h5py
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    for k in ("tokenizer_json", "tokenizer_config_json"):
        assert a["tokenizer"][k][()].tobytes() == b["tokenizer"][k][()].tobytes(), k
    assert dict(a["tokenizer"].attrs) == dict(b["tokenizer"].attrs)
    for k in a.attrs:
        if k != "content_sha256":
            assert str(a.attrs[k]) == str(b.attrs[k]), k
print("ok   apply keeps the tokenizer and the config attributes")
EOF2
# A checkpoint without the new attributes still reads as before: stories260K.
$DS import --from llama2c "$top_srcdir/data/models/stories260K/stories260K.bin" -o "$T/s.h5" --quiet
mkdir "$T/s"
$DS export --to safetensors "$T/s.h5" -o "$T/s/model.safetensors" --quiet
! grep -q 'rope_scaling\|token_id' "$T/s/config.json"
[ ! -e "$T/s/tokenizer.json" ]
echo "hf.sh: ok"
