#!/bin/sh
# aggregate --device / --comm: --device cpu --comm mpi writes what no option
# writes, checked against the numpy reference (tests/python/aggregate_ref.py);
# refused with one line, exit 2 and no output: an unknown device or backend,
# --comm nccl without --device cuda, and --device cuda where this program
# finds no GPU (at 1 and 2 ranks).
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/gpu_jobs/common.sh"
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
ref=$top_srcdir/tests/python/bitdelta_ref.py
model=$top_srcdir/data/models/stories260K
q=--quiet

# three users' deltas of stories260K (per-row scales)
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b.h5" $q >/dev/null
for u in 1 2 3; do
    $PY "$ref" perturb "$w/b.h5" "$w/f$u.h5" "$u" --zero-frac 0.01
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f$u.h5" -o "$w/d$u.bd.h5" --scale row $q >/dev/null
done
ins="$w/d1.bd.h5 $w/d2.bd.h5 $w/d3.bd.h5"
sha() { sed -n 's/^content_sha256: //p'; }
# shellcheck disable=SC2086
a=$("$DELTASOUP" aggregate --method median -o "$w/o1.bd.h5" --report "$w/r1.json" $q $ins | sha)
# shellcheck disable=SC2086
b=$("$DELTASOUP" aggregate --method median -o "$w/o2.bd.h5" --report "$w/r2.json" --device cpu --comm mpi $q $ins | sha)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "content without options '$a', with --device cpu --comm mpi '$b'"
echo "median $w/o2.bd.h5 $w/r2.json -- $ins" >"$w/cases"
$PY "$top_srcdir/tests/python/aggregate_ref.py" "$w/cases" >/dev/null || fail "--device cpu: differs from the numpy reference"
echo "ok: --device cpu --comm mpi = no option = numpy reference"

probe_gpu
agg() { echo aggregate --method median -o "$w/no.bd.h5" $q "$@" $ins; }
# shellcheck disable=SC2046
{
    refused 1 "--device: expected cpu or cuda, got 'bogus'" $(agg --device bogus)
    refused 1 "--comm: expected mpi or nccl, got 'bogus'" $(agg --comm bogus)
    refused 1 "--comm nccl needs --device cuda" $(agg --comm nccl)
    refused 1 "--comm nccl needs --device cuda" $(agg --comm nccl --device cpu)
    if [ "$have_gpu" = 0 ]; then
        for n in 1 2; do
            refused $n "--device cuda: " $(agg --device cuda)
            refused $n "--device cuda: " $(agg --device cuda --comm nccl)
        done
    fi
}
[ ! -e "$w/no.bd.h5" ] && [ ! -e "$w/no.bd.h5.tmp" ] || fail "a refused run left an output"
"$DELTASOUP" aggregate --help | grep -q -- '--comm C' || fail "aggregate --help does not document --comm"
echo "ok: bad --device / --comm refused with no output"
