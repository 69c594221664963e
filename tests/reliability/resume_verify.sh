#!/bin/sh
# A resumed aggregate verifies its staged partial output (issue 15 item 5;
# docs/aggregate.md "Checkpoint and resume"): the checkpoint keeps the
# SHA-256 of each tensor written to NAME.tmp before the stop; a value edited
# in NAME.tmp between the stop (exit 75, here by SIGTERM to the process at 1
# rank and to every rank at 2) and the resume is refused, exit 3, naming the
# tensor, and no output is written; the value put back, the resume ends with
# the content hash of an uninterrupted run.
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
need_numpy
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
users 5 --shape-rows 11000
IN="$w/u1.bd.h5 $w/u2.bd.h5 $w/u3.bd.h5 $w/u4.bd.h5 $w/u5.bd.h5"
ARGS="--method trimmed-mean --trim 0.25 --chunk-mb 0.001"
"$DELTASOUP" aggregate $ARGS -o "$w/ref.bd.h5" --quiet $IN > "$w/ref.log" 2>&1 || { cat "$w/ref.log"; exit 1; }
ref=$(grep '^content_sha256' "$w/ref.log")

# edit set|restore: change dense/a.weight[0, 0] of the staged file (its
# value kept in $w/orig.npy), or put the kept value back, bit for bit
edit() {
    $PYTHON3 - "$w/o.bd.h5.tmp" "$1" "$w/orig.npy" << 'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    d = f["dense/a.weight"]
    if sys.argv[2] == "set":
        v = d[0:1, 0:1]; np.save(sys.argv[3], v); d[0:1, 0:1] = v + np.float32(0.5)
    else:
        d[0:1, 0:1] = np.load(sys.argv[3])
PY
}

for np in 1 2; do
    rm -rf "$w/ck" "$w/o.bd.h5" "$w/o.bd.h5.tmp" "$w/log"
    if [ $np = 1 ]; then run=; else run="$MPIEXEC -n $np"; fi
    $run "$DELTASOUP" aggregate $ARGS -o "$w/o.bd.h5" --checkpoint "$w/ck" $IN > "$w/log" 2>&1 &
    pid=$!
    n=0
    until grep -q "open 5/5" "$w/log" 2> /dev/null; do
        kill -0 $pid 2> /dev/null || break
        n=$((n + 1))
        [ $n -lt 6000 ] || { kill -KILL $pid; echo "FAIL: no progress"; exit 1; }
        sleep 0.01
    done
    # SIGTERM as Slurm sends it: to the process itself, or to every rank
    if [ $np = 1 ]; then kill -TERM $pid; else kill -TERM $(ps -o pid= --ppid $pid); fi
    rc=0
    wait $pid || rc=$?
    [ $rc = 75 ] && grep -q "signal: checkpoint after tensor [1-4]/5 of the output" "$w/log" && [ -f "$w/o.bd.h5.tmp" ] ||
        { fail "stop at $np rank(s): exit $rc: $(tail -3 "$w/log")"; continue; }
    edit set || exit 1
    np=$np expect 3 - "$w/ck/aggregate.ckpt: tensor a.weight of the partial output $w/o.bd.h5.tmp changed since the checkpoint" \
        "remove $w/ck to start over" -- aggregate $ARGS -o "$w/o.bd.h5" --checkpoint "$w/ck" $IN
    [ ! -e "$w/o.bd.h5" ] || fail "the refused resume wrote the output"
    [ -f "$w/o.bd.h5.tmp" ] || fail "the refused resume removed the partial output"
    edit restore || exit 1
    $run "$DELTASOUP" aggregate $ARGS -o "$w/o.bd.h5" --checkpoint "$w/ck" $IN > "$w/log" 2>&1 ||
        fail "resume at $np after the value was put back: $(tail -3 "$w/log")"
    grep -q "resuming from $w/ck/aggregate.ckpt at tensor" "$w/log" && [ "$(grep '^content_sha256' "$w/log")" = "$ref" ] ||
        fail "resume at $np: not the uninterrupted run's content hash: $(grep -e resuming -e content_sha256 "$w/log")"
done
[ $fails = 0 ] || { echo "resume_verify.sh: $fails failure(s)"; exit 1; }
echo "resume_verify: ok"
