#!/bin/sh
# The robust aggregators (geometric-median, centered-clipping, bulyan) and
# --pre nnm against the independent numpy reference
# tests/aggregate/robust_ref.py (on the expanded vectors, not on the Gram
# matrix the job uses): synthetic 1-bit deltas with per-tensor, per-row and
# per-column scales plus F32/BF16/F16 dense tensors, one sign-flipped; the
# content hash at 2 ranks equals the one at 1 rank; Bulyan with n < 4F + 3,
# centered-clipping without --tau and nnm before majority are refused (exit 2).
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/aggregate/robust.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "robust.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
. "$top_srcdir/tests/aggregate/cases.sh"

for mode in tensor row col; do
    for s in 1 2 3 4 5 6; do "$MK" "$d/$mode$s.bd.h5" --owner "u$s" --seed $s --mode $mode || fail mkdelta; done
    "$MK" "$d/${mode}bad.bd.h5" --owner evil --seed 9 --mode $mode --poison flip || fail mkdelta
done
ins() { echo "$d/${1}1.bd.h5 $d/${1}2.bd.h5 $d/${1}bad.bd.h5 $d/${1}3.bd.h5 $d/${1}4.bd.h5 $d/${1}5.bd.h5 $d/${1}6.bd.h5"; }
c="--chunk-mb 0.004"
agg tensor-gm geometric-median "$c" "" $(ins tensor)
agg tensor-cc centered-clipping "$c --tau 20 --iters 3" "tau=20 iters=3" $(ins tensor)
agg tensor-bul bulyan "$c --byzantine 1" "byzantine=1" $(ins tensor)
agg row-bul bulyan "$c --byzantine 1 --pre nnm" "byzantine=1 pre=nnm" $(ins row)
agg row-med median "$c --byzantine 2 --pre nnm" "byzantine=2 pre=nnm" $(ins row)
agg col-gm geometric-median "$c --tol 1e-9 --max-iter 50 --byzantine 1 --pre nnm" "tol=1e-9 max_iter=50 byzantine=1 pre=nnm" $(ins col)
agg col-cc centered-clipping "$c --tau 1000" "tau=1000" $(ins col) # no clipping: the mean
"$PYTHON3" "$top_srcdir/tests/aggregate/robust_ref.py" "$cases" || fail "numpy reference"

# 2 ranks: the same content hash
for x in "tensor-gm geometric-median $(ins tensor)" "tensor-bul bulyan --byzantine 1 $(ins tensor)" \
    "row-med median --byzantine 2 --pre nnm $(ins row)"; do
    set -- $x
    name=$1 m=$2
    shift 2
    timeout 120 ${MPIEXEC:-mpiexec} -n 2 "$DELTASOUP" aggregate --method "$m" --chunk-mb 0.004 -o "$d/$name-2.bd.h5" \
        --quiet "$@" > "$d/$name-2.out" 2>&1 || fail "$name at 2 ranks: $(cat "$d/$name-2.out")"
    a=$(grep '^content_sha256' "$d/$name.out") b=$(grep '^content_sha256' "$d/$name-2.out")
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "$name: content hash at 2 ranks ($b) differs from 1 rank ($a)"
done

# robustness: the flipped delta barely moves the geometric median (closer to
# the honest mean than 0.35 of its norm), and Bulyan's Krum steps leave it out
"$PYTHON3" - "$d" <<'PY' || fail "robustness"
import json, sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/tensor-gm.bd.h5", "r") as f:
    gm = f["dense"]["a.weight"][()].astype(np.float64)
xs = []
for s in range(1, 7):
    with h5py.File(f"{d}/tensor{s}.bd.h5", "r") as f:
        g = f["bits"]["a.weight"]
        b = np.unpackbits(g["signs"][()].view(np.uint8).reshape(g.attrs["rows"], -1), axis=1, bitorder="little")[:, :150]
        xs.append(g["scale"][()].astype(np.float64)[0] * (2.0 * b - 1))
h = np.mean(xs, axis=0)
err = np.linalg.norm(gm - h) / np.linalg.norm(h)
assert err < 0.35, f"geometric median: relative distance to the honest mean {err}"
c = json.load(open(f"{d}/tensor-bul.json"))["contributors"]
assert c[2]["owner"] == "evil" and c[2]["status"] == "rejected", f"bulyan kept the flipped delta: {c[2]}"
PY

# refusals: exit 2, one clear line, no output
refuse() { # refuse WANT-IN-MESSAGE OPTIONS...
    want=$1
    shift
    "$DELTASOUP" aggregate -o "$d/no.bd.h5" "$@" $(ins tensor) > "$d/err.out" 2>&1
    rc=$?
    [ $rc = 2 ] || fail "$*: exit $rc, want 2: $(cat "$d/err.out")"
    grep -q -- "$want" "$d/err.out" || fail "$*: message lacks '$want': $(cat "$d/err.out")"
    [ ! -e "$d/no.bd.h5" ] || fail "$*: wrote an output"
}
refuse "bulyan with --byzantine 2 needs at least 11 deltas (4F + 3), got 7" --method bulyan --byzantine 2
refuse "centered-clipping needs --tau" --method centered-clipping
refuse "--pre nnm does not apply to majority" --method majority --pre nnm --byzantine 1
rm -rf "$d"
