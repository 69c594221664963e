#!/bin/sh
# fit-scales through a pipeline (issue 14, docs/fit-scales.md "Pipelined") on
# stories260K (5 layers) and a real fine-tune's delta:
# - 1 rank (--pipeline 1), 5 ranks as P=5 (one layer a stage), 4 ranks as
#   2 groups of P=2 and 2 ranks whose --mem-per-rank asks for 2 stages give
#   the same fitted scales bit for bit (and the same content hash) and the
#   same report (all but seconds, peak RSS, output, ranks, pipeline);
# - the fitted delta's eval NLL agrees within 1e-5 (1 rank, and eval
#   --pipeline 2 on the 2-group output);
# - a run at P=2 stopped by SIGUSR1 (checkpoint, exit 75) resumed at 1 rank
#   (P=1) ends bit for bit at the uninterrupted 1-rank result;
# - --pipeline that does not divide the ranks is a usage error (exit 2), a
#   rank's memory too small for the whole model is refused naming --pipeline
#   (exit 3), and a stage killed with SIGKILL ends the job (non-zero) within
#   seconds, never a hang.
# Every run goes through mpiexec, so every rank has the same OpenBLAS threads.
# The step's gradient against the whole model and finite differences:
# tests/unit/test_fitscales_pipe.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
fs_setup pipeline
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
fs_inputs 5
cd "$tmp" || exit 99
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
args="--base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt --steps 8 --lr 1e-3 --batch 3
      --seq-len 16 --samples 300"
fit() { # RANKS P NAME [ARGS...]: -o NAME.bd.h5 --report NAME.json
    _n=$1 _p=$2 _o=$3
    shift 3
    $MPIEXEC -n "$_n" "$DELTASOUP" fit-scales $args --pipeline "$_p" -o "$_o.bd.h5" --report "$_o.json" "$@"
}
fit 1 1 p1 --quiet >/dev/null || fs_fail "1 rank"
fit 5 5 p5 --quiet >/dev/null || fs_fail "5 ranks, --pipeline 5"
fit 4 2 g2 >g2.log || { cat g2.log; fs_fail "4 ranks, --pipeline 2"; }
grep -q '^\[fit-scales\] pipeline: 2 group(s) of 2 stages; layers per stage: 0-2, 3-4$' g2.log ||
    { cat g2.log; fs_fail "the plan line"; }
# without --pipeline, 2 ranks whose memory holds half the models (8 bytes per
# student parameter + the f32 teacher + workspaces + 1 GiB) take 2 stages
fit 2 0 auto --mem-per-rank 1.004 >auto.log || { cat auto.log; fs_fail "2 ranks, --mem-per-rank 1.004"; }
grep -q '^\[fit-scales\] pipeline: 1 group(s) of 2 stages' auto.log || { cat auto.log; fs_fail "auto: not 2 stages"; }
fs_same p1 p5 g2 auto
$PY -c 'import json,sys; r=json.load(open("g2.json")); assert r["pipeline"] == 2 and r["ranks"] == 4, r' ||
    fs_fail "g2.json: pipeline and ranks"

# the fitted delta's NLL on held-out questions
nll() { # RANKS P DELTA
    $MPIEXEC -n "$1" "$DELTASOUP" eval --model base.h5 --delta "$3" --ppl held.txt --seq-len 64 --pipeline "$2" \
        --json | $PY -c 'import json,sys; print(repr(json.load(sys.stdin)["nll"]))'
}
a=$(nll 1 1 p1.bd.h5) && b=$(nll 2 2 g2.bd.h5) || fs_fail "eval of the fitted deltas"
$PY -c "import sys; a, b = $a, $b; sys.exit(abs(a - b) > 1e-5)" || fs_fail "eval NLL $a (1 rank) vs $b (P=2)"
echo "fitted delta's eval NLL: $a (1 rank), $b (--pipeline 2)"

# a checkpoint written at P=2 resumed at P=1: SIGUSR1 (forwarded by mpiexec)
# once the job has printed its header, before its first step ends
$MPIEXEC -n 2 "$DELTASOUP" fit-scales $args --pipeline 2 -o r.bd.h5 --checkpoint ck >r.log 2>&1 &
pid=$!
fs_usr1_when '^\[fit-scales\] d.bd.h5: ' r.log $pid
rc=0; wait $pid || rc=$?
[ $rc = 75 ] && [ -f ck/fit-scales.ckpt ] || { cat r.log; fs_fail "SIGUSR1 at P=2: exit $rc, expected 75"; }
fit 1 1 r --checkpoint ck >r2.log || { cat r2.log; fs_fail "resume at P=1"; }
grep -q 'resuming from ck/fit-scales.ckpt at step [1-7] (saved at 2 rank(s))' r2.log || { cat r2.log; fs_fail "no resume"; }
RESUMED=1 fs_same p1 r

# usage and memory errors (one rank without mpiexec: no job abort to wait for)
rc=0; "$DELTASOUP" fit-scales $args --pipeline 2 -o x.bd.h5 2>err || rc=$?
[ $rc = 2 ] && grep -q -- "--pipeline 2: the 1 rank(s) do not split into groups of 2" err ||
    { cat err; fs_fail "--pipeline 2 at 1 rank: exit $rc"; }
rc=0; "$DELTASOUP" fit-scales $args --mem-per-rank 1.001 -o x.bd.h5 2>err || rc=$?
[ $rc = 3 ] && [ "$(grep -c 'error: ' err)" = 1 ] && grep -q -- "ft.h5 with --batch 3 .*--pipeline 1, the most these ranks allow" err ||
    { cat err; fs_fail "--mem-per-rank too small: exit $rc"; }
[ -e x.bd.h5 ] && fs_fail "output written after an error"

# a killed stage (SIGKILL of rank 1, the last stage, once the job runs) ends
# the job with a non-zero exit within seconds (found by its output's absolute
# path: other tests may run fit-scales at the same time)
$MPIEXEC -n 2 "$DELTASOUP" fit-scales $(echo "$args" | sed 's/--steps 8/--steps 1000000/') --pipeline 2 \
    -o "$tmp/k.bd.h5" >k.log 2>&1 &
job=$!
victim=
for i in $(seq 300); do
    for p in $(pgrep -f -- "-o $tmp/k.bd.h5" 2>/dev/null); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$p
    done
    [ -n "$victim" ] && grep -q '^\[fit-scales\] d.bd.h5: ' k.log && break
    sleep 0.1
done
[ -n "$victim" ] || { kill -9 $job; fs_fail "no rank 1 found to kill"; }
t0=$(date +%s)
kill -9 "$victim"
for i in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then
    kill -9 $job
    fs_fail "the job still runs 30 s after its stage 1 was killed"
fi
rc=0; wait $job || rc=$?
echo "killed stage: mpiexec exit $rc after $(($(date +%s) - t0)) s"
[ $rc != 0 ] || fs_fail "the job with a killed stage exited 0"
[ -e k.bd.h5 ] && fs_fail "output written by the killed job"
echo "pipeline: ok"
