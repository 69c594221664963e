#!/bin/sh
# The output of `deltasoup aggregate` does not depend on the number of
# ranks: for the methods on per-tensor and per-column synthetic deltas in
# small chunks (mean is trimmed-mean's k = 0 path), the content hash and the
# report (weights, kept fractions, Krum scores) are identical at 1, 2, 3
# and 4 ranks.
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/aggregate/ranks.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "ranks.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
for mode in tensor col; do
    for s in 1 2 3 4 5 6; do "$MK" "$d/$mode$s.bd.h5" --owner "u$s" --seed $s --mode $mode || fail mkdelta; done
    "$MK" "$d/${mode}bad.bd.h5" --owner evil --seed 9 --mode $mode --poison flip || fail mkdelta
done
run() { # run NAME NP METHOD-OPTIONS... : the content hash and the report, minus the output name
    name=$1 np=$2
    shift 2
    timeout 120 ${MPIEXEC:-mpiexec} -n "$np" "$DELTASOUP" aggregate -o "$d/$name-$np.bd.h5" --report "$d/$name-$np.json" \
        --chunk-mb 0.003 --quiet "$@" > "$d/$name-$np.out" 2>&1 || fail "$name at $np ranks: $(cat "$d/$name-$np.out")"
    grep '^content_sha256' "$d/$name-$np.out" > "$d/$name-$np.hash"
    sed "s|$name-$np.bd.h5|OUT|" "$d/$name-$np.json" > "$d/$name-$np.rep"
}
for mode in tensor col; do
    set -- "$d/${mode}1.bd.h5" "$d/${mode}2.bd.h5" "$d/${mode}bad.bd.h5" "$d/${mode}3.bd.h5" "$d/${mode}4.bd.h5" \
        "$d/${mode}5.bd.h5" "$d/${mode}6.bd.h5"
    methods="median mkrum"
    [ $mode = tensor ] && methods="median trim krum maj"
    for np in 1 2 3 4; do
        for m in $methods; do
            case $m in
            median) run $mode-$m $np --method median "$@" ;;
            trim) run $mode-$m $np --method trimmed-mean --trim 0.2 --requantize "$@" ;;
            krum) run $mode-$m $np --method krum --byzantine 2 "$@" ;;
            mkrum) run $mode-$m $np --method multi-krum --byzantine 1 "$@" ;;
            maj) run $mode-$m $np --method majority "$@" ;;
            esac
            [ $np = 1 ] && continue
            cmp -s "$d/$mode-$m-1.hash" "$d/$mode-$m-$np.hash" || fail "$mode $m: content hash at $np ranks differs"
            cmp -s "$d/$mode-$m-1.rep" "$d/$mode-$m-$np.rep" || fail "$mode $m: report at $np ranks differs"
        done
    done
done
rm -rf "$d"
