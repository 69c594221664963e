#!/bin/sh
# Every record of every shipped benchmark as read by eval/datasets.c,
# compared with Python's own csv and json modules reading the same files.
set -e
. "$(dirname "$0")/../defaults.sh"
B="$top_srcdir/data/benchmarks"
exec "$PYTHON3" - "$top_builddir/tests/unit/test_datasets" "$B" <<'PY'
import csv, json, subprocess, sys
prog, b = sys.argv[1], sys.argv[2]

def rows(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))

def mc(d):
    return [[k, v] for k, v in d.items()]

cases = [
    ("truthfulqa", "truthfulqa/data/mc_task.json",
     lambda p: [[q["question"], mc(q["mc1_targets"]), mc(q["mc2_targets"])] for q in json.load(open(p))]),
    ("truthfulqa_csv", "truthfulqa/TruthfulQA.csv",
     lambda p: [[r["Type"], r["Category"], r["Question"], r["Best Answer"], r["Correct Answers"],
                 r["Incorrect Answers"], r["Source"]] for r in rows(p)]),
    ("advbench", "advbench/harmful_behaviors.csv", lambda p: [[r["goal"], r["target"]] for r in rows(p)]),
    ("xstest", "xstest/xstest_prompts.csv",
     lambda p: [[int(r["id"]), r["prompt"], r["type"], r["label"], r["focus"], r["note"]] for r in rows(p)]),
    ("mtbench", "mt_bench/question.jsonl",
     lambda p: [[q["question_id"], q["category"], q["turns"], q.get("reference", [])]
                for q in map(json.loads, filter(str.strip, open(p)))]),
]
for split in ("all", "test", "val"):
    cases.append(("harmbench", "harmbench/harmbench_behaviors_text_%s.csv" % split,
                  lambda p: [[r["Behavior"], r["FunctionalCategory"], r["SemanticCategory"], r["Tags"],
                              r["ContextString"], r["BehaviorID"]] for r in rows(p)]))
bad = 0
for kind, rel, ref in cases:
    path = b + "/" + rel
    got = json.loads(subprocess.run([prog, "--dump", kind, path], stdout=subprocess.PIPE, check=True).stdout)
    want = ref(path)
    diff = [i for i in range(max(len(got), len(want))) if i >= len(got) or i >= len(want) or got[i] != want[i]]
    print("%-15s %-45s %4d records, %d differ" % (kind, rel, len(want), len(diff)))
    if diff:
        bad += 1
        i = diff[0]
        print("  first difference at record %d:\n  C  %r\n  py %r" % (i, got[i] if i < len(got) else None,
                                                                      want[i] if i < len(want) else None))
sys.exit(1 if bad else 0)
PY
