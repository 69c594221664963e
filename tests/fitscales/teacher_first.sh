#!/bin/sh
# fit-scales --teacher-first (docs/fit-scales.md "Teacher first") on
# stories260K (5 layers) and a real fine-tune's delta:
# - the teacher first at 1 rank, at 2 ranks (--pipeline 2) and at 4 ranks
#   (2 groups of P=2) gives the combined mode's fitted scales bit for bit,
#   the same content hash and the same report (all but seconds, peak RSS and
#   the output's name);
# - a teacher-first run at P=2 stopped by SIGUSR1 after step 1 (exit 75)
#   resumed at 1 rank caches only the steps left and ends at the same result;
# - without the flag, a --mem-per-rank between the two plans' needs (read
#   from the plan line) makes it choose the teacher first, and says so;
# - a --scratch folder that does not exist or is a file is refused (exit 4),
#   one whose file system cannot hold the logits too (exit 3), naming the
#   folder and the bytes, before the teacher runs; no output is left.
# Every multi-rank run goes through mpiexec, so every rank has the same
# OpenBLAS threads. The same on a random model at every P, in memory:
# tests/unit/test_fitscales_pipe.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
fs_setup teacher-first
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
fs_inputs 5
cd "$tmp" || exit 99
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
mkdir scratch
args="--base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt --steps 4 --lr 1e-3 --batch 3
      --seq-len 16 --samples 300"
fit() { # RANKS P NAME [ARGS...]: -o NAME.bd.h5 --report NAME.json, the log in NAME.log
    _n=$1 _p=$2 _o=$3
    shift 3
    $MPIEXEC -n "$_n" "$DELTASOUP" fit-scales $args --pipeline "$_p" -o "$_o.bd.h5" --report "$_o.json" "$@" \
        >"$_o.log" 2>&1 || { cat "$_o.log"; fs_fail "$_o: exit $?"; }
}
fit 1 1 c1
fit 1 1 t1 --teacher-first --scratch scratch
grep -q '^\[fit-scales\] teacher first: the teacher runs alone over 42 windows (30 held-out, 4 steps x 3) and its logits, 1376256 bytes (0.00 GiB), go to scratch;' t1.log ||
    { cat t1.log; fs_fail "t1: the teacher-first line"; }
grep -q '^\[fit-scales\] teacher step 4/4 ' t1.log || { cat t1.log; fs_fail "t1: no teacher progress"; }
[ -z "$(ls scratch)" ] || fs_fail "files left in the scratch folder: $(ls scratch)"
fit 2 2 t2 --teacher-first --scratch scratch
TMPDIR=$tmp/scratch; export TMPDIR # the default scratch folder
fit 4 2 t4 --teacher-first
grep -q "go to $tmp/scratch;" t4.log || { cat t4.log; fs_fail "t4: \$TMPDIR is not the scratch folder"; }
unset TMPDIR
fs_same c1 t1 t2 t4
[ -z "$(ls scratch)" ] || fs_fail "files left in the scratch folder: $(ls scratch)"

# a checkpoint written at P=2 in teacher-first mode resumed at 1 rank:
# SIGUSR1 during the teacher's phase stops the job after step 1
$MPIEXEC -n 2 "$DELTASOUP" fit-scales $args --pipeline 2 --teacher-first --scratch scratch -o r.bd.h5 \
    --report r.json --checkpoint ck >r0.log 2>&1 &
pid=$!
fs_usr1_when '^\[fit-scales\] teacher first' r0.log $pid
rc=0; wait $pid || rc=$?
[ $rc = 75 ] && [ -f ck/fit-scales.ckpt ] || { cat r0.log; fs_fail "SIGUSR1 at P=2: exit $rc, expected 75"; }
fit 1 1 r --teacher-first --scratch scratch --checkpoint ck
grep -q 'resuming from ck/fit-scales.ckpt at step 1 (saved at 2 rank(s))' r.log || { cat r.log; fs_fail "no resume"; }
grep -q 'teacher runs alone over 39 windows (30 held-out, 3 steps x 3)' r.log ||
    { cat r.log; fs_fail "the resumed run did not cache the 3 steps left"; }
RESUMED=1 fs_same c1 r

# without the flag: a budget between the two plans' needs (this build's
# plan line) chooses the teacher first
read both one <<EOF
$(sed -n 's/^\[fit-scales\] memory per rank at --pipeline 1: \([0-9]*\) bytes with both models, \([0-9]*\) with the teacher first;.*/\1 \2/p' c1.log)
EOF
[ -n "$one" ] && [ "$one" -lt "$both" ] || { cat c1.log; fs_fail "the memory line: both '$both', teacher first '$one'"; }
mem=$($PY -c "print('%.9f' % (($both + $one) / 2 / 2**30))")
fit 1 0 a --mem-per-rank "$mem" --scratch scratch
grep -q '^\[fit-scales\] teacher first (both models do not fit a rank.s memory): the teacher runs alone over 42 windows' a.log ||
    { cat a.log; fs_fail "--mem-per-rank $mem: the teacher did not run first"; }
fs_same c1 a
mem=$($PY -c "print('%.9f' % (($both + 1024) / 2**30))")
fit 1 0 b --mem-per-rank "$mem" --scratch scratch
grep -q '^\[fit-scales\] teacher first' b.log && { cat b.log; fs_fail "--mem-per-rank $mem: the teacher first, both fit"; }

# scratch folder errors, before the teacher runs, no output
: >afile
err() { # EXIT MESSAGE ARGS...
    _x=$1 _m=$2
    shift 2
    rc=0; "$DELTASOUP" fit-scales $args --teacher-first -o x.bd.h5 "$@" >out 2>err || rc=$?
    [ $rc = "$_x" ] && [ "$(wc -l <err)" = 1 ] && grep -q -- "$_m" err && ! grep -q 'teacher step' out ||
        { cat out err; fs_fail "$*: exit $rc, expected $_x and '$_m'"; }
    [ -e x.bd.h5 ] && fs_fail "$*: output written after an error"
    return 0
}
err 4 "error: --scratch nosuch: No such file or directory" --scratch nosuch
err 4 "error: --scratch afile: not a folder" --scratch afile
if [ "$(id -u)" != 0 ]; then
    mkdir ro && chmod 555 ro && err 4 "error: --scratch ro: cannot write in it" --scratch ro
fi
# 1e8 steps of 3 windows of 16 x 512 logits: 9.8e12 bytes
err 3 "error: --scratch scratch: the teacher's logits need 9830400983040 bytes (9155.27 GiB), the folder has [0-9]* free" \
    --scratch scratch --steps 100000000
echo "teacher_first: ok"
