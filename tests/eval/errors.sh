#!/bin/sh
# eval --task and bad input: malformed specs and options are exit 2,
# missing or malformed files exit 3, an existing output exit 4; each with
# one error line naming the culprit, and no output file left behind (also
# when a later delta fails after earlier models were evaluated).
set -u
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-eval-errors.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
T=$top_srcdir/data/lm_corpus/tinystories_sample.txt
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null ||
    exit 1
bad=0
# expect CODE NEEDLE args...: exit code, a one-line message containing NEEDLE
# (one rank: mpiexec adds its own lines to stderr)
expect() {
    code=$1 needle=$2
    shift 2
    "$DELTASOUP" eval --quiet "$@" >"$w/out" 2>"$w/err"
    rc=$?
    if [ $rc != "$code" ] || [ "$(grep -c . "$w/err")" != 1 ] || ! grep -qF -- "$needle" "$w/err"; then
        echo "FAIL: eval $* -> exit $rc (want $code with '$needle'):"
        cat "$w/err"
        bad=1
    fi
}
m="--model $w/b.h5"
expect 2 "foo:x" $m --task foo:x
expect 2 "'ppl'" $m --task ppl
expect 2 "kl:$T" $m --task "kl:$T"
expect 2 "no task" $m --limit 3
expect 2 "--limit" $m --task "ppl:$T" --limit 0
expect 2 "--max-tokens 600" $m --task "xstest:$B/xstest/xstest_prompts.csv" --max-tokens 600
expect 2 "--answers-dir" $m --task "mtbench-answers:$B/mt_bench/question.jsonl"
expect 2 "--seq-len 4096" $m --task "ppl:$T" --seq-len 4096
expect 3 "$w/none.json" $m --task "truthfulqa-mc:$w/none.json"
expect 3 "xstest_prompts.csv" $m --task "refusal:$B/xstest/xstest_prompts.csv"
head -c 3000 "$B/truthfulqa/data/mc_task.json" >"$w/cut.json"
expect 3 "cut.json" $m --task "truthfulqa-mc:$w/cut.json"
expect 3 "$w/nobase.h5" --model "$w/nobase.h5" --task "ppl:$T"
expect 3 "$w/none.bd.h5" $m --delta "$w/none.bd.h5" --task "ppl:$T"
expect 3 "$w/none.txt" $m --delta-list "$w/none.txt" --task "ppl:$T"
printf 'base\n%s/gone.bd.h5\n' "$w" >"$w/list.txt"
expect 3 "line 2" $m --delta-list "$w/list.txt" --task "ppl:$T"
expect 3 "$w/missing-ref.h5" $m --task "kl:$w/missing-ref.h5:$T"
# the base is evaluated, then the second "delta" is not one: nothing written
printf 'base\n%s\n' "$T" >"$w/list.txt"
expect 3 "tinystories_sample.txt" $m --delta-list "$w/list.txt" --task "ppl:$T" --json "$w/r.json" --csv "$w/r.csv"
ls "$w"/r.* >/dev/null 2>&1 && { echo "FAIL: output left after a failure: $(ls "$w"/r.*)"; bad=1; }
# an existing output is refused before any work, and kept
echo keep >"$w/r.json"
expect 4 "$w/r.json" $m --task "ppl:$T" --json "$w/r.json" --csv "$w/r.csv"
[ "$(cat "$w/r.json")" = keep ] && [ ! -e "$w/r.csv" ] || { echo "FAIL: outputs touched"; bad=1; }
# at 2 ranks: both ranks leave with the same code, one message
$MPIEXEC -n 2 "$DELTASOUP" eval $m --delta-list "$w/list.txt" --task "ppl:$T" --quiet >/dev/null 2>"$w/err"
rc=$?
[ $rc = 3 ] && [ "$(grep -c "error:" "$w/err")" = 1 ] || { echo "FAIL: 2 ranks: exit $rc"; cat "$w/err"; bad=1; }
[ $bad = 0 ] && echo "errors: ok"
exit $bad
