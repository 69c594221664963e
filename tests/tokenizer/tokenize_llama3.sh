#!/bin/sh
# deltasoup tokenize with Llama 3's tokenizer.json against the reference
# vectors: encode, --no-special, decode, --chat with llama3 and with the
# template its tokenizer_config.json records (auto), 1 and 2 ranks
# (tests/tokenizer/tokenize_ref.py). Skips (77) without the file that
# scripts/setup.sh fetches (DS_LLAMA3_TOKENIZER=PATH names another copy).
set -eu
. "$(dirname "$0")/../defaults.sh"
tok=${DS_LLAMA3_TOKENIZER:-${DS_CACHE:-$HOME/.cache/deltasoup}/tokenizers/llama3-128k/tokenizer.json}
if [ ! -r "$tok" ]; then
    echo "tokenize_llama3: $tok is absent (scripts/setup.sh fetches it): skipped"
    exit 77
fi
w=$(mktemp -d /tmp/ds-tokenize-l3.XXXXXX)
trap 'rm -rf "$w"' EXIT
V=$top_srcdir/tests/data/tokenizers
"$PYTHON3" "$top_srcdir/tests/tokenizer/tokenize_ref.py" "$DELTASOUP" "$tok" "$V/llama3-128k.jsonl" \
    "$V/llama3-128k-chat.jsonl" "$top_srcdir" "$w" "$MPIEXEC"
