#!/bin/sh
# --delta on eval and generate: adding the delta to the loaded f32 weights
# must give exactly what apply writes (a f32 base: the same float32 sums),
# so eval --model B --delta D equals eval --model apply(B, D) to the last
# digit and greedy generation is the same text; a delta for another base is
# refused (one error line, exit 3) unless --force. The fine-tune is a real
# one from `deltasoup finetune` on text unlike the base's.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
model=$top_srcdir/data/models/stories260K
text=$top_srcdir/data/lm_corpus/tinystories_sample.txt
w=${TMPDIR:-/tmp}/ds-bitdelta-fly.$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
q=--quiet

"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b.h5" $q >/dev/null
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b16.h5" --dtype bf16 $q >/dev/null
head -c 1500 "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" >"$w/user.txt"
"$DELTASOUP" finetune --base "$w/b.h5" --data "$w/user.txt" -o "$w/f.h5" --steps 6 --batch 2 --seq-len 32 --lr 3e-3 $q >/dev/null
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" $q >/dev/null
"$DELTASOUP" apply --base "$w/b.h5" --delta "$w/d.bd.h5" -o "$w/a.h5" $q >/dev/null

# at 2 ranks both (eval's sums depend on OpenBLAS threads per rank)
nll() { $MPIEXEC -n 2 "$DELTASOUP" eval "$@" --ppl "$text" --seq-len 64 --json $q | $PY -c 'import json,sys; print(json.load(sys.stdin)["nll"])'; }
e_applied=$(nll --model "$w/a.h5")
e_fly=$(nll --model "$w/b.h5" --delta "$w/d.bd.h5")
e_base=$(nll --model "$w/b.h5")
echo "nll: base $e_base, applied $e_applied, base --delta $e_fly"
[ "$e_applied" = "$e_fly" ] || { echo "FAIL: eval --delta differs from eval of the applied model"; exit 1; }
[ "$e_applied" != "$e_base" ] || { echo "FAIL: the delta changed nothing"; exit 1; }

g_applied=$("$DELTASOUP" generate --model "$w/a.h5" --prompt "Once upon a time" --max-tokens 40 --temperature 0 $q)
g_fly=$("$DELTASOUP" generate --model "$w/b.h5" --delta "$w/d.bd.h5" --prompt "Once upon a time" --max-tokens 40 --temperature 0 $q)
[ "$g_applied" = "$g_fly" ] || { echo "FAIL: generate --delta differs: '$g_fly' vs '$g_applied'"; exit 1; }

# another base (the same weights in bf16: another content hash)
set +e
"$DELTASOUP" eval --model "$w/b16.h5" --delta "$w/d.bd.h5" --ppl "$text" $q >/dev/null 2>"$w/err"
rc=$?
set -e
[ "$rc" -eq 3 ] && [ "$(grep -c . "$w/err")" -eq 1 ] && grep -q "b16.h5" "$w/err" && grep -q "d.bd.h5" "$w/err" ||
    { echo "FAIL: wrong base not refused properly (exit $rc)"; cat "$w/err"; exit 1; }
"$DELTASOUP" generate --model "$w/b16.h5" --delta "$w/d.bd.h5" --force --max-tokens 5 --temperature 0 $q >/dev/null 2>"$w/err"
grep -q warning "$w/err" || { echo "FAIL: --force gave no warning"; exit 1; }
echo "ok"
