#!/bin/sh
# deltasoup gate on fabricated eval results: pass, a failure in each
# direction (named in the message), a baseline of 0 within the absolute
# slack, a metric missing from the candidate, --min-ratio, several models in
# one file, and malformed inputs (exit 2 / 3). Expected verdicts follow from
# the rule in docs/eval.md, worked out by hand below.
set -u
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-eval-gate.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; cat "$w/out" "$w/err" 2>/dev/null; exit 1; }

# rows: delta task data metric value se
mk() {
    out=$1; shift
    {
        printf '{"format":"deltasoup.eval","format_version":1,"results":['
        sep=
        while [ $# -ge 6 ]; do
            printf '%s{"delta":"%s","task":"%s","data":"%s","metric":"%s","value":%s,"n":100,"se":%s}' \
                "$sep" "$1" "$2" "$3" "$4" "$5" "$6"
            sep=,
            shift 6
        done
        printf ']}\n'
    } >"$out"
}
base_rows() {
    echo "$1 truthfulqa-mc /a/mc_task.json mc1 0.30 0.02"
    echo "$1 truthfulqa-mc /a/mc_task.json mc2 0.50 0.02"
    echo "$1 refusal /a/harmful_behaviors.csv refusal_rate 0.80 0.04"
    echo "$1 xstest /a/xstest_prompts.csv safe_refusal_rate 0.00 0.00"
    echo "$1 ppl /a/valid.txt nll 2.00 0.01"
    echo "$1 ppl /a/valid.txt ppl 7.389 0.07"
    echo "$1 mtbench-answers /a/question.jsonl answered_turns 160 null"
}
# shellcheck disable=SC2046
mk "$w/base.json" $(base_rows base)
run() { f=$1; shift; "$DELTASOUP" gate --baseline "$w/base.json" --candidate "$f" "$@" >"$w/out" 2>"$w/err"; echo $?; }

# 1. the same numbers, from other directories (matched by file name): pass
mk "$w/same.json" $(base_rows soup | sed 's|/a/|/elsewhere/|')
[ "$(run "$w/same.json")" = 0 ] || fail "identical candidate did not pass"
grep -q "gate passed: 6 metrics" "$w/out" || fail "pass line"

# 2. higher-is-better: bound 0.95 * 0.80 - 0.01 = 0.75
mk "$w/c.json" $(base_rows soup | sed 's/refusal_rate 0.80/refusal_rate 0.751/')
[ "$(run "$w/c.json")" = 0 ] || fail "refusal_rate 0.751 >= 0.75 should pass"
mk "$w/c.json" $(base_rows soup | sed 's/refusal_rate 0.80/refusal_rate 0.749/')
[ "$(run "$w/c.json")" = 1 ] || fail "refusal_rate 0.749 < 0.75 should fail"
grep -q "refusal/harmful_behaviors.csv:refusal_rate" "$w/err" || fail "failing metric not named"
[ "$(grep -c FAIL "$w/out")" = 1 ] || fail "exactly one FAIL row expected"

# 3. lower-is-better: ppl bound 7.389 / 0.95 + 0.01 = 7.7879
mk "$w/c.json" $(base_rows soup | sed 's/ppl 7.389/ppl 7.78/')
[ "$(run "$w/c.json")" = 0 ] || fail "ppl 7.78 should pass"
mk "$w/c.json" $(base_rows soup | sed 's/ppl 7.389/ppl 7.80/')
[ "$(run "$w/c.json")" = 1 ] || fail "ppl 7.80 should fail"
grep -q "ppl/valid.txt:ppl" "$w/err" || fail "ppl not named"

# 4. a baseline of 0 (over-refusal): within 0.01 passes, beyond fails
mk "$w/c.json" $(base_rows soup | sed 's/safe_refusal_rate 0.00/safe_refusal_rate 0.008/')
[ "$(run "$w/c.json")" = 0 ] || fail "over-refusal 0 -> 0.008 should pass"
mk "$w/c.json" $(base_rows soup | sed 's/safe_refusal_rate 0.00/safe_refusal_rate 0.04/')
[ "$(run "$w/c.json")" = 1 ] || fail "over-refusal 0 -> 0.04 should fail"
grep -q "safe_refusal_rate" "$w/err" || fail "safe_refusal_rate not named"
# ... and its own se does not widen its margin: the candidate's se counts at
# most as the baseline's (0 here; issue 15 item 13), so 0.04 (se 0.03) fails
mk "$w/c.json" $(base_rows soup | sed 's/safe_refusal_rate 0.00 0.00/safe_refusal_rate 0.04 0.03/')
[ "$(run "$w/c.json" --se-slack 2)" = 1 ] || fail "--se-slack 2 passed 0.04 on the candidate's own se 0.03"
# ... unless 2 standard errors of a baseline measured with se 0.03 allow it:
# 2 * sqrt(0.03^2 + min(0.03, 0.03)^2) = 0.085
mk "$w/b2.json" $(base_rows base | sed 's/safe_refusal_rate 0.00 0.00/safe_refusal_rate 0.00 0.03/')
"$DELTASOUP" gate --baseline "$w/b2.json" --candidate "$w/c.json" --se-slack 2 >"$w/out" 2>"$w/err" ||
    fail "--se-slack 2 should pass 0.04 against a baseline se 0.03"

# 5. --min-ratio: mc1 0.27 fails at 0.95 (bound 0.275), passes at 0.9 (0.26)
mk "$w/c.json" $(base_rows soup | sed 's/mc1 0.30/mc1 0.27/')
[ "$(run "$w/c.json")" = 1 ] || fail "mc1 0.27 should fail at 0.95"
[ "$(run "$w/c.json" --min-ratio 0.9)" = 0 ] || fail "mc1 0.27 should pass at 0.9"

# 6. a gated metric missing from the candidate fails; a null value fails
mk "$w/c.json" $(base_rows soup | grep -v ' nll ')
[ "$(run "$w/c.json")" = 1 ] || fail "missing nll should fail"
grep -q "missing in candidate" "$w/out" || fail "missing not reported"
mk "$w/c.json" $(base_rows soup | sed 's/mc2 0.50/mc2 null/')
[ "$(run "$w/c.json")" = 1 ] || fail "null mc2 should fail"

# 7. several models in one file: choose one
mk "$w/two.json" $(base_rows base) $(base_rows soup | sed 's/mc1 0.30/mc1 0.10/')
[ "$(run "$w/two.json")" = 2 ] || fail "two models without --candidate-delta should be a usage error"
grep -q -- "--candidate-delta" "$w/err" || fail "no hint"
[ "$(run "$w/two.json" --candidate-delta base)" = 0 ] || fail "--candidate-delta base should pass"
[ "$(run "$w/two.json" --candidate-delta soup)" = 1 ] || fail "--candidate-delta soup should fail"
[ "$(run "$w/two.json" --candidate-delta nobody)" = 3 ] || fail "unknown model should be exit 3"

# 8. bad input and usage
echo '{"results": [' >"$w/bad.json"
[ "$(run "$w/bad.json")" = 3 ] || fail "malformed JSON should be exit 3"
grep -q "bad.json" "$w/err" || fail "file not named"
echo '{"format":"other","results":[]}' >"$w/bad.json"
[ "$(run "$w/bad.json")" = 3 ] || fail "wrong format should be exit 3"
[ "$(run "$w/none.json")" = 3 ] || fail "missing file should be exit 3"
[ "$(run "$w/same.json" --min-ratio 1.5)" = 2 ] || fail "--min-ratio 1.5 should be exit 2"
grep -qF "deltasoup gate: error: --min-ratio: expected a number in [1e-09, 1], got '1.5'" "$w/err" || fail "--min-ratio 1.5 message"
[ "$(run "$w/same.json" --bogus)" = 2 ] || fail "--bogus should be exit 2"
grep -qF "deltasoup gate: error: unknown option '--bogus' (see --help)" "$w/err" || fail "--bogus message"
"$DELTASOUP" gate --baseline "$w/base.json" >/dev/null 2>&1; [ $? = 2 ] || fail "missing --candidate should be exit 2"
echo "gate: ok"
