#!/bin/sh
# Non-finite results are refused (issue 15 items 1 and 2): a valid delta
# whose scales are 1e15 (poison --attack scale) makes the applied model's
# logits non-finite. eval crashed (SIGSEGV: the JSON of a NaN record was
# NULL) on truthfulqa-mc, ppl and kl tasks, eval --ppl printed "nll -nan",
# generate printed <unk> runs, finetune wrote a checkpoint of NaN weights,
# fit-scales wrote NaN scales, inspect accepted a file of NaN values with
# exit 0 (now exit 3 unless --allow-nonfinite): each now fails with exit 3 naming the item, step or tensor, writing
# nothing, at 1 and 2 ranks; eval's pipelined tasks too (--pipeline 2 and 3).
set -u
. "$(dirname "$0")/../defaults.sh"
limit=120
. "$(dirname "$0")/common.sh"
need_numpy
# a stories260K base, a fine-tuned model (2 steps), their delta, a text
model=$top_srcdir/data/models/stories260K
head -c 20000 "$top_srcdir/data/lm_corpus/tinystories_sample.txt" > "$w/text.txt"
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b.h5" --quiet > /dev/null &&
    "$DELTASOUP" finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/f.h5" --batch 2 --seq-len 32 --steps 2 \
        --lr 1e-2 --quiet > /dev/null &&
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" --quiet > /dev/null ||
    { echo "FAIL: setup"; exit 1; }
B=$top_srcdir/data/benchmarks
"$DELTASOUP" poison --attack scale --count 1 --strength 1e15 -o "$w/big" "$w/d.bd.h5" --quiet > /dev/null ||
    { echo "FAIL: poison"; exit 1; }
big=$w/big/scale-0.bd.h5
"$DELTASOUP" apply --base "$w/b.h5" --delta "$big" -o "$w/nan.h5" --quiet > /dev/null || fail "apply of the big delta"
# a model file (without recorded digests, as from before them) holding a NaN and an inf
$PYTHON3 - "$w/b.h5" "$w/nanw.h5" << 'PY' || fail "writing nanw.h5"
import shutil, sys
import h5py, numpy as np
shutil.copyfile(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    del f.attrs["content_sha256"]
    for k in f["tensors"]:
        if "sha256" in f["tensors"][k].attrs:
            del f["tensors"][k].attrs["sha256"]
    d = f["tensors"]["model.norm.weight"]
    a = d[...]
    a[3], a[5] = np.nan, np.inf
    d[...] = a
PY
tqa="truthfulqa-mc:$B/truthfulqa/data/mc_task.json"
# At 2 ranks: the gathered task records, the reduced losses and objectives.
one() { [ "$n" = 1 ]; }
for n in 1 2; do
    np=$n
    expect 3 "$w/e.json" "eval: error:" "mc_task.json: question 1 (1-based): answer 1: the log-likelihood is not finite" -- \
        eval --model "$w/b.h5" --delta "$big" --task "$tqa" --limit 2 --json "$w/e.json"
    np=$n
    expect 3 "$w/e.json" "eval: error:" "text.txt: document 1 (1-based): the NLL is not finite" -- \
        eval --model "$w/b.h5" --delta "$big" --task "ppl:$w/text.txt" --limit 2 --json "$w/e.json"
    np=$n
    one && expect 3 "$w/e.json" "eval: error:" "text.txt: document 1 (1-based): the KL is not finite" -- \
        eval --model "$w/b.h5" --delta "$big" --task "kl:$w/b.h5:$w/text.txt" --limit 2 --json "$w/e.json"
    np=$n
    one && expect 3 "$w/e.json" "eval: error:" "xstest_prompts.csv: prompt 1 (1-based): the model's logits are not finite at generated token 1" -- \
        eval --model "$w/b.h5" --delta "$big" --task "xstest:$B/xstest/xstest_prompts.csv" --limit 1 \
        --max-tokens 4 --json "$w/e.json"
    np=$n
    one && expect 3 - "eval: error:" "text.txt: the NLL is not finite" -- \
        eval --model "$w/b.h5" --delta "$big" --ppl "$w/text.txt"
    np=$n
    expect 3 "$w/ft.h5" "finetune: error:" "nan.h5: the loss is not finite at step 1" -- \
        finetune --base "$w/nan.h5" --data "$w/text.txt" -o "$w/ft.h5" --batch 2 --seq-len 32 --steps 2
    np=$n
    expect 3 "$w/fit.bd.h5" "fit-scales: error:" "scale-0.bd.h5: the objective is not finite at step 1" -- \
        fit-scales --base "$w/b.h5" --finetuned "$w/f.h5" --delta "$big" --calib "$w/text.txt" -o "$w/fit.bd.h5" \
        --steps 2 --batch 2 --seq-len 32 --force
    np=$n
    one && expect 3 "$w/fit.bd.h5" "fit-scales: error:" "fit.bd.h5: the held-out objective after the fit is not finite" -- \
        fit-scales --base "$w/b.h5" --finetuned "$w/f.h5" --delta "$big" --calib "$w/text.txt" -o "$w/fit.bd.h5" \
        --steps 0 --batch 2 --seq-len 32
    np=$n
    one && expect 3 - "inspect: error:" "nanw.h5: tensor model.norm.weight: 2 non-finite value(s)" -- inspect "$w/nanw.h5"
done
# Through a pipeline the forward-only tasks run ahead of the last stage,
# which alone sees the scores (docs/eval.md "Pipelined tasks"): its failure
# stops the stages ahead of it, and the job fails as at 1 rank (after the
# base's items succeeded through the same stages): 1 group of 2 stages, 2
# groups of 2 (the first group's item is reported), 1 group of 3.
printf 'base\n%s\n' "$big" > "$w/list.txt"
np=2
expect 3 "$w/e.json" "eval: error:" "mc_task.json: question 1 (1-based): answer 1: the log-likelihood is not finite" -- \
    eval --model "$w/b.h5" --delta-list "$w/list.txt" --task "$tqa" --limit 7 --pipeline 2 --json "$w/e.json"
np=4
expect 3 "$w/e.json" "eval: error:" "text.txt: document 1 (1-based): the NLL is not finite" -- \
    eval --model "$w/b.h5" --delta-list "$w/list.txt" --task "ppl:$w/text.txt" --limit 9 --pipeline 2 --json "$w/e.json"
np=3
expect 3 "$w/e.json" "eval: error:" "text.txt: document 1 (1-based): the KL is not finite" -- \
    eval --model "$w/b.h5" --delta "$big" --task "kl:$w/b.h5:$w/text.txt" --limit 5 --pipeline 3 --json "$w/e.json"
expect 3 - "generate: error:" "logits are not finite at new token 1" -- \
    generate --model "$w/b.h5" --delta "$big" --prompt "Once" --max-tokens 8
expect 3 - "generate: error:" "logits are not finite at new token 1" -- \
    generate --model "$w/nan.h5" --prompt "Once" --max-tokens 8 --json
[ -s "$w/stdout" ] && fail "generate --json printed a document"
"$DELTASOUP" inspect "$w/nanw.h5" --allow-nonfinite > "$w/out" 2>&1 || fail "inspect --allow-nonfinite"
grep -Eq "model.norm.weight .* 2$" "$w/out" || { cat "$w/out"; fail "inspect does not report the 2 non-finite values"; }
"$DELTASOUP" inspect "$w/b.h5" > /dev/null || fail "inspect of the base"
# the same jobs on the valid delta still succeed
"$DELTASOUP" eval --model "$w/b.h5" --delta "$w/d.bd.h5" --task "$tqa" --limit 2 > /dev/null 2>&1 || fail "eval of a valid delta"
"$DELTASOUP" eval --model "$w/b.h5" --ppl "$w/text.txt" > /dev/null 2>&1 || fail "eval --ppl of the base"
[ $fails = 0 ] || { echo "finite.sh: $fails failure(s)"; exit 1; }
echo "finite: ok"
