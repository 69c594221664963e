#!/bin/sh
# compress and apply with --device cuda against --device cpu on a GPU
# machine: the same content hashes (delta and applied model) for bf16 and
# f32, every scale kind, 1 and 2 ranks; the cuda outputs also against the
# numpy reference; a NaN in a 1-bit tensor reported as on the CPU; aggregate
# with --device cuda --comm nccl = on the CPU over MPI. Exit 77 (skip) where
# the program finds no GPU or was built without CUDA. Needs the full stack
# (MPI, HDF5, numpy/h5py); the kernels alone: bench/gpu/run.sh.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
probe=$("$DELTASOUP" compress --dry-run --shapes llama-7b --device cuda 2>&1 >/dev/null) || {
    echo "skip: $probe"
    exit 77
}
ref=$top_srcdir/tests/python/bitdelta_ref.py
model=$top_srcdir/data/models/stories260K
w=${TMPDIR:-/tmp}/ds-gpu-jobs.$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
q=--quiet
fail() { echo "FAIL: $*"; exit 1; }
sha() { sed -n 's/^content_sha256: //p'; }

"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b16.h5" --dtype bf16 $q >/dev/null
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b32.h5" $q >/dev/null
$PY "$ref" perturb "$w/b16.h5" "$w/f16.h5" 5 --zero-frac 0.05
$PY "$ref" perturb "$w/b32.h5" "$w/f32.h5" 6 --zero-frac 0.05

for dt in 16 32; do
    for sc in tensor row col; do
        for run in "1 cpu" "1 cuda" "2 cuda"; do
            set -- $run
            n=$1 dev=$2 t=$w/$1$2
            $MPIEXEC -n "$n" "$DELTASOUP" compress --base "$w/b$dt.h5" --finetuned "$w/f$dt.h5" -o "$t.bd.h5" \
                --scale $sc --device $dev --json $q >"$t.json"
            grep -q "\"device\": \"$dev\"" "$t.json" || fail "compress --device $dev ran on: $(cat "$t.json")"
            sed -n 's/.*"content_sha256": "\([0-9a-f]*\)".*/\1/p' "$t.json" >"$t.sha"
            $MPIEXEC -n "$n" "$DELTASOUP" apply --base "$w/b$dt.h5" --delta "$t.bd.h5" -o "$t.h5" --device $dev $q | sha >>"$t.sha"
        done
        for t in 1cuda 2cuda; do
            [ "$(wc -l <"$w/1cpu.sha")" -eq 2 ] && cmp -s "$w/1cpu.sha" "$w/$t.sha" ||
                fail "f$dt $sc: cpu $(cat "$w/1cpu.sha"), $t $(cat "$w/$t.sha")"
        done
        $PY "$ref" check "$w/b$dt.h5" "$w/f$dt.h5" "$w/1cuda.bd.h5" "$w/1cuda.h5" --scale $sc >/dev/null ||
            fail "f$dt $sc --device cuda: differs from the numpy reference"
        rm -f "$w"/1cpu.* "$w"/1cuda.* "$w"/2cuda.*
        echo "ok: f$dt $sc: cuda (1 and 2 ranks) = cpu = numpy reference"
    done
done

# the non-finite error path: the GPU sums find it, the CPU names the element
$PY "$top_srcdir/tests/python/bitdelta_bad.py" nan "$w/b32.h5" "$w/nan.h5"
for dev in cpu cuda; do
    set +e
    "$DELTASOUP" compress --base "$w/b32.h5" --finetuned "$w/nan.h5" -o "$w/nan.bd.h5" --device $dev $q 2>"$w/$dev.err"
    rc=$?
    set -e
    [ "$rc" -eq 3 ] && [ ! -e "$w/nan.bd.h5" ] || fail "NaN on $dev: exit $rc or output left"
done
cmp -s "$w/cpu.err" "$w/cuda.err" || fail "NaN: cpu says '$(cat "$w/cpu.err")', cuda '$(cat "$w/cuda.err")'"
echo "ok: NaN delta reported alike on cpu and cuda: $(cat "$w/cuda.err")"

# aggregate: --device cuda --comm nccl (one rank, one GPU) writes what the CPU/MPI run writes
for u in 1 2 3; do
    $PY "$ref" perturb "$w/b32.h5" "$w/u$u.h5" "$((u + 10))" --zero-frac 0.01
    "$DELTASOUP" compress --base "$w/b32.h5" --finetuned "$w/u$u.h5" -o "$w/u$u.bd.h5" --scale row --device cpu $q >/dev/null
done
for m in median krum; do
    a=$("$DELTASOUP" aggregate --method $m -o "$w/a.bd.h5" --overwrite $q "$w"/u?.bd.h5 | sha)
    b=$("$DELTASOUP" aggregate --method $m -o "$w/b.bd.h5" --overwrite --device cuda --comm nccl $q "$w"/u?.bd.h5 | sha)
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "aggregate $m: mpi $a, nccl $b"
    echo "ok: aggregate $m: --device cuda --comm nccl = cpu/mpi"
done
