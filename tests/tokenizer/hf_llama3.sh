# Llama 3's byte-level tokenizer against its reference vectors
# (tests/data/tokenizers/llama3-128k.jsonl): the bytelevel-encode case of
# tests/unit/test_hf_tokenizer with the tokenizer.json that scripts/setup.sh
# fetches (not shipped: Meta Llama 3 Community License). Skips (77) when it is
# absent; DS_LLAMA3_TOKENIZER=PATH/tokenizer.json names another copy (DS_CACHE: as setup.sh).
. "$(dirname "$0")/../defaults.sh"
tok=${DS_LLAMA3_TOKENIZER:-${DS_CACHE:-$HOME/.cache/deltasoup}/tokenizers/llama3-128k/tokenizer.json}
if [ ! -r "$tok" ]; then
    echo "hf_llama3: $tok is absent (scripts/setup.sh fetches it): skipped"
    exit 77
fi
DS_LLAMA3_TOKENIZER=$tok DS_REQUIRE_LLAMA3=1 CK_RUN_CASE=bytelevel-encode \
    "$top_builddir/tests/unit/test_hf_tokenizer"
