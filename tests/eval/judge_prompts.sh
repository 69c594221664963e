#!/bin/sh
# eval --task mtbench-judge-prompts: FastChat's answer file and one judge
# prompt per (question, turn) (docs/eval.md). Each prompt is compared with
# FastChat's own filling, written out here (run_judge_single: str.format of
# the judge_prompts.jsonl template with the questions, the answers read back
# from the FastChat answer file, and for math/reasoning/coding the reference
# answers of reference_answer/gpt-4.jsonl). A judge prompts file missing a
# prompt is refused (exit 3) and nothing is written.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
w=$(mktemp -d /tmp/ds-judge.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
MT=$top_srcdir/data/benchmarks/mt_bench
# a writing question (single-v1) and a reasoning one (single-math-v1, a reference)
mkdir -p "$w/mt/reference_answer" "$w/out" "$w/bad"
grep -E '"question_id": (81|101),' "$MT/question.jsonl" >"$w/mt/question.jsonl"
cp "$MT/judge_prompts.jsonl" "$w/mt/"
cp "$MT/reference_answer/gpt-4.jsonl" "$w/mt/reference_answer/"
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --task "mtbench-judge-prompts:$w/mt/question.jsonl" --limit 2 \
    --max-tokens 8 --answers-dir "$w/out" --json "$w/r.json" --quiet >/dev/null
grep -v '"single-math-v1"' "$MT/judge_prompts.jsonl" >"$w/bad/judge_prompts.jsonl"
rc=0
"$DELTASOUP" eval --model "$w/b.h5" --task "mtbench-judge-prompts:$w/mt/question.jsonl" --limit 2 --max-tokens 8 \
    --judge-prompts "$w/bad/judge_prompts.jsonl" --answers-dir "$w/bad" --quiet >/dev/null 2>"$w/err" || rc=$?
[ "$rc" = 3 ] || { echo "a judge prompts file without single-math-v1: exit $rc, expected 3"; cat "$w/err"; exit 1; }
grep -q 'judge_prompts.jsonl: no judge prompt named single-math-v1' "$w/err" || { cat "$w/err"; exit 1; }
[ "$(ls "$w/bad")" = judge_prompts.jsonl ] || { echo "refused, yet written:"; ls "$w/bad"; exit 1; }
$PY - "$w/mt" "$w/out" "$w/r.json" <<'PYEOF'
import json, sys
mt, out, res = sys.argv[1:]
questions = [json.loads(l) for l in open(mt + "/question.jsonl")]
judges = {j["name"]: j for j in map(json.loads, open(mt + "/judge_prompts.jsonl"))}
refs = {r["question_id"]: r for r in map(json.loads, open(mt + "/reference_answer/gpt-4.jsonl"))}
answers = {a["question_id"]: a for a in map(json.loads, open(out + "/base.jsonl"))}
lines = [json.loads(l) for l in open(out + "/base.judge-prompts.jsonl")]
assert len(lines) == sum(len(q["turns"]) for q in questions) == 4, len(lines)
assert json.load(open(res))["results"][0]["task"] == "mtbench-judge-prompts"
NEED_REF_CATS = ["math", "reasoning", "coding", "arena-hard-200"]  # fastchat/llm_judge/common.py
k = 0
for q in questions:
    a = answers[q["question_id"]]
    for turn in (1, 2):
        ref = q["category"] in NEED_REF_CATS
        name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
        judge = judges[name]
        kwargs = {}
        if ref:  # run_judge_single
            kwargs["ref_answer_1"] = refs[q["question_id"]]["choices"][0]["turns"][0]
            if turn == 2:
                kwargs["ref_answer_2"] = refs[q["question_id"]]["choices"][0]["turns"][1]
        if turn == 2:
            user = judge["prompt_template"].format(question_1=q["turns"][0], question_2=q["turns"][1],
                answer_1=a["choices"][0]["turns"][0], answer_2=a["choices"][0]["turns"][1], **kwargs)
        else:
            user = judge["prompt_template"].format(question=q["turns"][0], answer=a["choices"][0]["turns"][0], **kwargs)
        l = lines[k]
        k += 1
        assert (l["question_id"], l["turn"], l["judge"], l["model_id"]) == (q["question_id"], turn, name, "base"), l
        assert l["system_prompt"] == judge["system_prompt"] and l["output_format"] == "[[rating]]", l
        assert l["user_prompt"] == user, (l["user_prompt"], user)
        assert q["turns"][turn - 1] in user and a["choices"][0]["turns"][turn - 1] in user
        assert a["choices"][0]["turns"][turn - 1].strip(), "an empty answer tests nothing"
print("judge prompts: %d lines equal to FastChat's filling" % len(lines))
PYEOF
