#!/bin/sh
# deltasoup tokenize with the shipped Llama-2-style tokenizer.json
# (data/tokenizers/llama2-style-32k) against the reference vectors: encode,
# --no-special, decode, --chat with llama2, mistral and chatml
# (tests/tokenizer/tokenize_ref.py), 1 and 2 ranks.
set -eu
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-tokenize-l2.XXXXXX)
trap 'rm -rf "$w"' EXIT
V=$top_srcdir/tests/data/tokenizers
"$PYTHON3" "$top_srcdir/tests/tokenizer/tokenize_ref.py" "$DELTASOUP" \
    "$top_srcdir/data/tokenizers/llama2-style-32k/tokenizer.json" "$V/llama2-style-32k.jsonl" \
    "$V/llama2-style-32k-chat.jsonl" "$top_srcdir" "$w" "$MPIEXEC"
