#!/bin/sh
# eval and gate under hostile input (issue 15 items 10, 12, 13):
# - mtbench-answers refuses two questions with the same question_id (both
#   answers got the same answer_id), naming the file and both lines;
# - the gate caps the candidate's standard error at the baseline's: with
#   se = 1e6 and --se-slack 2 every metric passed;
# - a directory given as a text file says "is a directory" (was "read
#   error");
# - TruthfulQA numbers a question the same way when loading and when
#   evaluating: 1-based, said in the message (was 0 in one, 1 in the other).
set -u
. "$(dirname "$0")/../defaults.sh"
limit=120
. "$(dirname "$0")/common.sh"
B=$top_srcdir/data/benchmarks
model=$top_srcdir/data/models/stories260K
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b.h5" --quiet \
    > /dev/null || { echo "FAIL: import"; exit 1; }
mkdir -p "$w/ans" "$w/dir"

# item 12: question 81 again on line 3
{ head -n 2 "$B/mt_bench/question.jsonl"; head -n 1 "$B/mt_bench/question.jsonl"; } > "$w/dup.jsonl"
for n in 1 2; do
    np=$n
    expect 3 "$w/ans/base.jsonl" "eval: error:" "dup.jsonl: lines 1 and 3 have the same question_id 81" -- \
        eval --model "$w/b.h5" --task "mtbench-answers:$w/dup.jsonl" --answers-dir "$w/ans" --max-tokens 2
done
head -n 2 "$B/mt_bench/question.jsonl" > "$w/two.jsonl"
"$DELTASOUP" eval --model "$w/b.h5" --task "mtbench-answers:$w/two.jsonl" --answers-dir "$w/ans" --max-tokens 2 \
    > /dev/null 2>&1 || fail "mtbench-answers of distinct questions"

# item 13: baseline mc1 0.30 (se 0.02); a candidate of 0.10 reporting se 1e6
gate_json() { # FILE VALUE SE
    printf '{"format":"deltasoup.eval","format_version":1,"results":[{"delta":"x","task":"truthfulqa-mc",'`
        `'"data":"mc_task.json","metric":"mc1","value":%s,"n":100,"se":%s}]}\n' "$2" "$3" > "$1"
}
gate_json "$w/base.json" 0.30 0.02
gate_json "$w/big_se.json" 0.10 1e6
gate_json "$w/near.json" 0.25 1e6
expect 1 - "gate: error: gate failed: 1 of 1 metrics: truthfulqa-mc/mc_task.json:mc1" -- \
    gate --baseline "$w/base.json" --candidate "$w/big_se.json" --se-slack 2
# within K * sqrt(2) * se_base = 0.0566 of 0.95 * 0.30 = 0.285: passes, whatever se it reports
"$DELTASOUP" gate --baseline "$w/base.json" --candidate "$w/near.json" --se-slack 2 > /dev/null ||
    fail "gate of a candidate within the capped margin"
gate_json "$w/small_se.json" 0.24 0.001 # its own smaller se counts: bound 0.285 - 2 * sqrt(0.02^2 + 0.001^2) = 0.245
"$DELTASOUP" gate --baseline "$w/base.json" --candidate "$w/small_se.json" --se-slack 2 > /dev/null 2>&1 &&
    fail "gate of 0.24 with se 0.001 passed"

# item 10: a directory as a text file
expect 3 - "eval: error:" "$w/dir: is a directory" -- eval --model "$w/b.h5" --ppl "$w/dir"
expect 3 "$w/e.json" "eval: error:" "$w/dir: is a directory" -- eval --model "$w/b.h5" --task "ppl:$w/dir" \
    --json "$w/e.json"
expect 3 "$w/ft.h5" "finetune: error:" "$w/dir: is a directory" -- finetune --base "$w/b.h5" --data "$w/dir" \
    -o "$w/ft.h5"

# item 10: question 2 is bad, at load time and at evaluation time: the same number
$PYTHON3 - "$w" << 'PY' || fail "writing the TruthfulQA files"
import json, sys
w = sys.argv[1]
ok = {"question": "Q1?", "mc1_targets": {"A": 1, "B": 0}, "mc2_targets": {"A": 1, "B": 0}}
json.dump([ok, dict(ok, mc1_targets={"A": 1, "B": 2})], open(w + "/label.json", "w"))
json.dump([ok, dict(ok, question="Why? " * 2000)], open(w + "/long.json", "w"))
PY
expect 3 - "eval: error:" "label.json: question 2 (1-based): mc1_targets" -- \
    eval --model "$w/b.h5" --task "truthfulqa-mc:$w/label.json"
expect 3 - "eval: error:" "long.json: question 2 (1-based): prompt and answer take" -- \
    eval --model "$w/b.h5" --task "truthfulqa-mc:$w/long.json"
[ $fails = 0 ] || { echo "eval_inputs.sh: $fails failure(s)"; exit 1; }
echo "eval_inputs: ok"
