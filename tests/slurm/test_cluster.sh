#!/bin/sh
# The harness itself: a one-node cluster starts, a 2-task job launched with
# srun --mpi=pmix forms ONE MPI world (rank 0 alone prints the version: two
# singleton ranks would each print it), job states and exit codes read back,
# and sbatch options override #SBATCH defaults.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
ds_cluster_start
cd "$DS_CLUSTER_DIR" || exit 99

cat >hello.sbatch <<'SB'
#!/bin/sh
#SBATCH --job-name=ds-hello
#SBATCH --ntasks=2
#SBATCH --output=%x_%j.out
srun --mpi=pmix "$DELTASOUP" version || exit $?
srun --mpi=pmix sh -c 'echo "task $SLURM_PROCID of $SLURM_NTASKS"'
SB
cat >fail.sbatch <<'SB'
#!/bin/sh
#SBATCH --job-name=ds-fail
#SBATCH --output=%x_%j.out
exit 3
SB

ok=$(ds_sbatch hello.sbatch)
bad=$(ds_sbatch fail.sbatch)
renamed=$(ds_sbatch --job-name=ds-renamed --ntasks=1 hello.sbatch)
st=$(ds_job_wait "$ok" 60) || exit 99
[ "$st" = COMPLETED ] || { cat ds-hello_"$ok".out; ds_cluster_fail "2-task job ended $st"; }
n=$(grep -c "^deltasoup " ds-hello_"$ok".out)
[ "$n" = 1 ] || { cat ds-hello_"$ok".out; ds_cluster_fail "srun --mpi=pmix did not form one 2-rank world ($n version lines)"; }
[ "$(grep -c '^task [01] of 2$' ds-hello_"$ok".out)" = 2 ] || ds_cluster_fail "not 2 tasks"
[ "$(ds_job_field "$ok" ExitCode)" = 0:0 ] || ds_cluster_fail "exit code $(ds_job_field "$ok" ExitCode)"

st=$(ds_job_wait "$bad" 60) || exit 99
[ "$st" = FAILED ] || ds_cluster_fail "failing job ended $st"
[ "$(ds_job_field "$bad" ExitCode)" = 3:0 ] || ds_cluster_fail "failing job: ExitCode $(ds_job_field "$bad" ExitCode), want 3:0"

st=$(ds_job_wait "$renamed" 60) || exit 99
[ "$st" = COMPLETED ] && [ -f ds-renamed_"$renamed".out ] || ds_cluster_fail "--job-name did not override #SBATCH"
[ "$(ds_job_field "$renamed" NumTasks)" = 1 ] || ds_cluster_fail "--ntasks did not override #SBATCH"
grep -q '^task 0 of 1$' ds-renamed_"$renamed".out || ds_cluster_fail "1-task run did not run 1 task"
echo "PASS: cluster, srun --mpi=pmix at 2 tasks, states, exit codes, overrides"
