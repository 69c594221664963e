#!/bin/sh
# The merging methods (task-arithmetic, ties, dare-ties, dare-linear)
# against the independent numpy reference tests/aggregate/merge_ref.py:
# synthetic 1-bit deltas with per-tensor, per-row and per-column scales plus
# F32/BF16/F16 dense tensors (test_aggregate_mkdelta), in small chunks; the
# content hash at 2 ranks equals the one at 1 rank; --density outside (0, 1]
# and options given to a method that does not use them are refused (exit 2).
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/aggregate/merge.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "merge.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
. "$top_srcdir/tests/aggregate/cases.sh"

for mode in tensor row col; do
    for s in 1 2 3 4; do "$MK" "$d/$mode$s.bd.h5" --owner "u$s" --seed $s --mode $mode --noise 0.3 || fail mkdelta; done
    "$MK" "$d/${mode}bad.bd.h5" --owner evil --seed 9 --mode $mode --poison flip || fail mkdelta
done
ins() { echo "$d/${1}1.bd.h5 $d/${1}2.bd.h5 $d/${1}bad.bd.h5 $d/${1}3.bd.h5 $d/${1}4.bd.h5"; }
c="--chunk-mb 0.004"
agg tensor-ta task-arithmetic "$c --lambda 0.5" "lambda=0.5" $(ins tensor)
agg tensor-ties ties "$c --density 0.3 --seed 5" "density=0.3 seed=5" $(ins tensor)
agg tensor-dt dare-ties "$c --density 0.5 --seed 7" "density=0.5 seed=7" $(ins tensor)
agg tensor-dl dare-linear "$c --density 0.6 --seed 3 --lambda 0.8 --requantize" \
    "density=0.6 lambda=0.8 seed=3 requantize=1" $(ins tensor)
agg row-ties ties "$c --density 0.2" "density=0.2" $(ins row)
agg row-dt dare-ties "$c --density 0.9 --seed 11" "density=0.9 seed=11" $(ins row)
agg col-ties ties "$c --density 0.45 --seed 2" "density=0.45 seed=2" $(ins col)
agg col-dl dare-linear "$c --density 0.25" "density=0.25" $(ins col)
"$PYTHON3" "$top_srcdir/tests/aggregate/merge_ref.py" "$cases" || fail "numpy reference"

# 2 ranks: the same content hash
for x in "tensor-ties ties --density 0.3 --seed 5 $(ins tensor)" "row-dt dare-ties --density 0.9 --seed 11 $(ins row)" \
    "col-dl dare-linear --density 0.25 $(ins col)"; do
    set -- $x
    name=$1 m=$2
    shift 2
    timeout 120 ${MPIEXEC:-mpiexec} -n 2 "$DELTASOUP" aggregate --method "$m" --chunk-mb 0.004 -o "$d/$name-2.bd.h5" \
        --quiet "$@" > "$d/$name-2.out" 2>&1 || fail "$name at 2 ranks: $(cat "$d/$name-2.out")"
    a=$(grep '^content_sha256' "$d/$name.out") b=$(grep '^content_sha256' "$d/$name-2.out")
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "$name: content hash at 2 ranks ($b) differs from 1 rank ($a)"
done

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
refuse "--density 0: must be in (0, 1]" --method ties --density 0
refuse "--density 1.5: must be in (0, 1]" --method dare-linear --density 1.5
refuse "--density applies to ties, dare-ties and dare-linear, not mean" --method mean --density 0.5
rm -rf "$d"
