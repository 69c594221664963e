#!/bin/sh
# aggregate.sbatch: a time-limit warning (USR1 to the batch script, as
# --signal=B:USR1@N sends it) makes the step finish its tensor, checkpoint
# (exit 75) and the script requeue the job; the requeued run resumes after
# the last finished tensor. The result must equal an uninterrupted run's
# (content hash and report), and the log must show both runs.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
ds_need_jobs aggregate
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
[ -x "$MK" ] || ds_cluster_fail "$MK is not built (make check builds it)"
ds_cluster_start
w=$DS_CLUSTER_DIR/work
mkdir -p "$w" && cd "$w" || exit 99
# 5 synthetic users, one tensor of 44000 rows: in 1 KiB chunks the job takes
# a few seconds, so a signal sent once its inputs are open lands mid-run.
in=""
for s in 1 2 3 4 5; do
    "$MK" "u$s.bd.h5" --owner "u$s" --seed $s --shape-rows 44000 || ds_cluster_fail "test_aggregate_mkdelta"
    in="$in $w/u$s.bd.h5"
done
in=${in# }

id=$(DS_OUT=agg.bd.h5 DS_DELTAS="$in" DS_METHOD=trimmed-mean DS_TRIM=0.25 DS_CHUNK_MB=0.001 DS_REPORT=agg.json \
    ds_sbatch "$top_srcdir/slurm/aggregate.sbatch")
log=ds-aggregate_$id.out
# The uninterrupted reference at the same rank count, beside the job.
$MPIEXEC -n 2 "$DELTASOUP" aggregate --method trimmed-mean --trim 0.25 --chunk-mb 0.001 -o ref.bd.h5 --report ref.json \
    --quiet $in >ref.out 2>&1 &
refpid=$!

ds_job_signal_when "$id" "$log" '^\[aggregate\] open 5/5'
st=$(ds_job_requeued_wait "$id" 240) || { cat "$log"; exit 99; }
cat "$log"
[ "$st" = COMPLETED ] || ds_cluster_fail "requeued aggregate ended $st"
grep -q "^ds-aggregate: REQUEUED job=$id restarts=0 step_exit=75 " "$log" || ds_cluster_fail "first run did not checkpoint (exit 75) and requeue"
grep -q "resuming from agg.bd.h5.ckpt/aggregate.ckpt at tensor" "$log" || ds_cluster_fail "second run did not resume from the checkpoint"
tail -n 1 "$log" | grep -q "^ds-aggregate: OK job=$id restarts=[1-9][0-9]* deltas=5 out=agg.bd.h5" || ds_cluster_fail "second run summary"
[ ! -e agg.bd.h5.ckpt ] || ds_cluster_fail "checkpoint left after the finished job"
wait $refpid || ds_cluster_fail "plain aggregate failed: $(cat ref.out)"
hash() { "$DELTASOUP" inspect "$1" --json | sed -n 's/.*"computed": *"\([0-9a-f]*\)".*/\1/p' | head -n 1; }
ref=$(hash ref.bd.h5) got=$(hash agg.bd.h5)
[ -n "$ref" ] && [ "$got" = "$ref" ] || ds_cluster_fail "resumed result $got differs from the uninterrupted run $ref"
sed 's/ref\.bd\.h5/OUT/' ref.json >ref.rep
sed 's/agg\.bd\.h5/OUT/' agg.json >agg.rep
cmp -s ref.rep agg.rep || ds_cluster_fail "report differs from the uninterrupted run's: $(diff ref.rep agg.rep | head -5)"
echo "PASS: aggregate.sbatch checkpointed on USR1, requeued, resumed to the uninterrupted result"
