#!/bin/sh
# The task runner through a pipeline (issue 14, docs/eval.md "Pipelined
# tasks"): every task kind -- truthfulqa-mc (a shared prefix, each stage
# keeping its layers' keys and values), refusal and xstest (greedy generation,
# a KV cache per stage), ppl, kl (the reference model sharded like the
# evaluated one), mtbench-answers -- on the base and base + a delta gives
# the same results, item records and answers at 1 rank and with
# --pipeline P: 5 ranks as P=5 (one layer a stage), 4 ranks as 2
# groups of P=2; on stories260K (f32, tied) and on a random 6-layer bf16
# model with grouped KV heads (3 ranks as P=3). Equal to the last digit:
# every stage runs the whole model's operations in the same order. A kl
# reference of another depth is refused at P > 1 (exit 3, naming it).
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy' 2> /dev/null || { echo "skip: $PY lacks numpy"; exit 77; }
w=$(mktemp -d /tmp/ds-eval-pipeline.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
T=$top_srcdir/data/lm_corpus/tinystories_sample.txt
q=--quiet
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" $q > /dev/null
$PY "$top_srcdir/tests/python/bitdelta_ref.py" perturb "$w/b.h5" "$w/f.h5" 3
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" $q > /dev/null
$PY "$top_srcdir/tests/python/make_hf_folder.py" "$w/r6" --tokenizer "$top_srcdir/data/tokenizers/llama2-style-32k" \
    --vocab 32000 --dim 32 --hidden 64 --layers 6 --heads 4 --kv-heads 2 --max-pos 128 --dtype bf16 --seed 7 > /dev/null
"$DELTASOUP" import --from hf "$w/r6" -o "$w/r6.h5" $q > /dev/null
head -c 3000 "$T" > "$w/text.txt"
printf 'base\n%s\n' "$w/d.bd.h5" > "$w/list.txt"
tasks="--task truthfulqa-mc:$B/truthfulqa/data/mc_task.json --task refusal:$B/advbench/harmful_behaviors.csv
 --task xstest:$B/xstest/xstest_prompts.csv --task ppl:$w/text.txt --task kl:$w/f.h5:$w/text.txt
 --task mtbench-answers:$B/mt_bench/question.jsonl --limit 2 --max-tokens 6 --seq-len 64"
run() { # NAME RANKS P MODEL ARGS...
    _d=$w/$1 _n=$2 _p=$3 _m=$4
    shift 4
    mkdir "$_d"
    # shellcheck disable=SC2086
    $MPIEXEC -n "$_n" "$DELTASOUP" eval --model "$_m" --pipeline "$_p" "$@" --json "$_d/all.json" \
        --items "$_d/items.jsonl" --answers-dir "$_d" $q > /dev/null 2> "$_d/err" ||
        { cat "$_d/err"; echo "FAIL: $* at $_n ranks, --pipeline $_p"; exit 1; }
}
# shellcheck disable=SC2086
{
    run s1 1 1 "$w/b.h5" --delta-list "$w/list.txt" $tasks
    run s4 4 2 "$w/b.h5" --delta-list "$w/list.txt" $tasks
    run s5 5 5 "$w/b.h5" --delta-list "$w/list.txt" $tasks
    r6tasks="--task truthfulqa-mc:$B/truthfulqa/data/mc_task.json --task refusal:$B/advbench/harmful_behaviors.csv
     --task ppl:$w/text.txt --limit 2 --max-tokens 6 --seq-len 64"
    run r1 1 1 "$w/r6.h5" $r6tasks
    run r3 3 3 "$w/r6.h5" $r6tasks
}
# a kl reference of another depth cannot be split at the same layers
if $MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --task "kl:$w/r6.h5:$w/text.txt" --pipeline 2 $q \
    > /dev/null 2> "$w/err"; then
    echo "FAIL: a 6-layer kl reference of a 5-layer model at --pipeline 2 was accepted"; exit 1
fi
grep -q "r6.h5: 6 layers, but the pipeline's stages split 5 (--pipeline 2 needs models of the same depth)" "$w/err" ||
    { cat "$w/err"; echo "FAIL: the depth error"; exit 1; }
$PY - "$w" <<'PYEOF'
import json, os, sys
w = sys.argv[1]
def load(d):
    return json.load(open("%s/%s/all.json" % (w, d)))
def items(d):
    return open("%s/%s/items.jsonl" % (w, d)).read()
def answers(d, m):
    return [dict(json.loads(l), tstamp=0) for l in open("%s/%s/%s.jsonl" % (w, d, m))]
ref = load("s1")
kinds = {r["task"].split(":")[0] for r in ref["results"]}
assert kinds == {"truthfulqa-mc", "refusal", "xstest", "ppl", "kl", "mtbench-answers"}, kinds
assert len(ref["results"]) >= 16, len(ref["results"])
for d in ("s4", "s5"):
    assert load(d)["results"] == ref["results"], "results at %s differ from 1 rank" % d
    assert items(d) == items("s1"), "items at %s differ from 1 rank" % d
    for m in ("base", "d"):
        assert answers(d, m) == answers("s1", m), "%s answers at %s differ" % (m, d)
assert load("r3")["results"] == load("r1")["results"] and items("r3") == items("r1"), "r6 at P=3 differs"
print("pipelined tasks: %d result rows equal at 1 rank, 2 groups of P=2, P=5; r6 at P=3" % len(ref["results"]))
PYEOF
echo "eval pipeline: ok"
