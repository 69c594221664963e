#!/bin/sh
# Resumable fit-scales: SIGUSR1 (1 rank, and 2 ranks through mpiexec, which
# forwards it) or SIGTERM makes the job finish its step, write a checkpoint
# and exit 75 with no output; the same command then resumes and ends with
# scales bit for bit equal to an uninterrupted run at the same rank count.
# A job killed outright (SIGKILL) resumes from its last periodic checkpoint
# to the same result. A checkpoint is refused for other inputs or options.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
fs_setup resume
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
fs_inputs 5
cd "$tmp" || exit 99
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
steps=100
args="--base base.h5 --finetuned ft.h5 --delta drow.bd.h5 --calib train.txt --steps $steps --lr 1e-3 --batch 2
      --seq-len 16 --checkpoint-every 10 --quiet"
check() { $PY "$top_srcdir/tests/python/fitscales_check.py" scales "$1" "$2" 0 || exit 1; }

# run_until SIG WHEN NP OUT CK: start the job, send SIG once WHEN exists,
# return the job's exit code.
run_until()
{
    if [ "$3" = 1 ]; then
        "$DELTASOUP" fit-scales $args -o "$4" --checkpoint "$5" >"$4.log" 2>&1 &
    else
        $MPIEXEC -n "$3" "$DELTASOUP" fit-scales $args -o "$4" --checkpoint "$5" >"$4.log" 2>&1 &
    fi
    pid=$!
    n=0
    until [ -e "$2" ]; do
        n=$((n + 1))
        [ $n -lt 3000 ] || { kill -KILL $pid; fs_fail "$2 did not appear"; }
        kill -0 $pid 2>/dev/null || break
        sleep 0.01
    done
    kill -"$1" $pid 2>/dev/null
    wait $pid
}

for np in 1 2; do
    if [ $np = 1 ]; then
        "$DELTASOUP" fit-scales $args -o ref$np.bd.h5 >/dev/null || fs_fail "uninterrupted run"
    else
        $MPIEXEC -n $np "$DELTASOUP" fit-scales $args -o ref$np.bd.h5 >/dev/null || fs_fail "uninterrupted run ($np ranks)"
    fi
    # The folder appears once the job runs with its handlers in place.
    rc=0; run_until USR1 ck$np $np out$np.bd.h5 ck$np || rc=$?
    [ $rc = 75 ] || { cat out$np.bd.h5.log; fs_fail "SIGUSR1 at $np rank(s): exit $rc, expected 75"; }
    [ -e out$np.bd.h5 ] || [ -e out$np.bd.h5.tmp ] && fs_fail "output written by an interrupted run"
    [ -f ck$np/fit-scales.ckpt ] || fs_fail "no checkpoint after SIGUSR1"
    grep -q "checkpoint at step" out$np.bd.h5.log || fs_fail "no checkpoint message"
    if [ $np = 1 ]; then
        # A checkpoint belongs to its inputs and options.
        rc=0; "$DELTASOUP" fit-scales $(echo "$args" | sed 's/--lr 1e-3/--lr 2e-3/') -o x.bd.h5 --checkpoint ck1 \
            2>err || rc=$?
        [ $rc = 3 ] && grep -q "ck1/fit-scales.ckpt: checkpoint belongs to another job: lr was 0.001" err ||
            fs_fail "checkpoint with another --lr: exit $rc, $(cat err)"
        head -c 3000 train.txt >other.txt
        rc=0; "$DELTASOUP" fit-scales $(echo "$args" | sed 's/train.txt/other.txt/') -o x.bd.h5 --checkpoint ck1 \
            2>err || rc=$?
        [ $rc = 3 ] && grep -q "calib_sha256 was" err || fs_fail "checkpoint with another calibration text: $(cat err)"
        [ -e x.bd.h5 ] && fs_fail "output written after a refused checkpoint"
    fi
    loud=$(echo "$args" | sed 's/--quiet//')
    if [ $np = 1 ]; then
        "$DELTASOUP" fit-scales $loud -o out$np.bd.h5 --checkpoint ck$np >resume.log || fs_fail "resume"
    else
        $MPIEXEC -n $np "$DELTASOUP" fit-scales $loud -o out$np.bd.h5 --checkpoint ck$np >resume.log ||
            fs_fail "resume ($np ranks)"
    fi
    grep -q "resuming from ck$np/fit-scales.ckpt at step [1-9]" resume.log || fs_fail "did not resume ($np ranks)"
    check ref$np.bd.h5 out$np.bd.h5
    [ -e ck$np ] && fs_fail "checkpoint folder left after the finished run"
done

# SIGTERM, then SIGKILL after the first periodic checkpoint.
rc=0; run_until TERM ckt 1 term.bd.h5 ckt || rc=$?
[ $rc = 75 ] || fs_fail "SIGTERM: exit $rc, expected 75"
"$DELTASOUP" fit-scales $args -o term.bd.h5 --checkpoint ckt >/dev/null || fs_fail "resume after SIGTERM"
check ref1.bd.h5 term.bd.h5
rc=0; run_until KILL ckk/fit-scales.ckpt 1 kill.bd.h5 ckk 2>/dev/null || rc=$?
[ -e kill.bd.h5 ] && fs_fail "the job finished before SIGKILL (make it longer)"
"$DELTASOUP" fit-scales $loud -o kill.bd.h5 --checkpoint ckk >kill.log ||
    fs_fail "resume after SIGKILL"
grep -q "resuming from ckk/fit-scales.ckpt at step" kill.log || fs_fail "did not resume after SIGKILL"
check ref1.bd.h5 kill.bd.h5
echo "resume: ok"
