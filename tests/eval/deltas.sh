#!/bin/sh
# eval over many deltas: every task (limited) on base + 3 real deltas
# (finetune + compress) at 1 and 3 ranks gives identical results, items and
# MT-Bench answers (but for the time stamp); one delta alone gives exactly
# its rows of the list run; the deltas change the numbers; CSV = JSON; the
# KL of a delta against the applied model is ~0; --ppl keeps its report.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
w=$(mktemp -d /tmp/ds-eval-deltas.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
T=$top_srcdir/data/lm_corpus/tinystories_sample.txt
q=--quiet
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" $q >/dev/null
for i in 1 2 3; do
    # three users' fine-tunes on different text
    tail -c +$((i * 2000)) "$top_srcdir/data/lm_corpus/tinystories_train_excerpt.txt" | head -c 1500 >"$w/u$i.txt"
    "$DELTASOUP" finetune --base "$w/b.h5" --data "$w/u$i.txt" -o "$w/f$i.h5" --steps 4 --batch 2 --seq-len 32 \
        --lr 3e-3 $q >/dev/null
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f$i.h5" -o "$w/d$i.bd.h5" $q >/dev/null
done
"$DELTASOUP" apply --base "$w/b.h5" --delta "$w/d2.bd.h5" -o "$w/a2.h5" $q >/dev/null
printf '# deltas\nbase\n%s\n\n%s\n' "$w/d1.bd.h5" "$w/d2.bd.h5" >"$w/list.txt"
tasks="--task truthfulqa-mc:$B/truthfulqa/data/mc_task.json --task refusal:$B/advbench/harmful_behaviors.csv
 --task xstest:$B/xstest/xstest_prompts.csv --task ppl:$T --task kl:$w/a2.h5:$T
 --task mtbench-answers:$B/mt_bench/question.jsonl --limit 3 --max-tokens 8 --seq-len 96"
for n in 1 3; do
    mkdir "$w/r$n"
    # shellcheck disable=SC2086
    $MPIEXEC -n $n "$DELTASOUP" eval --model "$w/b.h5" --delta-list "$w/list.txt" --delta "$w/d3.bd.h5" $tasks \
        --json "$w/r$n/all.json" --csv "$w/r$n/all.csv" --items "$w/r$n/items.jsonl" $q >"$w/r$n/table.txt"
done
mkdir "$w/one"
# shellcheck disable=SC2086
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --delta "$w/d2.bd.h5" $tasks --json "$w/one/all.json" \
    --items "$w/one/items.jsonl" $q >/dev/null
$PY - "$w" <<'PYEOF'
import csv, json, sys
w = sys.argv[1]
def load(d):
    return json.load(open("%s/%s/all.json" % (w, d)))
r1, r3, one = load("r1"), load("r3"), load("one")
assert r1["deltas"] == ["base", w + "/d1.bd.h5", w + "/d2.bd.h5", w + "/d3.bd.h5"], r1["deltas"]
assert r1["results"] == r3["results"], "1 and 3 ranks differ"
assert open(w + "/r1/items.jsonl").read() == open(w + "/r3/items.jsonl").read(), "items differ between rank counts"
for m in ("base", "d1", "d2", "d3"):
    a1 = [json.loads(l) for l in open("%s/r1/%s.jsonl" % (w, m))]
    a3 = [json.loads(l) for l in open("%s/r3/%s.jsonl" % (w, m))]
    assert len(a1) == 3 and [dict(a, tstamp=0) for a in a1] == [dict(a, tstamp=0) for a in a3], m
    assert all(a["model_id"] == m for a in a1)
d2 = w + "/d2.bd.h5"
mine = [r for r in r1["results"] if r["delta"] == d2]
assert mine == one["results"] and len(mine) == 9, "d2 alone differs from d2 in the list"
items2 = [l for l in map(json.loads, open(w + "/r1/items.jsonl")) if l["delta"] == d2]
assert items2 == [json.loads(l) for l in open(w + "/one/items.jsonl")], "d2's items differ"
by = {(r["delta"], r["task"], r["metric"]): r["value"] for r in r1["results"]}
assert all(by[(d, "ppl", "nll")] != by[("base", "ppl", "nll")] for d in r1["deltas"][1:]), "a delta changed nothing"
assert by[(d2, "kl", "kl")] < 1e-9 < by[("base", "kl", "kl")], ("KL to the applied model", by[(d2, "kl", "kl")])
rows = list(csv.DictReader(open(w + "/r1/all.csv")))
assert len(rows) == len(r1["results"])
for c, j in zip(rows, r1["results"]):
    assert c["delta"] == j["delta"] and c["metric"] == j["metric"] and float(c["value"]) == j["value"]
    assert (c["se"] == "" and j["se"] is None) or float(c["se"]) == j["se"]
for r in r1["results"]:
    assert r["metric"] == "answered_turns" or r["se"] is not None, r
print("deltas: %d rows identical at 1 and 3 ranks and alone" % len(r1["results"]))
PYEOF
grep -q "refusal_rate" "$w/r1/table.txt"
# --ppl alone keeps its report; the task ppl agrees (OpenBLAS threads differ
# between the two: 1e-6 relative)
"$DELTASOUP" eval --model "$w/b.h5" --delta "$w/d2.bd.h5" --ppl "$T" --seq-len 96 --json $q >"$w/old.json"
"$DELTASOUP" eval --model "$w/b.h5" --delta "$w/d2.bd.h5" --task "ppl:$T" --seq-len 96 --json $q >"$w/new.json"
$PY - "$w/old.json" "$w/new.json" <<'PYEOF'
import json, sys
old, new = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
nll = [r for r in new["results"] if r["metric"] == "nll"][0]
assert old["task"] == "ppl" and old["documents"] == 5 and nll["n"] == 5, (old, nll)
assert abs(old["nll"] - nll["value"]) <= 1e-6 * old["nll"], (old["nll"], nll["value"])
PYEOF
echo "deltas: ok"
