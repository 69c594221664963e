#!/bin/sh
# Load, small (issue 15 "Load"; docs/reliability.md "Load"): bench/load.sh
# with 40 real stories260K deltas: aggregate (trimmed-mean, multi-krum) over
# all 40 at 2 ranks, with peak RSS per rank; then slurm/nightly-soup.sbatch
# (srun shimmed to mpiexec) over an inbox of 40, 8 of them bad (data byte
# flipped, truncated, unsigned): it must publish a soup of the good ones and
# name each of the 8 rejected files with its reason. bench/load.sh checks it
# all and prints "load: ok"; the full size (1,000 and 200 deltas) runs by hand.
set -u
. "$(dirname "$0")/../defaults.sh"
$PYTHON3 -c 'import h5py' 2> /dev/null || { echo "skip: $PYTHON3 lacks h5py"; exit 77; }
command -v bash > /dev/null && command -v bc > /dev/null || { echo "skip: needs bash and bc"; exit 77; }
[ -x /usr/bin/time ] || { echo "skip: needs /usr/bin/time"; exit 77; }
out=${TMPDIR:-/tmp}/ds-load-small.$$.out
LOAD_N=40 LOAD_NIGHTLY=40 LOAD_BAD=8 BUILD=$top_builddir DELTASOUP=$DELTASOUP MPIEXEC=$MPIEXEC \
    bash "$top_srcdir/bench/load.sh" > "$out" 2>&1
rc=$?
grep '^load: ' "$out" | grep -v '^load: nightly |'
ok=0
[ $rc -eq 0 ] && grep -q '^load: ok$' "$out" && ok=1
[ $ok = 1 ] || { cat "$out"; echo "FAIL: bench/load.sh exit $rc"; }
rm -f "$out"
[ $ok = 1 ] && echo "all ok"
