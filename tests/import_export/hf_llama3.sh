#!/bin/sh
# A Llama 3 model folder with the real Llama 3 tokenizer (fetched by
# scripts/setup.sh, not shipped: skips with 77 when absent, as
# tests/tokenizer/hf_llama3.sh): Llama-3-shaped random model (vocab 128256,
# GQA 4/2, rope_theta 500000, llama3 rope scaling in all three bands, untied
# head, bf16 shards, eos_token_id a list as Llama 3.1 writes it):
# import --from hf; logits against the PyTorch float64 reference (1e-4);
# import -> export -> import keeps the content hash and the tokenizer bytes
# (tokenizer.json, tokenizer_config.json byte-identical beside
# model.safetensors); the tokenizer read back from the checkpoint encodes as
# the tokenizer.json itself (deltasoup tokenize --model vs --tokenizer), and
# its chat template is recorded as the built-in llama3 (--chat renders the same).
set -eu
. "$(dirname "$0")/../defaults.sh"
tokdir=$(dirname "${DS_LLAMA3_TOKENIZER:-${DS_CACHE:-$HOME/.cache/deltasoup}/tokenizers/llama3-128k/tokenizer.json}")
if [ ! -r "$tokdir/tokenizer.json" ]; then
    echo "hf_llama3: $tokdir/tokenizer.json is absent (scripts/setup.sh fetches it): skipped"
    exit 77
fi
PY=$PYTHON3
$PY -c 'import numpy, torch, h5py' 2>/dev/null || { echo "numpy/torch/h5py missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
T=$(mktemp -d /tmp/ds-hf3-XXXXXX)
trap 'rm -rf "$T"' EXIT
hash_of() { sed -n 's/.*"content_sha256":"\([0-9a-f]*\)".*/\1/p'; }

$PY "$top_srcdir/tests/python/make_hf_folder.py" "$T/m" --tokenizer "$tokdir" --vocab 128256 \
    --rope-scaling llama3:8:1:4:64 --shards 3 --bos 128000 --eos 128001,128008,128009 --seed 3
h=$($DS import --from hf "$T/m" -o "$T/m.h5" --json --quiet | hash_of)
$PY "$top_srcdir/tests/python/llama_ref.py" check-hf "$top_builddir/tests/model/model_probe" "$T/m" "$T/m.h5" 48

mkdir "$T/out"
$DS export --to safetensors "$T/m.h5" -o "$T/out/model.safetensors" --quiet
cmp "$tokdir/tokenizer.json" "$T/out/tokenizer.json"
cmp "$tokdir/tokenizer_config.json" "$T/out/tokenizer_config.json"
grep -q '"eos_token_id": \[128001, 128008, 128009\]' "$T/out/config.json"
h2=$($DS import --from hf "$T/out" -o "$T/m2.h5" --json --quiet | hash_of)
[ "$h" = "$h2" ] || { echo "round trip: content hash $h -> $h2"; exit 1; }
mkdir "$T/out2"
$DS export --to safetensors "$T/m2.h5" -o "$T/out2/model.safetensors" --quiet
for f in model.safetensors config.json tokenizer.json tokenizer_config.json; do cmp "$T/out/$f" "$T/out2/$f"; done

$PY - "$T/m.h5" "$T/m2.h5" "$tokdir" <<'EOF2'
import json, sys, h5py
def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)
tj = open(sys.argv[3] + "/tokenizer.json", "rb").read()
tc = open(sys.argv[3] + "/tokenizer_config.json", "rb").read()
for p in sys.argv[1:3]:
    with h5py.File(p, "r") as f:
        g = f["tokenizer"]
        assert g["tokenizer_json"][()].tobytes() == tj and g["tokenizer_config_json"][()].tobytes() == tc, p
        assert s(g.attrs["bos_token"]) == "<|begin_of_text|>" and int(g.attrs["bos_token_id"]) == 128000, p
        assert s(g.attrs["eos_token"]) == "<|end_of_text|>" and int(g.attrs["eos_token_id"]) == 128001, p
        # recognised as the built-in (src/chat.h): the name, not the text
        assert s(g.attrs["chat_template_name"]) == "llama3" and "chat_template" not in g.attrs, p
        assert list(f.attrs["eos_token_id"]) == [128001, 128008, 128009], p
print("ok   Llama 3 tokenizer bytes, bos/eos and chat template in both checkpoints")
EOF2

printf '%s\n' '{"text": "Hello world, 12345 été"}' '{"text": "<|begin_of_text|>I'"'"'LL  \t tabs\r\n日本語 🇫🇷"}' > "$T/in.jsonl"
$DS tokenize --model "$T/m2.h5" "$T/in.jsonl" > "$T/a.jsonl"
$DS tokenize --tokenizer "$tokdir/tokenizer.json" "$T/in.jsonl" > "$T/b.jsonl"
cmp "$T/a.jsonl" "$T/b.jsonl"
printf '%s\n' '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]}' > "$T/chat.jsonl"
$DS tokenize --chat --model "$T/m2.h5" "$T/chat.jsonl" > "$T/a.jsonl"
$DS tokenize --chat --tokenizer "$tokdir/tokenizer.json" "$T/chat.jsonl" > "$T/b.jsonl"
cmp "$T/a.jsonl" "$T/b.jsonl"
grep -q '^{"ids":\[128000,128006,' "$T/a.jsonl"
echo "hf_llama3.sh: ok"
