#!/bin/sh
# A stale MPI-IO semaphore does not hang a job (issue 15 item 14;
# docs/robustness.md "Stale MPI-IO semaphores"). Open MPI's sharedfp/sm
# component keeps a named POSIX semaphore /dev/shm/sem.OMPIO_<basename> for
# each file MPI_File_open opens; a job killed while holding it leaves it at
# 0, and every later 2-rank job opening a file of that basename waited in
# MPI_File_open forever. The program excludes the component
# (OMPI_MCA_sharedfp=^sm unless the user set it): with such a stale
# semaphore in place, `mpiexec -n 2 deltasoup inspect FILE` must finish. The
# control run with the component selected (OMPI_MCA_sharedfp=sm, the user's
# choice, which stands) shows the semaphore really blocks (not a failure
# when this MPI does not use it).
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
[ -d /dev/shm ] || { echo "skip: no /dev/shm"; exit 77; }
command -v timeout > /dev/null || { echo "skip: no timeout(1)"; exit 77; }
name=stale-$$.bd.h5
sem=/dev/shm/sem.OMPIO_$name
trap 'rm -rf "$w" "$sem"' EXIT
"$MK" "$w/$name" --owner u1 --seed 1 > /dev/null || exit 1
# the stale semaphore: created at 0 and left so, as a killed holder leaves it
$PYTHON3 - "/OMPIO_$name" << 'PY' || exit 1
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
libc.sem_close.argtypes = [ctypes.c_void_p]
s = libc.sem_open(sys.argv[1].encode(), os.O_CREAT | os.O_EXCL, 0o644, 0)
if s is None or s == ctypes.c_void_p(-1).value:
    sys.exit("sem_open: " + os.strerror(ctypes.get_errno()))
libc.sem_close(s)
PY
[ -e "$sem" ] || { echo "FAIL: $sem was not created"; exit 1; }
unset OMPI_MCA_sharedfp
# shared-memory segments of ranks killed by timeout land in $w, removed at exit
OMPI_MCA_btl_vader_backing_directory=$w
export OMPI_MCA_btl_vader_backing_directory
rc=0
timeout -k 5 60 $MPIEXEC -n 2 "$DELTASOUP" inspect "$w/$name" > "$w/out" 2> "$w/err" || rc=$?
[ $rc = 0 ] && grep -q "content_sha256" "$w/out" ||
    fail "inspect at 2 ranks with a stale $sem: exit $rc (124: hung, killed after 60 s): $(tail -3 "$w/err")"
# control: the user's choice of sharedfp/sm stands, and then the stale semaphore blocks
rc=0
OMPI_MCA_sharedfp=sm timeout -k 5 8 $MPIEXEC -n 2 "$DELTASOUP" inspect "$w/$name" > /dev/null 2>&1 || rc=$?
if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "control: with OMPI_MCA_sharedfp=sm the same command hangs on the stale semaphore (killed after 8 s)"
else
    echo "control: with OMPI_MCA_sharedfp=sm it did not hang (exit $rc): this MPI does not use the semaphore"
fi
[ $fails = 0 ] || exit 1
echo "sharedfp: ok"
