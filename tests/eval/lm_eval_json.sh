#!/bin/sh
# eval --lm-eval-json: the results in lm-evaluation-harness's v0.4 layout
# (docs/eval.md), one file per model (the base and base + a delta:
# lm.base.json, lm.d.json). A reader written from the harness's result schema
# (the top-level tables, "metric,filter" keys, lm_eval.utils.make_table's
# walk) reads each file; every value, standard error and n equals the row of
# eval's own --json from the same run (truthfulqa-mc -> truthfulqa_mc1/mc2
# "acc", ppl -> deltasoup_ppl), and config names the model and its delta. An
# existing output is refused (exit 4).
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
w=$(mktemp -d /tmp/ds-lmeval.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
MC=$top_srcdir/data/benchmarks/truthfulqa/data/mc_task.json
T=$top_srcdir/data/lm_corpus/tinystories_sample.txt
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null
"$DELTASOUP" finetune --base "$w/b.h5" --data "$T" -o "$w/f.h5" --steps 2 --batch 2 --seq-len 32 --quiet >/dev/null
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" --quiet >/dev/null
printf 'base\n%s\n' "$w/d.bd.h5" >"$w/list"
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --delta-list "$w/list" --task "truthfulqa-mc:$MC" --task "ppl:$T" \
    --limit 8 --json "$w/r.json" --lm-eval-json "$w/lm.json" --quiet >/dev/null
rc=0
"$DELTASOUP" eval --model "$w/b.h5" --task "ppl:$T" --lm-eval-json "$w/lm.base.json" --quiet >/dev/null 2>"$w/err" || rc=$?
[ "$rc" = 4 ] || { echo "an existing --lm-eval-json: exit $rc, expected 4"; cat "$w/err"; exit 1; }
[ ! -e "$w/lm.json" ] || { echo "several models, yet lm.json was written"; exit 1; }
$PY - "$w" <<'PYEOF'
import json, sys


def check(lm, results, model_args):
    # the harness's results document (lm_eval/evaluator.py, loggers/evaluation_tracker.py)
    for k, t in [("results", dict), ("group_subtasks", dict), ("configs", dict), ("versions", dict), ("n-shot", dict),
                 ("higher_is_better", dict), ("n-samples", dict), ("config", dict), ("date", (int, float))]:
        assert isinstance(lm.get(k), t), (k, lm.get(k))
    assert "git_hash" in lm
    tasks = set(lm["results"])
    assert tasks == {"truthfulqa_mc1", "truthfulqa_mc2", "deltasoup_ppl"}, tasks
    for k in ("group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples"):
        assert set(lm[k]) == tasks, (k, set(lm[k]))
    assert lm["config"]["model"] == "deltasoup" and lm["config"]["model_args"] == model_args, lm["config"]
    # make_table's walk: every "metric,filter" that is not a stderr has "metric_stderr,filter"
    got = {}
    for task, dic in lm["results"].items():
        assert dic["alias"] == task
        v = lm["versions"][task]
        assert isinstance(v, (int, float, str)) and isinstance(lm["n-shot"][task], int)
        ns = lm["n-samples"][task]
        assert isinstance(ns["original"], int) and isinstance(ns["effective"], int) and ns["effective"] <= ns["original"]
        for mf, val in dic.items():
            if mf == "alias":
                continue
            m, _, f = mf.partition(",")
            assert f == "none", mf
            if m.endswith("_stderr"):
                continue
            se = dic[m + "_stderr," + f]
            assert se == "N/A" or isinstance(se, float), se
            assert isinstance(val, float), (mf, val)
            assert isinstance(lm["higher_is_better"][task][m], bool)
            got[(task, m)] = (val, None if se == "N/A" else se, lm["higher_is_better"][task][m], ns["effective"])
        assert lm["configs"][task]["task"] == task
    # the same numbers as eval's own --json
    rows = {(r["task"], r["metric"]): r for r in results}
    want = {("truthfulqa_mc1", "acc"): rows[("truthfulqa-mc", "mc1")], ("truthfulqa_mc2", "acc"): rows[("truthfulqa-mc", "mc2")],
            ("deltasoup_ppl", "nll"): rows[("ppl", "nll")], ("deltasoup_ppl", "ppl"): rows[("ppl", "ppl")]}
    assert set(got) == set(want), (set(got), set(want))
    for key, r in want.items():
        val, se, hib, n = got[key]
        assert val == r["value"] and se == r["se"] and hib == (r["better"] == "higher") and n == r["n"], (key, got[key], r)
    assert lm["n-samples"]["truthfulqa_mc1"] == {"original": 817, "effective": 8}, lm["n-samples"]
    assert rows[("ppl", "nll")]["se"] is not None, "two documents: a standard error"

w = sys.argv[1]
ours = json.load(open(w + "/r.json"))
assert ours["deltas"] == ["base", w + "/d.bd.h5"], ours["deltas"]
for delta, path, args in (("base", "/lm.base.json", "model=%s/b.h5" % w),
                          (w + "/d.bd.h5", "/lm.d.json", "model=%s/b.h5,delta=%s/d.bd.h5" % (w, w))):
    check(json.load(open(w + path)), [r for r in ours["results"] if r["delta"] == delta], args)
ppl = [json.load(open(w + f))["results"]["deltasoup_ppl"]["ppl,none"] for f in ("/lm.base.json", "/lm.d.json")]
assert ppl[0] != ppl[1], "the delta changed nothing: %s" % ppl
print("lm-eval JSON: 2 models, 3 tasks, 4 metrics each equal to --json")
PYEOF
