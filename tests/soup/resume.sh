#!/bin/sh
# deltasoup soup stops and resumes: SIGUSR1 to a 2-rank run (mpiexec
# forwards it) once the first round of individual scores is done makes it
# write its checkpoint (the decisions so far) and exit 75 with no soup and
# no report; the same command at 1 rank resumes and ends with the report and
# soup of an uninterrupted run. A checkpoint of another run is refused.
# Candidates: one real fine-tune of stories260K and three gaussian
# perturbations of it (deltasoup poison).
set -u
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
w=$(mktemp -d /tmp/ds-soup-resume.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "resume.sh: FAIL: $*" >&2; exit 1; }
S=$top_srcdir/data/models/stories260K
q=--quiet
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" $q >/dev/null || fail import
"$DELTASOUP" finetune --base "$w/b.h5" --data "$top_srcdir/data/lm_corpus/tinystories_sample.txt" -o "$w/f.h5" \
    --steps 4 --batch 2 --seq-len 32 --lr 3e-3 $q >/dev/null || fail finetune
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" --owner alice $q >/dev/null || fail compress
"$DELTASOUP" poison --attack gaussian --count 3 --strength 0.5 --seed 3 -o "$w/g" "$w/d.bd.h5" $q >/dev/null || fail poison
printf '%s\n' "$w/g/gaussian-0.bd.h5" "$w/d.bd.h5" "$w/g/gaussian-1.bd.h5" "$w/g/gaussian-2.bd.h5" >"$w/list.txt"
args="--base $w/b.h5 --candidates $w/list.txt --method mean --eval-task ppl:$top_srcdir/data/lm_corpus/tinystories_valid_fragment.txt
 --seq-len 128 --limit 12"
# shellcheck disable=SC2086
"$DELTASOUP" soup $args -o "$w/ref.bd.h5" --report "$w/ref.json" $q >/dev/null 2>"$w/err" || fail "reference: $(cat "$w/err")"

# shellcheck disable=SC2086
$MPIEXEC -n 2 "$DELTASOUP" soup $args -o "$w/s.bd.h5" --report "$w/s.json" >"$w/log" 2>&1 &
pid=$!
n=0
until grep -q "candidates 2/4" "$w/log" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || break
    n=$((n + 1))
    [ $n -lt 6000 ] || { kill -KILL $pid; fail "no progress line"; }
    sleep 0.01
done
kill -USR1 $pid 2>/dev/null
rc=0
wait $pid || rc=$?
[ $rc = 75 ] || fail "exit $rc after SIGUSR1, expected 75 (ended before the signal?): $(tail -3 "$w/log")"
[ -e "$w/s.bd.h5" ] || [ -e "$w/s.json" ] && fail "output or report written by an interrupted run"
[ -f "$w/s.bd.h5.ckpt/soup.ckpt" ] || fail "no checkpoint"
grep -q "signal: checkpoint written to $w/s.bd.h5.ckpt/soup.ckpt" "$w/log" || fail "no checkpoint message: $(tail -3 "$w/log")"

# Another run's checkpoint is refused (another method), one line, exit 3.
# shellcheck disable=SC2086
rc=0
"$DELTASOUP" soup $args --method median -o "$w/s.bd.h5" --report "$w/s.json" $q >/dev/null 2>"$w/err" || rc=$?
[ $rc = 3 ] && [ "$(wc -l <"$w/err")" = 1 ] && grep -q "soup.ckpt: checkpoint belongs to another job: method was \"mean\", now \"median\"" "$w/err" ||
    fail "another run's checkpoint: exit $rc: $(cat "$w/err")"

# shellcheck disable=SC2086
"$DELTASOUP" soup $args -o "$w/s.bd.h5" --report "$w/s.json" >"$w/log" 2>&1 || fail "resume: $(tail -3 "$w/log")"
grep -q "^\[soup\] resuming from $w/s.bd.h5.ckpt/soup.ckpt: [1-4] of 4 scored alone" "$w/log" || fail "did not resume: $(head -3 "$w/log")"
[ -e "$w/s.bd.h5.ckpt" ] && fail "checkpoint folder left after the finished run"
"$PY" - "$w" <<'PYEOF' || fail "the resumed run differs from the uninterrupted one"
import json, sys, h5py
w = sys.argv[1]
a, b = (json.load(open("%s/%s.json" % (w, n))) for n in ("ref", "s"))
for r in (a, b):
    del r["seconds"], r["output"]
assert a == b, "reports differ"
def items(p):
    out = {}
    h5py.File(p, "r").visititems(lambda n, o: out.__setitem__(n, o[()].tobytes() if isinstance(o, h5py.Dataset) else None))
    return out
assert items(w + "/ref.bd.h5") == items(w + "/s.bd.h5"), "soups differ"
print("resume: kept %d of 4, same report and soup" % len(a["kept"]))
PYEOF
