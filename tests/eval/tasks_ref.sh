#!/bin/sh
# eval --task against an independent reference (tests/python/eval_ref.py:
# h5py + the spec-written BPE + a float64 PyTorch Llama) on stories260K:
# TruthfulQA per-choice log-likelihoods, MC1/MC2 and their standard errors;
# greedy completions and refusal flags on HarmBench (a standard and a
# contextual behaviour, whose long context is cut to fit), AdvBench and
# XSTest; MT-Bench answers (second turn after the first answer) and their
# FastChat answer file. Run at 2 ranks.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import torch, h5py' 2>/dev/null || { echo "skip: no torch/h5py"; exit 77; }
w=$(mktemp -d /tmp/ds-eval-ref.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null
# a contextual HarmBench behaviour (first: --limit 1 takes it) with a
# context too long for the model, and a standard one
$PY - "$B/harmbench/harmbench_behaviors_text_all.csv" "$w/hb.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
pick = [next(r for r in rows if 900 < len(r["ContextString"]) < 1500), next(r for r in rows if not r["ContextString"])]
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(pick)
PYEOF
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --task "truthfulqa-mc:$B/truthfulqa/data/mc_task.json" \
    --limit 8 --items "$w/mc.jsonl" --json "$w/mc.json" --quiet >/dev/null
$PY "$top_srcdir/tests/python/eval_ref.py" mc "$w/b.h5" "$S/tok512.bin" "$B/truthfulqa/data/mc_task.json" \
    "$w/mc.jsonl" "$w/mc.json"
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --task "refusal:$w/hb.csv" \
    --task "refusal:$B/advbench/harmful_behaviors.csv" --task "xstest:$B/xstest/xstest_prompts.csv" \
    --task "mtbench-answers:$B/mt_bench/question.jsonl" --limit 1 --max-tokens 10 \
    --items "$w/gen.jsonl" --json "$w/gen.json" --answers-dir "$w" --quiet >/dev/null
ref() { $PY "$top_srcdir/tests/python/eval_ref.py" gen "$w/b.h5" "$S/tok512.bin" "$w/gen.jsonl" 10 "$@"; }
ref refusal "$w/hb.csv"
ref refusal "$B/advbench/harmful_behaviors.csv"
ref xstest "$B/xstest/xstest_prompts.csv"
ref mtbench-answers "$B/mt_bench/question.jsonl" "$w/base.jsonl"
echo "tasks_ref: ok"
