#!/bin/sh
# deltasoup eval --ppl: the same NLL at 1, 2 and 4 ranks (1e-6 relative), and
# equal to an independent reference (own document split, the tokenizer's
# Python reference, PyTorch float64 model).
set -e
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import torch, h5py' 2>/dev/null || { echo "skip: no torch/h5py"; exit 77; }
tmp=$(mktemp -d /tmp/ds-model-eval.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
S=$top_srcdir/data/models/stories260K
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$tmp/m.h5" --quiet
# documents split on <|endoftext|> and on blank lines; some longer than --seq-len
{ cat "$top_srcdir/data/lm_corpus/tinystories_sample.txt"; printf '\n\n  \n'
  head -c 3000 "$top_srcdir/data/lm_corpus/tinystories_train_excerpt.txt"; } > "$tmp/text.txt"
for n in 1 2 4; do
    $MPIEXEC -n $n "$DELTASOUP" eval --model "$tmp/m.h5" --ppl "$tmp/text.txt" --seq-len 120 --json > "$tmp/e$n.json"
done
nll=$($PY - "$tmp" <<'PYEOF'
import json, sys
r = [json.load(open("%s/e%d.json" % (sys.argv[1], n))) for n in (1, 2, 4)]
for x in r[1:]:
    assert x["tokens"] == r[0]["tokens"] and x["documents"] == r[0]["documents"], (x, r[0])
    assert abs(x["nll"] - r[0]["nll"]) <= 1e-6 * r[0]["nll"], ("rank counts disagree", r)
print(repr(r[0]["nll"]))
PYEOF
)
$PY "$top_srcdir/tests/python/llama_ref.py" check-eval "$tmp/m.h5" "$S/tok512.bin" "$tmp/text.txt" 120 "$nll"
rc=0; "$DELTASOUP" eval --model "$tmp/m.h5" --ppl "$tmp/none.txt" 2> "$tmp/err" || rc=$?
test $rc -eq 3 && grep -q 'none.txt' "$tmp/err"
rc=0; "$DELTASOUP" eval --model "$tmp/m.h5" --ppl "$tmp/text.txt" --seq-len 100000 2> "$tmp/err" || rc=$?
test $rc -eq 2
echo "eval: ok"
