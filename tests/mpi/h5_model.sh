#!/bin/sh
# HDF5 model checkpoint at 1, 2 and 4 ranks: the Check program writes a random
# mixed F32/F16/BF16 model with a tokenizer (tensors owned by different
# ranks), reads it back exactly, and checks atomicity and refusals; then
# `deltasoup inspect --json` runs at 1, 2 and 4 ranks on each written copy, and
# an independent h5py/torch script (tests/python/check_h5_bf16.py) checks the
# stored values against torch's rounding, HDF5's own bf16 -> f32 conversion,
# the content hash against its own SHA-256 of the canonical serialisation, and
# that every inspect report is the same.
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/mpi/h5_model.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "h5_model.sh: FAIL: $*" >&2; exit 1; }

timeout 300 "$top_builddir/tests/run_mpi.sh" "1 2 4" "$top_builddir/tests/unit/test_h5_model" "$d" \
    || fail "test_h5_model"

reports=""
for w in 1 2 4; do
    for n in 1 2 4; do
        out="$d/inspect_w${w}_n$n.json"
        timeout 60 ${MPIEXEC:-mpiexec} -n $n "$DELTASOUP" inspect --json "$d/np$w/model.h5" > "$out" \
            || fail "inspect --json at $n ranks of the model written at $w"
        reports="$reports $out"
    done
done
# The table for people names every tensor too.
"$DELTASOUP" inspect "$d/np1/model.h5" > "$d/inspect.txt" || fail "inspect (table)"
grep -q '^  model.layers.0.mlp.up_proj.weight  *BF16  *\[40, 16\] ' "$d/inspect.txt" || fail "table: $(cat "$d/inspect.txt")"
grep -q '^  match: yes$' "$d/inspect.txt" || fail "table: no hash match line"

"$PYTHON3" "$top_srcdir/tests/python/check_h5_bf16.py" "$d/np1/model.h5" "$d/np1/ref.bin" $reports
rc=$?
[ $rc -eq 0 ] || exit $rc
for w in 2 4; do
    "$PYTHON3" "$top_srcdir/tests/python/check_h5_bf16.py" "$d/np$w/model.h5" "$d/np$w/ref.bin" || exit $?
done
rm -rf "$d"
