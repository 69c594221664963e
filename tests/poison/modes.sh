#!/bin/sh
# `deltasoup poison` on per-row and per-column synthetic deltas: every attack
# at 2 ranks matches the numpy reference (the re-coded scales follow the
# honest scale mode), with the fewest honest deltas each attack accepts.
set -u
. "$(dirname "$0")/../defaults.sh"
name=modes
. "$top_srcdir/tests/poison/common.sh"
for mode in row col; do
    for s in 1 2 3; do "$MK" "$d/$mode$s.bd.h5" --owner "u$s" --seed $s --mode $mode --noise 0.3 || fail mkdelta; done
    for args in "--attack sign-flip --count 1 --strength 2" "--attack scale --count 2" "--attack gaussian --count 2 --strength 0.5" \
        "--attack alie --count 3" "--attack ipm --count 1"; do
        set -- "$d/${mode}1.bd.h5" "$d/${mode}2.bd.h5" "$d/${mode}3.bd.h5"
        case $args in *alie*) ;; *) set -- "$1" ;; esac # n = 1 is enough but for alie
        od="$d/$mode-$(echo "$args" | cut -d' ' -f2)"
        timeout 120 ${MPIEXEC:-mpiexec} -n 2 "$DELTASOUP" poison -o "$od" --quiet $args "$@" > "$od.out" 2>&1 \
            || fail "$mode $args: $(cat "$od.out")"
        z=$(sed -n 's/^alie: z = \([^ ]*\) .*/\1/p' "$od.out")
        "$PYTHON3" "$REF" $args ${z:+--z "$z"} "$od" "$@" > "$d/ref.out" 2>&1 || fail "$mode $args: $(cat "$d/ref.out")"
    done
done
rm -rf "$d"
