#!/bin/sh
# deltasoup soup (docs/soup.md) on real deltas: stories260K fine-tuned on
# three users' texts (finetune + compress) and one harmful delta (poison
# scale x10 of the first). Held-out score: ppl nll on a text; gate:
# truthfulqa-mc (8 items) at --min-ratio 0.8, which makes this set take
# every branch of the recipe (a gate failure, the start, a kept step, a
# step that does not improve).
#  - 1 and 2 ranks: the same report (but for seconds/ranks) and the same soup;
#  - a Python re-run of the published recipe on the report's numbers (rank
#    by score alone, start from the best that passes the gate, keep a step
#    only on a strict improvement and a passed gate: eval/gate.h's rule)
#    gives the report's kept/not kept;
#  - independent scores: deltasoup eval on every candidate, on the written
#    soup and on a rejected soup merged again by deltasoup aggregate gives
#    the report's numbers exactly.
#  - --method mean gives model-soups' running average of the kept deltas
#    (numpy, float64, from their bits and scales: tests/python/aggregate_ref.py).
set -u
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
w=$(mktemp -d /tmp/ds-soup-greedy.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "greedy.sh: FAIL: $*" >&2; exit 1; }
"$PY" -c 'import h5py, numpy' 2>/dev/null || { echo "SKIP: $PY lacks numpy or h5py"; exit 77; }
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
q=--quiet
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" $q >/dev/null || fail import
for i in 1 2 3; do
    tail -c +$((i * 2000)) "$top_srcdir/data/lm_corpus/tinystories_train_excerpt.txt" | head -c 1500 >"$w/u$i.txt"
    "$DELTASOUP" finetune --base "$w/b.h5" --data "$w/u$i.txt" -o "$w/f$i.h5" --steps 4 --batch 2 --seq-len 32 \
        --lr 3e-3 --seed $i $q >/dev/null || fail "finetune $i"
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f$i.h5" -o "$w/d$i.bd.h5" --owner user$i $q >/dev/null ||
        fail "compress $i"
done
"$DELTASOUP" poison --attack scale --count 1 --strength 10 -o "$w/p" "$w/d1.bd.h5" $q >/dev/null || fail poison
head -c 3000 "$top_srcdir/data/lm_corpus/tinystories_sample.txt" >"$w/valid.txt"
printf '# candidates\n%s\n%s\n\n%s\n%s\n' "$w/d1.bd.h5" "$w/d2.bd.h5" "$w/d3.bd.h5" "$w/p/scale-0.bd.h5" >"$w/list.txt"
args="--base $w/b.h5 --candidates $w/list.txt --method mean --eval-task ppl:$w/valid.txt --seq-len 64
 --gate-task truthfulqa-mc:$B/truthfulqa/data/mc_task.json --limit 8 --min-ratio 0.8"
# shellcheck disable=SC2086
"$DELTASOUP" soup $args -o "$w/s1.bd.h5" --report "$w/r1.json" $q >"$w/t1.txt" 2>"$w/e1.txt" ||
    fail "soup at 1 rank: $(cat "$w/e1.txt")"
# shellcheck disable=SC2086
$MPIEXEC -n 2 "$DELTASOUP" soup $args -o "$w/s2.bd.h5" --report "$w/r2.json" $q >"$w/t2.txt" 2>"$w/e2.txt" ||
    fail "soup at 2 ranks: $(cat "$w/e2.txt")"
[ -e "$w/s1.bd.h5.ckpt" ] && fail "checkpoint folder left after a finished run"
grep -q "^soup: 2 of 4 kept (mean)" "$w/t1.txt" || fail "table: $(cat "$w/t1.txt")"
cmp -s "$w/t1.txt" "$w/t2.txt" || fail "the table differs between 1 and 2 ranks"

# The recipe again in Python, on the report's numbers; it names one rejected
# soup (the kept ones before it + it) for deltasoup aggregate to merge again.
"$PY" - "$w" <<'PYEOF' || fail "the report does not follow the recipe"
import json, math, sys
w = sys.argv[1]
r1, r2 = (json.load(open("%s/r%d.json" % (w, n))) for n in (1, 2))
for r in (r1, r2):
    del r["seconds"], r["ranks"]
    r["output"] = None
assert r1 == r2, "reports differ between 1 and 2 ranks"
r = r1
assert r["score"] == {"task": "ppl", "data": w + "/valid.txt", "metric": "nll", "better": "lower"}, r["score"]
g = r["gate"]
assert g["applied"] and g["min_ratio"] == 0.8 and g["abs_slack"] == 0.01 and g["se_slack"] == 0, g
files = [w + "/d1.bd.h5", w + "/d2.bd.h5", w + "/d3.bd.h5", w + "/p/scale-0.bd.h5"]
c = r["candidates"]
assert sorted(x["file"] for x in c) == sorted(files) and [x["list_index"] for x in c] != None
assert {x["file"]: x["owner"] for x in c}[w + "/d2.bd.h5"] == "user2"
# ranking: lower nll first, ties in list order
want = sorted(range(4), key=lambda i: (next(x["score"] for x in c if x["file"] == files[i]), i))
assert [x["file"] for x in c] == [files[i] for i in want], "order"
HIGHER = {"mc1", "mc2", "refusal_rate", "unsafe_refusal_rate"}
LOWER = {"nll", "ppl", "kl", "safe_refusal_rate"}
def gate_ok(rows):  # eval/gate.h, docs/eval.md "Gate"
    for b in g["baseline"]:
        if b["metric"] not in HIGHER | LOWER:
            continue
        y = [x for x in rows if x["task_index"] == b["task_index"] and x["metric"] == b["metric"]]
        if not y or y[0]["value"] is None:
            return False
        sb = b["se"] if b["se"] and b["se"] > 0 else 0.0
        sc = min(y[0]["se"], sb) if y[0]["se"] and y[0]["se"] > 0 else 0.0
        slack = max(g["abs_slack"], g["se_slack"] * math.sqrt(sb * sb + sc * sc))
        if b["metric"] in LOWER:
            ok = y[0]["value"] <= b["value"] / g["min_ratio"] + slack
        else:
            ok = y[0]["value"] >= g["min_ratio"] * b["value"] - slack
        if not ok:
            return False
    return True
cur, kept, branches, rejected = None, [], set(), None
for x in c:
    s = x["soup_score"]
    if not kept:
        assert s == x["score"], "a first ingredient's soup is itself"
    improved = s is not None and (cur is None or s < cur)
    ok = improved and gate_ok(x["gate_metrics"])
    assert x["kept"] == ok, (x["file"], x["kept"], improved, x["reason"])
    branches.add(("start" if not kept else "step") + ("+" if ok else "-gate" if improved else "-score"))
    if improved and not ok:
        assert x["reason"].startswith("gate failed: truthfulqa-mc/mc_task.json:"), x["reason"]
    if kept and not ok and rejected is None:
        rejected = kept + [x["file"]], s
    if ok:
        kept.append(x["file"])
        cur = s
assert r["kept"] == kept and r["soup_score"] == cur
assert branches >= {"start-gate", "start+", "step+", "step-score"}, branches
open(w + "/rejected.txt", "w").write("\n".join(rejected[0]) + "\n")
json.dump({"rejected": rejected[1]}, open(w + "/rejected.json", "w"))
print("greedy: kept %d of 4, branches %s" % (len(kept), sorted(branches)))
PYEOF

# --method mean is model-soups' running average (soup * k/(k+1) + new / (k+1)),
# recomputed in float64 from the kept deltas' bits and scales.
"$PY" - "$w" "$top_srcdir/tests/python" <<'PYEOF' || fail "the soup is not the running average of the kept deltas"
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from aggregate_ref import load
w = sys.argv[1]
kept = json.load(open(w + "/r1.json"))["kept"]
soup = None
for k, path in enumerate(kept):
    d = load(path)[0]
    soup = {n: x["v"] for n, x in d.items()} if soup is None else \
        {n: soup[n] * (k / (k + 1.0)) + d[n]["v"] / (k + 1.0) for n in soup}
got = load(w + "/s1.bd.h5")[0]
assert got.keys() == soup.keys() and len(kept) >= 2
worst = max(float(np.max(np.abs(got[n]["v"] - soup[n]) / (np.abs(soup[n]) + 1e-30))) for n in soup)
assert worst < 1e-6, worst  # float32 rounding of the float64 average
print("mean soup = running average of %d kept deltas (max relative difference %.2g)" % (len(kept), worst))
PYEOF

# The same soup at 1 and 2 ranks: every dataset and attribute.
"$PY" - "$w/s1.bd.h5" "$w/s2.bd.h5" <<'PYEOF' || fail "the soups differ between 1 and 2 ranks"
import h5py, numpy, sys
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
def items(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()] if isinstance(o, h5py.Dataset) else None))
    return out
x, y = items(a), items(b)
assert x.keys() == y.keys() and len(x) > 10
for k in x:
    if x[k] is not None:
        assert numpy.asarray(x[k]).tobytes() == numpy.asarray(y[k]).tobytes(), k  # NaN too
PYEOF

# Independent scores: eval on each candidate, the soup, and a rejected soup.
"$DELTASOUP" aggregate --method mean --list "$w/rejected.txt" -o "$w/rej.bd.h5" $q >/dev/null || fail "aggregate"
"$DELTASOUP" eval --model "$w/b.h5" --delta-list "$w/list.txt" --delta "$w/s1.bd.h5" --delta "$w/rej.bd.h5" \
    --task "ppl:$w/valid.txt" --seq-len 64 --limit 8 --json "$w/ev.json" $q >/dev/null || fail "eval"
"$PY" - "$w" <<'PYEOF' || fail "deltasoup eval does not confirm the report's scores"
import json, sys
w = sys.argv[1]
r = json.load(open(w + "/r1.json"))
ev = {x["delta"]: x["value"] for x in json.load(open(w + "/ev.json"))["results"] if x["metric"] == "nll"}
for x in r["candidates"]:
    assert ev[x["file"]] == x["score"], (x["file"], ev[x["file"]], x["score"])
assert ev[w + "/s1.bd.h5"] == r["soup_score"], (ev[w + "/s1.bd.h5"], r["soup_score"])
rej = json.load(open(w + "/rejected.json"))["rejected"]
assert ev[w + "/rej.bd.h5"] == rej, (ev[w + "/rej.bd.h5"], rej)
print("eval confirms %d candidate scores, the soup's %.9g and a rejected soup's %.9g" % (len(r["candidates"]),
      r["soup_score"], rej))
PYEOF
