#!/bin/sh
# deltasoup generate on the shipped stories260K: greedy tokens agree with the
# independent PyTorch reference; sampling is reproducible for a seed.
set -e
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import torch, h5py' 2>/dev/null || { echo "skip: no torch/h5py"; exit 77; }
tmp=$(mktemp -d /tmp/ds-model-gen.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
S=$top_srcdir/data/models/stories260K
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$tmp/m.h5" --quiet
"$DELTASOUP" generate --model "$tmp/m.h5" --prompt "Once upon a time, a little dog" --temperature 0 \
    --max-tokens 80 --json --quiet > "$tmp/g.json"
$PY "$top_srcdir/tests/python/llama_ref.py" check-generate "$tmp/m.h5" "$tmp/g.json"
"$DELTASOUP" generate --model "$tmp/m.h5" --prompt "The cat" --temperature 0.9 --seed 5 --max-tokens 40 --quiet > "$tmp/a"
"$DELTASOUP" generate --model "$tmp/m.h5" --prompt "The cat" --temperature 0.9 --seed 5 --max-tokens 40 --quiet > "$tmp/b"
"$DELTASOUP" generate --model "$tmp/m.h5" --prompt "The cat" --temperature 0.9 --seed 6 --max-tokens 40 --quiet > "$tmp/c"
cmp "$tmp/a" "$tmp/b"
! cmp -s "$tmp/a" "$tmp/c" || { echo "seeds 5 and 6 gave the same sample"; exit 1; }
grep -q '^The cat' "$tmp/a"
# bad input: a clear error and a non-zero exit
rc=0; "$DELTASOUP" generate --model "$tmp/nope.h5" 2> "$tmp/err" || rc=$?
test $rc -eq 3 && grep -q 'nope.h5' "$tmp/err"
rc=0; "$DELTASOUP" generate --model "$tmp/m.h5" --max-tokens 0 2> "$tmp/err" || rc=$?
test $rc -eq 2
echo "generate: ok"
