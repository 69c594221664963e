#!/bin/sh
# Resumable aggregate (--checkpoint): SIGUSR1, at 1 rank and at 2 ranks
# (mpiexec forwards it), makes every rank finish its tensor, write a
# checkpoint and exit 75 with no output and no report; the same command then
# resumes and ends with the content hash and report of an uninterrupted run.
# trimmed-mean and majority stop in the output, multi-krum once in its
# distance pass (1 rank) and once in the output (2 ranks, resumed at 1 rank);
# ties and geometric-median in the output, resumed at another rank count.
# A checkpoint is refused for other inputs or another method, and when its
# partial output is gone; a run without --checkpoint starts clean.
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/aggregate/resume.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "resume.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
# a.weight has 11000 rows: in chunks of 1 KiB it takes half a second or more, so
# a signal sent once the inputs are open lands while it runs.
IN=""
for s in 1 2 3 4 5; do
    "$MK" "$d/u$s.bd.h5" --owner "u$s" --seed $s --shape-rows 11000 || fail mkdelta
    IN="$IN $d/u$s.bd.h5"
done
CHUNK="--chunk-mb 0.001"

# summary NAME: the content hash and the report, minus the output's name
summary()
{
    grep '^content_sha256' "$d/$1.log" > "$d/$1.hash" || fail "$1: no content hash: $(tail -3 "$d/$1.log")"
    sed "s|$1.bd.h5|OUT|" "$d/$1.json" > "$d/$1.rep"
}
# launcher NP: how to start NP ranks
launcher() { [ "$1" = 1 ] || echo "$MPIEXEC -n $1"; }

# ref NAME METHOD-ARGS...: an uninterrupted run without --checkpoint
ref()
{
    name=$1
    shift
    "$DELTASOUP" aggregate -o "$d/$name.bd.h5" --report "$d/$name.json" $CHUNK --quiet "$@" $IN > "$d/$name.log" 2>&1 ||
        fail "$name: $(tail -3 "$d/$name.log")"
    summary "$name"
}

# interrupt NAME NP PATTERN METHOD-ARGS...: start with --checkpoint, send
# SIGUSR1 once the log shows PATTERN; exit 75, no output, no report.
interrupt()
{
    name=$1 np=$2 pat=$3
    shift 3
    rm -f "$d/$name.log"
    $(launcher $np) "$DELTASOUP" aggregate -o "$d/$name.bd.h5" --report "$d/$name.json" $CHUNK \
        --checkpoint "$d/$name.ck" "$@" $IN > "$d/$name.log" 2>&1 &
    pid=$!
    n=0
    until grep -q "$pat" "$d/$name.log" 2> /dev/null; do
        kill -0 $pid 2> /dev/null || break
        n=$((n + 1))
        [ $n -lt 6000 ] || { kill -KILL $pid; fail "$name: '$pat' did not appear"; }
        sleep 0.01
    done
    kill -USR1 $pid 2> /dev/null
    rc=0
    wait $pid || rc=$?
    [ $rc = 75 ] || fail "$name at $np rank(s): exit $rc after SIGUSR1, expected 75 (ended before the signal?): $(tail -3 "$d/$name.log")"
    [ -e "$d/$name.bd.h5" ] || [ -e "$d/$name.json" ] || [ -e "$d/$name.json.tmp" ] &&
        fail "$name: output or report written by an interrupted run"
    [ -f "$d/$name.ck/aggregate.ckpt" ] || fail "$name: no checkpoint after SIGUSR1"
    grep -q "signal: checkpoint after tensor [1-9]/5 of the" "$d/$name.log" || fail "$name: no checkpoint message"
    # the partial output (NAME.tmp) is kept in the output pass, absent in Krum's distance pass
    if grep -q "signal: checkpoint after tensor [1-9]/5 of the output" "$d/$name.log"; then
        [ -f "$d/$name.bd.h5.tmp" ] || fail "$name: no partial output $name.bd.h5.tmp after a stop in the output"
    else
        [ -e "$d/$name.bd.h5.tmp" ] && fail "$name: partial output after a stop in the distances"
    fi
    return 0
}

# resume NAME NP REF WHERE METHOD-ARGS...: the same command at NP ranks
# resumes at WHERE ("tensor N/5 of the output") and matches REF.
resume()
{
    name=$1 np=$2 r=$3 where=$4
    shift 4
    $(launcher $np) "$DELTASOUP" aggregate -o "$d/$name.bd.h5" --report "$d/$name.json" $CHUNK \
        --checkpoint "$d/$name.ck" "$@" $IN > "$d/$name.log" 2>&1 || fail "$name: resume: $(tail -3 "$d/$name.log")"
    grep -q "resuming from $d/$name.ck/aggregate.ckpt at $where" "$d/$name.log" ||
        fail "$name: did not resume at $where: $(grep resuming "$d/$name.log")"
    summary "$name"
    cmp -s "$d/$r.hash" "$d/$name.hash" || fail "$name: content hash differs from the uninterrupted run's"
    cmp -s "$d/$r.rep" "$d/$name.rep" || fail "$name: report differs from the uninterrupted run's"
    [ -e "$d/$name.ck" ] && fail "$name: checkpoint folder left after the finished run"
    return 0
}

TRIM="--method trimmed-mean --trim 0.25"
MAJ="--method majority"
MKRUM="--method multi-krum --byzantine 1"
ref trim $TRIM
ref maj $MAJ
ref mkrum $MKRUM

for np in 1 2; do
    interrupt trim$np $np "open 5/5" $TRIM
    resume trim$np $np trim "tensor 1/5 of the output" $TRIM
    interrupt maj$np $np "open 5/5" $MAJ
    resume maj$np $np maj "tensor 1/5 of the output" $MAJ
done
# multi-krum: in the distance pass; in the output, resumed at 1 rank.
interrupt mkrum1 1 "open 5/5" $MKRUM
resume mkrum1 1 mkrum "tensor 1/5 of the distances" $MKRUM
interrupt mkrum2 2 "distances 5/5" $MKRUM
resume mkrum2 1 mkrum "tensor 1/5 of the output" $MKRUM
# the newer methods, stopped at 1 rank and resumed at 2: TIES (thresholds,
# then the output); the geometric median (its Gram pass and Weiszfeld run
# through, so the stop lands in the output and the resume keeps the weights)
TIES="--method ties --density 0.5"
GM="--method geometric-median"
ref ties $TIES
ref gm $GM
interrupt ties1 1 "open 5/5" $TIES
resume ties1 2 ties "tensor 1/5 of the output" $TIES
interrupt gm1 1 "open 5/5" $GM
resume gm1 2 gm "tensor 1/5 of the output" $GM

# A checkpoint belongs to its inputs and method (one line, exit 3).
interrupt x 1 "open 5/5" $TRIM
rc=0
"$DELTASOUP" aggregate -o "$d/x.bd.h5" $CHUNK --checkpoint "$d/x.ck" $TRIM --quiet ${IN% *} > /dev/null 2> "$d/err" || rc=$?
[ $rc = 3 ] && grep -q "^deltasoup aggregate: error: $d/x.ck/aggregate.ckpt: checkpoint belongs to another job: inputs was 5, now 4" \
    "$d/err" && [ "$(wc -l < "$d/err")" = 1 ] || fail "checkpoint with other inputs: exit $rc, $(cat "$d/err")"
rc=0
"$DELTASOUP" aggregate -o "$d/x.bd.h5" $CHUNK --checkpoint "$d/x.ck" --method median --quiet $IN > /dev/null 2> "$d/err" || rc=$?
[ $rc = 3 ] && grep -q "$d/x.ck/aggregate.ckpt: checkpoint belongs to another job: method was \"trimmed-mean\", now \"median\"" \
    "$d/err" && [ "$(wc -l < "$d/err")" = 1 ] || fail "checkpoint with another method: exit $rc, $(cat "$d/err")"
[ -e "$d/x.bd.h5" ] && fail "output written after a refused checkpoint"
# Without --checkpoint the same output starts clean (the partial file
# NAME.tmp is replaced); the checkpoint's partial output is then gone: refused.
"$DELTASOUP" aggregate -o "$d/x.bd.h5" --report "$d/x.json" $CHUNK --quiet $TRIM $IN > "$d/x.log" 2>&1 ||
    fail "run without --checkpoint after an interrupted one: $(cat "$d/x.log")"
summary x
cmp -s "$d/trim.hash" "$d/x.hash" || fail "run without --checkpoint: content hash differs"
rm -f "$d/x.bd.h5" "$d/x.json"
rc=0
"$DELTASOUP" aggregate -o "$d/x.bd.h5" $CHUNK --checkpoint "$d/x.ck" $TRIM --quiet $IN > /dev/null 2> "$d/err" || rc=$?
[ $rc = 3 ] && grep -q "$d/x.ck/aggregate.ckpt: the partial output $d/x.bd.h5.tmp of this checkpoint is missing.*remove $d/x.ck to start over" \
    "$d/err" && [ "$(wc -l < "$d/err")" = 1 ] || fail "checkpoint without its partial output: exit $rc, $(cat "$d/err")"
rm -rf "$d"
echo "resume: ok"
