# The chat vectors' texts (made with @huggingface/jinja) rendered again with
# Python's jinja2 as transformers does (tests/tokenizer/chat_jinja2.py).
# Skips (77) when $PYTHON3 has no jinja2 (Debian: python3-jinja2).
. "$(dirname "$0")/../defaults.sh"
exec "$PYTHON3" "$top_srcdir/tests/tokenizer/chat_jinja2.py" \
    "$top_srcdir/tests/data/tokenizers/llama3-128k-chat.jsonl" \
    "$top_srcdir/tests/data/tokenizers/llama2-style-32k-chat.jsonl"
