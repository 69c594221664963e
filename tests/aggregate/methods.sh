#!/bin/sh
# Every aggregation method against the independent numpy reference
# (tests/python/aggregate_ref.py): synthetic deltas with per-tensor, per-row
# and per-column scales, F32/BF16/F16 dense tensors, tied scales and values
# and one poisoned delta each, in small chunks (--chunk-mb) (real deltas:
# real.sh). Robustness: the
# poisoned delta gets Krum weight 0 and barely moves the median and the
# trimmed mean, while it drags the mean far away.
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/aggregate/methods.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "methods.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
. "$top_srcdir/tests/aggregate/cases.sh"

for mode in tensor row col; do
    poison=flip
    [ $mode = row ] && poison=scale
    for s in 1 2 3 4 5; do
        "$MK" "$d/$mode$s.bd.h5" --owner "u$s" --seed $s --mode $mode || fail "mkdelta"
    done
    "$MK" "$d/${mode}bad.bd.h5" --owner evil --seed 9 --mode $mode --poison $poison || fail "mkdelta"
    set -- "$d/${mode}1.bd.h5" "$d/${mode}2.bd.h5" "$d/${mode}bad.bd.h5" "$d/${mode}3.bd.h5" "$d/${mode}4.bd.h5" "$d/${mode}5.bd.h5"
    c="--chunk-mb 0.004"
    agg $mode-mean mean "$c" "" "$@"
    agg $mode-median median "$c" "" "$@"
    agg $mode-trim trimmed-mean "$c --trim 0.2" "trim=0.2" "$@"
    agg $mode-trimq trimmed-mean "$c --trim 0.34 --requantize" "trim=0.34 requantize=1" "$@"
    [ $mode = row ] && agg $mode-meanq mean "$c --requantize" "requantize=1" "$@"
    agg $mode-krum krum "$c --byzantine 1" "byzantine=1" "$@"
    agg $mode-mkrum multi-krum "$c --byzantine 1 --select 3" "byzantine=1 select=3" "$@"
    agg $mode-maj majority "$c --trim 0.2" "trim=0.2" "$@"
    # the honest ones only, for the robustness comparison
    agg $mode-honest-median median "$c" "" "$d/${mode}1.bd.h5" "$d/${mode}2.bd.h5" "$d/${mode}3.bd.h5" "$d/${mode}4.bd.h5" "$d/${mode}5.bd.h5"
done
agg tensor-ties majority "" "" "$d/tensor1.bd.h5" "$d/tensor2.bd.h5" "$d/tensor3.bd.h5" "$d/tensor4.bd.h5" # even n: ties -> 1
agg row-honest-mean mean "" "" "$d/row1.bd.h5" "$d/row2.bd.h5" "$d/row3.bd.h5" "$d/row4.bd.h5" "$d/row5.bd.h5"
agg row-honest-trim trimmed-mean "--trim 0.2" "trim=0.2" "$d/row1.bd.h5" "$d/row2.bd.h5" "$d/row3.bd.h5" "$d/row4.bd.h5" "$d/row5.bd.h5"

"$PYTHON3" "$top_srcdir/tests/python/aggregate_ref.py" "$cases" || fail "numpy reference"

# Robustness, on the tensors' float values.
"$PYTHON3" - "$d" <<'PY' || fail "robustness"
import json, sys
import h5py, numpy as np
d = sys.argv[1]
def dense(name, t="a.weight"):
    with h5py.File(f"{d}/{name}.bd.h5", "r") as f:
        return f["dense"][t][()].astype(np.float64)
for mode in ("tensor", "row", "col"):
    for m in ("krum", "mkrum"):
        c = json.load(open(f"{d}/{mode}-{m}.json"))["contributors"]
        assert c[2]["owner"] == "evil" and c[2]["weight"] == 0.0, f"{mode}-{m}: poisoned delta has weight {c[2]['weight']}"
        assert c[2]["krum_score"] == max(x["krum_score"] for x in c), f"{mode}-{m}: poisoned delta is not the worst"
    honest = dense(f"{mode}-honest-median")
    for m in ("median", "trim"):
        moved = np.abs(dense(f"{mode}-{m}") - honest).max()
        assert moved <= 2.0, f"{mode}-{m}: the poisoned delta moved the result by {moved}"
mean_moved = np.abs(dense("row-mean") - dense("row-honest-mean")).max()
trim_moved = np.abs(dense("row-trim") - dense("row-honest-trim")).max()
assert mean_moved > 50, f"the scale-poisoned delta should drag the mean (moved {mean_moved})"
assert trim_moved < 2, f"trimmed mean moved by {trim_moved}"
print(f"robustness ok: poison moves the mean by {mean_moved:.1f}, the trimmed mean by {trim_moved:.3f}")
PY
rm -rf "$d"
