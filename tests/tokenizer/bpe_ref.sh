#!/bin/sh
# The C BPE encoder against the independent Python reference
# (tests/python/bpe_ref.py) on the shipped vocabulary and corpus.
set -e
. "$(dirname "$0")/../defaults.sh"
exec "$PYTHON3" "$top_srcdir/tests/python/bpe_ref.py" \
    "$top_srcdir/data/models/stories260K/tok512.bin" "$top_srcdir/data/lm_corpus" \
    "$top_builddir/tests/unit/test_tokenizer" --encode "$top_srcdir/data/models/stories260K/tok512.bin"
