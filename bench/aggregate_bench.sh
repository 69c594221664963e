#!/bin/sh
# deltasoup aggregate vs a PyTorch peer that expands the deltas to floats
# (bench/aggregate_peer.py), on synthetic 1-bit deltas (bench/aggregate_gen.py;
# default 8 tensors of 4096 x 4096 per user, per-tensor scales) for N = 16 and
# 64 users, deltasoup at 1 and 2 ranks, in one run. Prints seconds and
# user-coordinates per second. Run once by hand (not part of make check):
#   BUILD=build sh bench/aggregate_bench.sh
# Knobs: NS="16 64", TENSORS=8, ROWS=4096, COLS=4096, METHODS, PEER_METHODS.
set -eu
. "$(dirname "$0")/env.sh"
NS=${NS:-16 64}
TENSORS=${TENSORS:-8} ROWS=${ROWS:-4096} COLS=${COLS:-4096}
METHODS=${METHODS:-mean median trimmed-mean majority krum}
PEER_METHODS=${PEER_METHODS:-mean,median,trimmed-mean,majority,krum}
dir=${BENCH_DIR:-/tmp}/ds-aggregate-bench.$$
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
"$BUILD/tests/unit/test_aggregate_mkdelta" "$dir/template.bd.h5" --owner t --seed 1
coords=$((TENSORS * ROWS * COLS))
echo "shape: $TENSORS x [$ROWS, $COLS] 1-bit per user ($coords coordinates), cpu: $(nproc) cores"
echo "n impl ranks method seconds Gcoord_users_per_s peak_rss_MB"
for n in $NS; do
    mkdir -p "$dir/n$n"
    $PY "$top/bench/aggregate_gen.py" "$dir/template.bd.h5" "$dir/n$n" "$n" "$TENSORS" "$ROWS" "$COLS"
    cat "$dir/n$n"/*.bd.h5 > /dev/null # warm page cache for everyone
    for np in 1 2; do
        for m in $METHODS; do
            opt=""
            case $m in mean | median | trimmed-mean) opt="--requantize" ;; esac
            t0=$(date +%s.%N)
            $MPIEXEC -n "$np" "$DELTASOUP" aggregate --method "$m" $opt -o "$dir/out.bd.h5" --overwrite --quiet \
                "$dir/n$n"/*.bd.h5 > "$dir/log"
            t1=$(date +%s.%N)
            rss=$(sed -n 's/.*peak RSS per rank \([0-9.]*\) MB.*/\1/p' "$dir/log")
            awk -v n="$n" -v np="$np" -v m="$m" -v a="$t0" -v b="$t1" -v c="$coords" -v r="$rss" \
                'BEGIN { printf "%d deltasoup %d %s %.2f %.2f %s\n", n, np, m, b - a, n * c / (b - a) / 1e9, r }'
        done
    done
    $PY "$top/bench/aggregate_peer.py" "$PEER_METHODS" 0.1 0 "$dir/n$n"/*.bd.h5 | while read -r m s; do
        awk -v n="$n" -v m="$m" -v s="$s" -v c="$coords" \
            'BEGIN { printf "%d torch 1 %s %.2f %.2f -\n", n, m, s, n * c / s / 1e9 }'
    done
    rm -rf "$dir/n$n"
done
