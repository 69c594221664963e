#!/bin/sh
# deltasoup tokenize: bad input is one line "deltasoup tokenize: error:
# FILE:LINE: ..." with exit 3 and nothing on standard output (not even the
# good lines before it), at 1 and 2 ranks; usage errors exit 2; --model
# reads the checkpoint's tokenizer (a llama2.c one: BOS, byte pieces, chat
# none only).
set -eu
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-tokenize-err.XXXXXX)
trap 'rm -rf "$w"' EXIT
L2=$top_srcdir/data/tokenizers/llama2-style-32k/tokenizer.json
S=$top_srcdir/data/models/stories260K
fail=0

# expect CODE PATTERN ARGS...: exit CODE, stderr one line containing PATTERN, stdout empty
expect() {
    code=$1 pat=$2
    shift 2
    rc=0
    "$@" >"$w/out" 2>"$w/err" || rc=$?
    if [ "$rc" != "$code" ] || ! grep -qF -- "$pat" "$w/err" || [ -s "$w/out" ] || [ "$(grep -c 'error' "$w/err")" != 1 ]; then
        echo "FAIL: $*: exit $rc (want $code), stderr: $(cat "$w/err"), stdout: $(head -c 200 "$w/out")"
        fail=1
    fi
}
tk() { "$DELTASOUP" tokenize --tokenizer "$L2" "$@"; }

printf '{"text":"fine"}\n{"text": "a\377b"}\n' >"$w/utf8.jsonl"
expect 3 "$w/utf8.jsonl:2: invalid UTF-8" tk "$w/utf8.jsonl"
printf '{"text":"fine"}\n{"text":"\\ud800"}\n' >"$w/surrogate.jsonl"
expect 3 "$w/surrogate.jsonl:2: " tk "$w/surrogate.jsonl"
printf '{"text":"fine"}\n{"text":"a"\n' >"$w/json.jsonl"
expect 3 "$w/json.jsonl:2: " tk "$w/json.jsonl"
printf '{"text":"fine"}\n\n' >"$w/empty.jsonl"
expect 3 "$w/empty.jsonl:2: " tk "$w/empty.jsonl"
printf '["text"]\n' >"$w/array.jsonl"
expect 3 "$w/array.jsonl:1: not a JSON object" tk "$w/array.jsonl"
printf '{"txt":"a"}\n' >"$w/key.jsonl"
expect 3 "$w/key.jsonl:1: expected {\"text\": STRING}" tk "$w/key.jsonl"
printf '{"text":"a\\u0000b"}\n' >"$w/nul.jsonl"
expect 3 "$w/nul.jsonl:1: " tk "$w/nul.jsonl"
printf '{"ids":[1,2]}\n{"ids":[5,32000]}\n' >"$w/range.jsonl"
expect 3 "$w/range.jsonl:2: ids[1]: 32000 is out of range 0..31999" tk --decode "$w/range.jsonl"
printf '{"ids":[-1]}\n' >"$w/neg.jsonl"
expect 3 "$w/neg.jsonl:1: ids[0]: -1 is out of range" tk --decode "$w/neg.jsonl"
printf '{"ids":[1.5]}\n' >"$w/real.jsonl"
expect 3 "$w/real.jsonl:1: ids[0] is not an integer" tk --decode "$w/real.jsonl"
printf '{"messages":[{"role":"user","content":"hi"}]}\n{"messages":[{"role":"tool","content":"x"}]}\n' >"$w/role.jsonl"
expect 3 "$w/role.jsonl:2: chat: message 1: unknown role 'tool'" tk --chat --chat-template chatml "$w/role.jsonl"
printf '{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}\n' >"$w/order.jsonl"
expect 3 "$w/order.jsonl:1: chat template: message 2 (user): Conversation roles must alternate" \
    tk --chat --chat-template llama2 "$w/order.jsonl"
printf '{"messages":[]}\n' >"$w/none.jsonl"
expect 3 "$w/none.jsonl:1: chat: no messages" tk --chat --chat-template mistral "$w/none.jsonl"
printf '{"messages":[{"role":"user"}]}\n' >"$w/content.jsonl"
expect 3 "$w/content.jsonl:1: messages[0]: expected" tk --chat "$w/content.jsonl"
expect 3 "$w/absent.jsonl: cannot open" tk "$w/absent.jsonl"
expect 3 "$w/role.jsonl:2:" $MPIEXEC -n 2 "$DELTASOUP" tokenize --tokenizer "$L2" --chat "$w/role.jsonl"

# usage
printf '{"text":"a"}\n' >"$w/a.jsonl"
expect 2 "give one of --model M.h5 and --tokenizer FILE" "$DELTASOUP" tokenize "$w/a.jsonl"
expect 2 "--decode and --chat exclude each other" tk --decode --chat "$w/a.jsonl"
expect 2 "--chat-template is for --chat" tk --chat-template llama3 "$w/a.jsonl"
expect 2 "--chat-template: expected auto or one of llama3, llama2, mistral, chatml, none, got 'vicuna'" \
    tk --chat --chat-template vicuna "$w/a.jsonl"
expect 2 "IN.jsonl" tk

# --model: a checkpoint's llama2.c tokenizer gives what the file gives
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/m.h5" --quiet >/dev/null
printf '{"text":"Once upon a time"}\n{"text":""}\n{"text":"\\u00e9\\u4f60"}\n' >"$w/t.jsonl"
"$DELTASOUP" tokenize --model "$w/m.h5" "$w/t.jsonl" >"$w/m.out"
"$DELTASOUP" tokenize --tokenizer "$S/tok512.bin" "$w/t.jsonl" >"$w/f.out"
cmp "$w/m.out" "$w/f.out" || { echo "FAIL: --model and --tokenizer differ"; fail=1; }
grep -q '^{"ids":\[1,' "$w/m.out" || { echo "FAIL: no BOS: $(cat "$w/m.out")"; fail=1; }
"$DELTASOUP" tokenize --model "$w/m.h5" --decode "$w/m.out" >"$w/back.out"
printf '{"text":"Once upon a time"}\n{"text":""}\n{"text":"\303\251\344\275\240"}\n' | cmp - "$w/back.out" ||
    { echo "FAIL: decode(encode(x)) != x: $(cat "$w/back.out")"; fail=1; }
printf '{"messages":[{"role":"user","content":"Once"}]}\n' >"$w/c.jsonl"
"$DELTASOUP" tokenize --model "$w/m.h5" --chat "$w/c.jsonl" >"$w/c.out"
printf '{"text":"User: Once\\nAssistant:"}\n' | "$DELTASOUP" tokenize --model "$w/m.h5" /dev/stdin | cmp - "$w/c.out" ||
    { echo "FAIL: --chat with no recorded template is not eval's plain dialogue"; fail=1; }
expect 3 "--chat-template llama3: the model's tokenizer is a llama2.c one" \
    "$DELTASOUP" tokenize --model "$w/m.h5" --chat --chat-template llama3 "$w/c.jsonl"
# a chat template that is no built-in's: none, with a warning
mkdir "$w/other"
cp "$L2" "$w/other/tokenizer.json"
printf '{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ messages }}"}\n' >"$w/other/tokenizer_config.json"
"$DELTASOUP" tokenize --tokenizer "$w/other/tokenizer.json" --chat "$w/c.jsonl" >"$w/o.out" 2>"$w/o.err"
grep -q "warning: the tokenizer's chat template is none of the built-ins" "$w/o.err" || no_warn=1
"$DELTASOUP" tokenize --tokenizer "$L2" --chat --chat-template none "$w/c.jsonl" | cmp - "$w/o.out" ||
    { echo "FAIL: an unknown template is not none"; fail=1; }
[ -z "${no_warn:-}" ] || { echo "FAIL: no warning: $(cat "$w/o.err")"; fail=1; }
"$DELTASOUP" tokenize --tokenizer "$w/other/tokenizer.json" --chat --chat-template none "$w/c.jsonl" 2>"$w/o.err" >/dev/null
[ ! -s "$w/o.err" ] || { echo "FAIL: a warning with --chat-template: $(cat "$w/o.err")"; fail=1; }
[ $fail = 0 ] && echo "tokenize_errors: ok"
exit $fail
