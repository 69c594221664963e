# A real one-node Slurm cluster for tests (sourced, not run):
#   . "$top_srcdir/tests/slurm/cluster.sh"
#   ds_cluster_start          # munged + slurmctld + slurmd on 127.0.0.1
#   id=$(ds_sbatch ...)       # sbatch --parsable, prints the job id
#   ds_job_wait "$id" 120     # polls scontrol, prints the final state(s)
#   ds_cluster_stop           # also run by the EXIT trap ds_cluster_start sets
# Everything lives in one temporary directory ($DS_CLUSTER_DIR): slurm.conf
# (SLURM_CONF points there), a private munge key and socket, state, spool,
# logs and pid files. Ports are fixed and not Slurm's defaults, and a flock
# on /tmp/deltasoup-slurm-cluster.lock keeps two clusters from starting at
# once on the machine. Trouble with Slurm itself is a hard failure (exit 99,
# "hard error" for automake): these tests are part of the product.

DS_CLUSTER_LOCK=${DS_CLUSTER_LOCK:-/tmp/deltasoup-slurm-cluster.lock}
DS_CLUSTER_CTLD_PORT=${DS_CLUSTER_CTLD_PORT:-16817}
DS_CLUSTER_SLURMD_PORT=${DS_CLUSTER_SLURMD_PORT:-16818}
DS_CLUSTER_CPUS=${DS_CLUSTER_CPUS:-4}
DS_CLUSTER_DIR=
DS_CLUSTER_PIDS=

ds_cluster_fail()
{
    echo "cluster.sh: FAIL: $*" >&2
    if [ -n "$DS_CLUSTER_DIR" ]; then
        for f in "$DS_CLUSTER_DIR"/log/*.log; do
            [ -f "$f" ] || continue
            echo "---- last lines of $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    exit 99
}

# Waits until a daemon's pid file names a live process (or fails).
ds_cluster_wait_pid()
{
    _f=$1 _n=0
    while [ $_n -lt 100 ]; do
        if [ -s "$_f" ] && kill -0 "$(cat "$_f")" 2>/dev/null; then
            # Kept in memory too: stopping must not depend on the directory.
            DS_CLUSTER_PIDS="$(cat "$_f") $DS_CLUSTER_PIDS"
            return 0
        fi
        sleep 0.1
        _n=$((_n + 1))
    done
    ds_cluster_fail "daemon did not start (no live pid in $_f)"
}

ds_cluster_start()
{
    # A sanitizer build runs the binary's code under mpiexec in every other
    # test; these tests add the batch scripts and Slurm's requeue, which a
    # sanitizer does not check, and the cluster's start-up and polling, which
    # CI's 30 minutes cannot afford twice (docs/TESTING.md). They run in the
    # normal build; DS_SLURM_UNDER_SANITIZERS=1 runs them here too.
    if [ -f "$top_builddir/Makefile" ] && grep -Eq '^[A-Za-z0-9_]+ \+?= *UBSAN_OPTIONS=' "$top_builddir/Makefile" &&
        [ -z "${DS_SLURM_UNDER_SANITIZERS:-}" ]; then
        echo "skip: a sanitizer build (the Slurm tests run in the normal build; DS_SLURM_UNDER_SANITIZERS=1 to run)"
        exit 77
    fi
    for p in munged slurmctld slurmd sbatch scontrol srun; do
        command -v "$p" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
        command -v "$p" >/dev/null 2>&1 ||
            ds_cluster_fail "$p not found: install the Debian packages 'slurm-wlm munge' (scripts/setup.sh)"
    done
    id munge >/dev/null 2>&1 || ds_cluster_fail "no 'munge' user: install the Debian package 'munge'"

    exec 9>"$DS_CLUSTER_LOCK" || ds_cluster_fail "cannot open lock $DS_CLUSTER_LOCK"
    flock -w 600 9 || ds_cluster_fail "another Slurm test cluster held $DS_CLUSTER_LOCK for 10 minutes"

    # A port still held means a daemon outlived its test: say which.
    for port in "$DS_CLUSTER_CTLD_PORT" "$DS_CLUSTER_SLURMD_PORT"; do
        held=$(ss -Hltnp "sport = :$port" 2>/dev/null)
        [ -z "$held" ] || ds_cluster_fail "port $port is in use ($held); set DS_CLUSTER_CTLD_PORT/DS_CLUSTER_SLURMD_PORT or stop it"
    done
    DS_CLUSTER_DIR=$(mktemp -d /tmp/ds-slurm.XXXXXX) || ds_cluster_fail "mktemp failed"
    DS_CLUSTER_PIDS=
    trap 'ds_cluster_stop' EXIT
    trap 'exit 130' INT TERM
    d=$DS_CLUSTER_DIR
    # munged runs as the munge user: its directory must be its own, not
    # writable by others, and searchable by clients to reach the socket.
    chmod 755 "$d"
    mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log" "$d/run"
    dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
    chown -R munge:munge "$d/munge"
    chmod 755 "$d/munge"
    chmod 400 "$d/munge/munge.key"
    runuser -u munge -- munged --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
        --pid-file="$d/munge/munged.pid" --log-file="$d/munge/munged.log" \
        --seed-file="$d/munge/munged.seed" ||
        ds_cluster_fail "munged did not start (see $d/munge/munged.log)"
    ds_cluster_wait_pid "$d/munge/munged.pid"

    cat >"$d/slurm.conf" <<EOF
ClusterName=dstest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$DS_CLUSTER_CTLD_PORT
SlurmdPort=$DS_CLUSTER_SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$d/log/jobcomp.log
MinJobAge=3600
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
PlugStackConfig=$d/plugstack.conf
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$DS_CLUSTER_CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$d/plugstack.conf"
    SLURM_CONF=$d/slurm.conf
    export SLURM_CONF
    # Jobs must not inherit a surrounding allocation's identity.
    unset SLURM_JOB_ID SLURM_JOBID SLURM_NODELIST SLURM_NTASKS SLURM_NPROCS \
        SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID

    slurmctld -c -f "$SLURM_CONF" || ds_cluster_fail "slurmctld did not start"
    ds_cluster_wait_pid "$d/run/slurmctld.pid"
    slurmd -N localhost -f "$SLURM_CONF" || ds_cluster_fail "slurmd did not start"
    ds_cluster_wait_pid "$d/run/slurmd.pid"

    # A wall-clock deadline: a scontrol call can itself take seconds (e.g.
    # when a name does not resolve), so counting tries is not enough.
    _deadline=$(($(date +%s) + 30))
    while :; do
        st=$(timeout 5 scontrol -o show node localhost 2>/dev/null | sed -n 's/.* State=\([A-Z_+]*\).*/\1/p')
        case $st in IDLE*) break ;; esac
        [ "$(date +%s)" -lt $_deadline ] || ds_cluster_fail "node not idle after 30 s (state '$st')"
        sleep 0.1
    done
    echo "cluster.sh: one-node Slurm cluster up in $d (SLURM_CONF=$SLURM_CONF)"
}

ds_cluster_stop()
{
    [ -n "$DS_CLUSTER_DIR" ] || return 0
    d=$DS_CLUSTER_DIR
    # Newest first: slurmd, slurmctld, munged.
    for p in $DS_CLUSTER_PIDS; do
        kill "$p" 2>/dev/null || continue
        _n=0
        while kill -0 "$p" 2>/dev/null && [ $_n -lt 100 ]; do sleep 0.1; _n=$((_n + 1)); done
        kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    done
    if [ -n "${DS_CLUSTER_KEEP:-}" ]; then
        echo "cluster.sh: kept $d (DS_CLUSTER_KEEP)"
    else
        rm -rf "$d"
    fi
    DS_CLUSTER_DIR=
    DS_CLUSTER_PIDS=
    flock -u 9 2>/dev/null
}

# sbatch with the caller's environment (OMPI root overrides, DELTASOUP, ...):
# prints the job id.
ds_sbatch()
{
    _out=$(sbatch --parsable --export=ALL "$@") || ds_cluster_fail "sbatch $* was refused"
    echo "${_out%%;*}"
}

# ds_job_field ID FIELD: FIELD of job ID (first record; arrays print one each).
ds_job_field()
{
    scontrol -o show job "$1" 2>/dev/null | head -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# ds_job_wait ID [TIMEOUT_S]: polls every 0.5 s until the job (every task of
# an array) has ended; prints one final state per line. A timeout cancels it.
ds_job_wait()
{
    _id=$1 _limit=$((${2:-120} * 2)) _n=0
    while :; do
        _states=$(scontrol -o show job "$_id" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p')
        [ -n "$_states" ] || ds_cluster_fail "job $_id unknown to slurmctld"
        _busy=0
        for s in $_states; do
            case $s in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) ;;
            *) _busy=1 ;;
            esac
        done
        [ $_busy = 1 ] || break
        _n=$((_n + 1))
        if [ $_n -ge $_limit ]; then
            scancel "$_id"
            ds_cluster_fail "job $_id still running after ${2:-120} s (states: $_states)"
        fi
        sleep 0.5
    done
    echo "$_states"
}

# ds_job_signal_when ID LOG REGEX: once LOG has a line matching REGEX (the
# step is under way), sends USR1 to the batch script as Slurm's
# --signal=B:USR1@N would. Fails when the job ends first or REGEX does not
# appear within 120 s.
ds_job_signal_when()
{
    _n=0
    until grep -q "$3" "$2" 2>/dev/null; do
        _n=$((_n + 1))
        [ $_n -lt 1200 ] || { cat "$2"; ds_cluster_fail "job $1: no line '$3' in $2 after 120 s"; }
        case $(ds_job_field "$1" JobState) in
        COMPLETED | FAILED | CANCELLED) cat "$2"; ds_cluster_fail "job $1 ended before the signal (no line '$3' yet)" ;;
        esac
        sleep 0.1
    done
    scancel --batch --signal=USR1 "$1" || ds_cluster_fail "scancel --batch --signal=USR1 $1"
}

# ds_job_requeued_wait ID [TIMEOUT_S]: for a job that requeued itself
# (scontrol requeue, once): waits until it is PENDING again (Restarts=1) and
# the node is IDLE, lets it start at once instead of after Slurm's BeginTime
# delay for requeued jobs (about two minutes), and waits for its end; prints
# the final state. The release comes in a later second than the kill:
# slurmd revoked the job's credential at the kill's time (1 s resolution)
# and refuses a launch whose credential is not newer ("Job N already killed,
# do not launch batch job"). Should a launch still be refused, slurmctld
# holds the job back again; it is let go again, three times at most.
ds_job_requeued_wait()
{
    _id=$1 _limit=$((${2:-240} * 2)) _n=0
    until [ "$(ds_job_field "$_id" Restarts)" = 1 ] && [ "$(ds_job_field "$_id" JobState)" = PENDING ] &&
        scontrol -o show node localhost | grep -q ' State=IDLE '; do
        _n=$((_n + 1))
        [ $_n -lt 120 ] || ds_cluster_fail "job $_id was not requeued: $(ds_job_field "$_id" JobState)"
        sleep 0.5
    done
    sleep 2
    scontrol update JobId="$_id" StartTime=now || ds_cluster_fail "scontrol update JobId=$_id StartTime=now"
    _n=0 _tries=1 _held=0
    while :; do
        _st=$(ds_job_field "$_id" JobState)
        case $_st in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) break ;;
        PENDING)
            # held back (BeginTime, a hold, a failed launch) for 3 s on end
            _reason=$(ds_job_field "$_id" Reason)
            case $_reason in None | Priority | Resources) _held=0 ;; *) _held=$((_held + 1)) ;; esac
            if [ $_held -ge 6 ] && [ $_tries -lt 4 ]; then
                echo "job $_id pending again (Reason=$_reason), releasing it once more" >&2
                _tries=$((_tries + 1)) _held=0
                scontrol release "$_id" 2>/dev/null
                scontrol update JobId="$_id" StartTime=now 2>/dev/null
            fi
            ;;
        *) _held=0 ;;
        esac
        _n=$((_n + 1))
        if [ $_n -ge $_limit ]; then
            scancel "$_id"
            ds_cluster_fail "requeued job $_id still $_st after ${2:-240} s"
        fi
        sleep 0.5
    done
    echo "$_st"
}

# ds_need_jobs JOB...: exit 77 (skip) unless deltasoup lists every JOB.
ds_need_jobs()
{
    _jobs=$("$DELTASOUP" --help 2>/dev/null | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
    for j in "$@"; do
        echo "$_jobs" | grep -qx "$j" || {
            echo "SKIP: deltasoup has no '$j' job yet (deltasoup --help); this test runs once it exists"
            exit 77
        }
    done
}

# ds_need_option JOB OPTION: exit 77 (skip) unless `deltasoup JOB --help`
# mentions OPTION (a job that exists but lacks what a test needs yet).
ds_need_option()
{
    "$DELTASOUP" "$1" --help 2>/dev/null | grep -q -- "$2" || {
        echo "SKIP: 'deltasoup $1' has no $2 yet (deltasoup $1 --help); this test runs once it has"
        exit 77
    }
}
