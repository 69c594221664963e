#!/bin/sh
# Load, small (issue 15 "Load"; docs/reliability.md "Load"): bench/load.sh
# with 24 real stories260K deltas: aggregate (trimmed-mean, multi-krum) over
# all 24 at 2 ranks, with peak RSS per rank; then slurm/nightly-soup.sbatch
# (srun shimmed to mpiexec) over an inbox of 18, 6 of them bad (data byte
# flipped, truncated, unsigned): it must publish a soup of the good ones and
# name each of the 6 rejected files with its reason. bench/load.sh checks it
# all and prints "load: ok"; the full size (1,000 and 200 deltas) runs by hand.
set -u
. "$(dirname "$0")/../defaults.sh"
$PYTHON3 -c 'import h5py' 2> /dev/null || { echo "skip: $PYTHON3 lacks h5py"; exit 77; }
command -v bash > /dev/null && command -v bc > /dev/null || { echo "skip: needs bash and bc"; exit 77; }
[ -x /usr/bin/time ] || { echo "skip: needs /usr/bin/time"; exit 77; }
out=${TMPDIR:-/tmp}/ds-load-small.$$.out
LOAD_N=24 LOAD_NIGHTLY=18 LOAD_BAD=6 BUILD=$top_builddir DELTASOUP=$DELTASOUP MPIEXEC=$MPIEXEC \
    bash "$top_srcdir/bench/load.sh" > "$out" 2>&1
rc=$?
grep '^load: ' "$out" | grep -v '^load: nightly |'
ok=0
[ $rc -eq 0 ] && grep -q '^load: ok$' "$out" && ok=1
[ $ok = 1 ] || { cat "$out"; echo "FAIL: bench/load.sh exit $rc"; }
rm -f "$out"
[ $ok = 1 ] && echo "all ok"
