#!/bin/sh
# fit-scales.sbatch: a time-limit warning (USR1 to the batch script, as
# --signal=B:USR1@N sends it) makes the job checkpoint, requeue itself and
# resume; the result must equal an uninterrupted run with the same number of
# ranks (same content hash), and the log must show both runs.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
. "$top_srcdir/tests/slurm/fixtures.sh"
ds_need_jobs import finetune compress fit-scales
ds_cluster_start
w=$DS_CLUSTER_DIR/work
ds_fixtures "$w" 1
cd "$w" || exit 99
steps=${DS_TEST_FIT_STEPS:-120}
"$DELTASOUP" compress --base base.h5 --finetuned ft1.h5 -o d1.bd.h5 --quiet >/dev/null || ds_cluster_fail "compress"

id=$(DS_BASE=base.h5 DS_FINETUNED=ft1.h5 DS_DELTA=d1.bd.h5 DS_CALIB=train1.txt DS_OUT=fit.bd.h5 \
    DS_STEPS=$steps DS_SEQ_LEN=64 ds_sbatch "$top_srcdir/slurm/fit-scales.sbatch")
log=ds-fit-scales_$id.out
# The uninterrupted reference at the same rank count, beside the job.
$MPIEXEC -n 2 "$DELTASOUP" fit-scales --base base.h5 --finetuned ft1.h5 --delta d1.bd.h5 --calib train1.txt \
    -o ref.bd.h5 --steps "$steps" --seq-len 64 --quiet >/dev/null &
refpid=$!

# Signal once the step is under way (its first progress lines are out); a
# job that ends first means DS_TEST_FIT_STEPS (now $steps) is too small.
ds_job_signal_when "$id" "$log" '^\[fit-scales\] step [0-9]'
st=$(ds_job_requeued_wait "$id" 240) || { cat "$log"; exit 99; }
cat "$log"
[ "$st" = COMPLETED ] || ds_cluster_fail "requeued fit-scales ended $st"
grep -q "^ds-fit-scales: REQUEUED job=$id restarts=0 step_exit=75 " "$log" || ds_cluster_fail "first run did not checkpoint (exit 75) and requeue"
tail -n 1 "$log" | grep -q "^ds-fit-scales: OK job=$id restarts=[1-9][0-9]* out=fit.bd.h5" || ds_cluster_fail "second run summary"
wait $refpid || ds_cluster_fail "plain fit-scales failed"
ref=$("$DELTASOUP" inspect ref.bd.h5 --json | sed -n 's/.*"computed": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
got=$("$DELTASOUP" inspect fit.bd.h5 --json | sed -n 's/.*"computed": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
[ -n "$ref" ] && [ "$got" = "$ref" ] || ds_cluster_fail "resumed result $got differs from the uninterrupted run $ref"
echo "PASS: fit-scales.sbatch checkpointed on USR1, requeued, resumed to the uninterrupted result"
