#!/bin/sh
# deltasoup soup refuses bad input with one line, its exit code, and no
# output, report or checkpoint folder: an unknown --method (2, before any
# evaluation), an empty candidate list (2), a missing candidate file (3), a
# gate task missing from the baseline (3), mtbench-answers as a task (2),
# --baseline without --gate-task (2), an existing output (4). Candidates:
# synthetic deltas (tests/unit/test_aggregate_mkdelta); the base is
# stories260K.
set -u
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-soup-errors.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "errors.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
[ -x "$MK" ] || { echo "SKIP: $MK not built (make check builds it)"; exit 77; }
S=$top_srcdir/data/models/stories260K
B=$top_srcdir/data/benchmarks
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null ||
    fail import
for s in 1 2; do "$MK" "$w/u$s.bd.h5" --owner "u$s" --seed $s || fail mkdelta; done
head -c 2000 "$top_srcdir/data/lm_corpus/tinystories_sample.txt" >"$w/valid.txt"
printf '%s\n%s\n' "$w/u1.bd.h5" "$w/u2.bd.h5" >"$w/list.txt"
printf '# nothing here\n\n' >"$w/empty.txt"
printf '%s\n%s\n' "$w/u1.bd.h5" "$w/nope.bd.h5" >"$w/missing.txt"
# eval results (eval --json OUT's form) of the base on ppl only
cat >"$w/base.json" <<EOF
{"format": "deltasoup.eval", "results": [
 {"delta": "base", "task": "ppl", "data": "$w/valid.txt", "metric": "nll", "value": 1.0, "n": 3, "se": 0.1, "better": "lower"},
 {"delta": "base", "task": "ppl", "data": "$w/valid.txt", "metric": "ppl", "value": 2.7, "n": 3, "se": 0.3, "better": "lower"}]}
EOF

# refused CODE MESSAGE ARGS...: exit CODE, one stderr line MESSAGE, nothing left
refused()
{
    code=$1 msg=$2
    shift 2
    rc=0
    "$DELTASOUP" soup --base "$w/b.h5" -o "$w/s.bd.h5" --report "$w/r.json" --quiet "$@" >"$w/out" 2>"$w/err" || rc=$?
    [ $rc = "$code" ] || fail "$msg: exit $rc, expected $code: $(cat "$w/err")"
    [ "$(wc -l <"$w/err")" = 1 ] && grep -qF "deltasoup soup: error: $msg" "$w/err" ||
        fail "want one line 'deltasoup soup: error: $msg', got: $(cat "$w/err")"
    for f in s.bd.h5 s.bd.h5.tmp r.json r.json.tmp s.bd.h5.ckpt; do
        [ -e "$w/$f" ] && [ "$code" != 4 ] && fail "$msg: $f left behind"
    done
    return 0
}
E="--eval-task ppl:$w/valid.txt"
refused 2 "--method: expected mean, median, " --candidates "$w/list.txt" --method bogus $E
refused 2 "--candidates $w/empty.txt: no candidate deltas in the list" --candidates "$w/empty.txt" --method mean $E
refused 3 "--candidates $w/missing.txt: line 2: no such delta file '$w/nope.bd.h5'" --candidates "$w/missing.txt" \
    --method mean $E
refused 3 "--gate-task truthfulqa-mc:$B/truthfulqa/data/mc_task.json: missing from the baseline $w/base.json" \
    --candidates "$w/list.txt" --method mean $E --gate-task "truthfulqa-mc:$B/truthfulqa/data/mc_task.json" \
    --baseline "$w/base.json" --limit 2
refused 2 "--eval-task mtbench-answers:$B/mt_bench/question.jsonl: mtbench-answers gives no score" \
    --candidates "$w/list.txt" --method mean --eval-task "mtbench-answers:$B/mt_bench/question.jsonl"
refused 2 "--baseline applies with --gate-task only" --candidates "$w/list.txt" --method mean $E --baseline "$w/base.json"
: >"$w/s.bd.h5"
refused 4 "$w/s.bd.h5: output exists" --candidates "$w/list.txt" --method mean $E
[ -s "$w/s.bd.h5" ] && fail "the existing output was changed"
echo "errors: 7 refusals"
