#!/bin/sh
# Memory of `deltasoup aggregate` is bounded by --chunk-mb, not by the
# number of deltas times their size: a 200000 x 150 1-bit tensor (4.8 MB of
# signs per user) aggregated from 3 and from 32 inputs with --chunk-mb 2 has
# nearly the same peak RSS (ds_peak_rss): less than 12 MB apart, where holding
# the 29 extra inputs would take 139 MB; the 32-user expansion to floats
# would be 3.8 GB.
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/aggregate/memory.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "memory.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
# Under ASan freed blocks wait in a quarantine that would read as growth.
ASAN_OPTIONS="quarantine_size_mb=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
"$MK" "$d/a.bd.h5" --owner a --seed 1 --shape-rows 200000 || fail mkdelta
"$MK" "$d/b.bd.h5" --owner b --seed 2 --shape-rows 200000 || fail mkdelta
rss() { # rss METHOD-OPTIONS... -> peak RSS in MB
    "$DELTASOUP" aggregate -o "$d/out.bd.h5" --overwrite --quiet --chunk-mb 2 "$@" > "$d/out" 2>&1 || fail "$*: $(cat "$d/out")"
    sed -n 's/.*peak RSS per rank \([0-9.]*\) MB.*/\1/p' "$d/out"
}
set --
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do set -- "$@" "$d/a.bd.h5" "$d/b.bd.h5"; done
for m in majority krum; do
    opt="--method $m"
    [ $m = krum ] && opt="--method krum --byzantine 0"
    small=$(rss $opt "$d/a.bd.h5" "$d/b.bd.h5" "$d/a.bd.h5")
    big=$(rss $opt "$@")
    echo "$m: peak RSS $small MB with 3 inputs, $big MB with 32"
    awk -v s="$small" -v b="$big" 'BEGIN { exit !(b - s < 12) }' || fail "$m: $big MB with 32 inputs vs $small MB with 3"
done
rm -rf "$d"
