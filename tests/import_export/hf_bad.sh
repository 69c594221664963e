#!/bin/sh
# import --from hf refuses what the engine does not implement, and broken
# folders: one line naming the file and the field, exit 3, nothing written
# (no OUT.h5, no OUT.h5.tmp). Usage errors exit 2.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy' 2>/dev/null || { echo "numpy missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
TOK=$top_srcdir/data/tokenizers/llama2-style-32k
T=$(mktemp -d /tmp/ds-hfbad-XXXXXX)
trap 'rm -rf "$T"' EXIT
$PY "$top_srcdir/tests/python/make_hf_folder.py" "$T/good" --tokenizer "$TOK" --vocab 32000 --dim 32 --hidden 64 \
    --layers 1 --dtype f32
$DS import --from hf "$T/good" -o "$T/good.h5" --quiet >/dev/null
n=0

# expect CODE PATTERN DIR [extra args]: import DIR fails with CODE, the
# message (one line) matches PATTERN, nothing is written.
expect() {
    code=$1 pat=$2 dir=$3
    shift 3
    n=$((n + 1))
    set +e
    $DS import --from hf "$dir" -o "$T/out.h5" "$@" > "$T/msg" 2>&1
    rc=$?
    set -e
    if [ "$rc" != "$code" ] || ! grep -q -- "$pat" "$T/msg" || [ "$(wc -l < "$T/msg")" != 1 ] ||
        [ -e "$T/out.h5" ] || [ -e "$T/out.h5.tmp" ]; then
        echo "case $n ($dir): exit $rc (want $code), message:"; cat "$T/msg"; echo "want: $pat"; exit 1
    fi
}

# bad CONFIG_EDIT PATTERN [FILE]: a copy of the good folder with config.json
# edited by the Python statement CONFIG_EDIT (on dict c); the message names
# FILE (default config.json) of the copy.
bad() {
    d=$T/case$n
    mkdir "$d"
    for f in "$T"/good/*; do ln -s "$f" "$d/"; done
    rm "$d/config.json"
    $PY -c "import json,sys; c=json.load(open(sys.argv[1])); $1; json.dump(c, open(sys.argv[2], 'w'))" \
        "$T/good/config.json" "$d/config.json"
    expect 3 "$d/${3:-config.json}: $2" "$d"
}

bad 'c["attention_bias"] = True' "attention_bias true is not supported"
bad 'c["mlp_bias"] = True' "mlp_bias true is not supported"
bad 'c["sliding_window"] = 4096' "sliding_window is set: not supported"
bad 'c["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}' "rope_scaling type 'dynamic' is not supported"
bad 'c["rope_scaling"] = {"type": "yarn", "factor": 4.0}' "rope_scaling type 'yarn' is not supported"
bad 'c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}' \
    "rope_scaling.low_freq_factor: missing"
bad 'c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 64}' \
    "rope_scaling: low_freq_factor 4 must be > 0 and below high_freq_factor 1"
bad 'c["rope_scaling"] = {"rope_type": "linear"}' "rope_scaling.factor: missing"
bad 'c["hidden_act"] = "gelu"' "hidden_act 'gelu' is not supported"
bad 'c["head_dim"] = 16' "head_dim != hidden_size / num_attention_heads is not supported"
bad 'c["model_type"] = "mistral"' "model_type 'mistral' is not supported"
bad 'c["eos_token_id"] = "x"' "eos_token_id is not a token id or a list of token ids"
bad 'c["bos_token_id"] = 32000' "bos_token_id 32000 outside the vocabulary"
bad 'c["vocab_size"] = 1000' "the tokenizer has 32000 ids for a vocabulary of 1000" tokenizer.json

# Broken folders.
mkdir "$T/notok" "$T/noweights" "$T/wordpiece"
for f in config.json model.safetensors; do ln -s "$T/good/$f" "$T/notok/"; done
for f in config.json tokenizer.json tokenizer_config.json; do ln -s "$T/good/$f" "$T/noweights/"; done
expect 3 "$T/notok/tokenizer.json: cannot open" "$T/notok"
expect 3 "$T/noweights: no model.safetensors.index.json or model.safetensors" "$T/noweights"
expect 3 "not a folder" "$T/good/config.json"
for f in config.json model.safetensors; do ln -s "$T/good/$f" "$T/wordpiece/"; done
printf '%s\n' '{"version": "1.0", "added_tokens": [], "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}' \
    > "$T/wordpiece/tokenizer.json"
expect 3 "$T/wordpiece/tokenizer.json" "$T/wordpiece"

# Usage: one folder, no --config / --tokenizer with --from hf.
expect 2 "takes one model folder" "$T/good" "$T/good"
expect 2 "no --config, --tokenizer" "$T/good" --tokenizer "$TOK/tokenizer.json"
echo "hf_bad.sh: $n cases ok"
