#!/bin/sh
# deltasoup aggregate on 64 synthetic 1-bit deltas with the tensor shapes of
# Llama-7B decoder blocks (bench/aggregate_gen.py llama7b: q,k,v,o 4096x4096,
# gate,up 11008x4096, down 4096x11008 coded, the two RMSNorm weights dense
# BF16): median, trimmed-mean and krum at 1 and 2 ranks on one block, then
# MORE_METHOD at 1 rank on MORE_BLOCKS blocks, to show that the peak RSS per
# rank does not grow with the model (it is bounded by --chunk-mb). Prints
# seconds, the job's peak RSS per rank and /usr/bin/time's maximum RSS (the
# largest process: one rank). Run once by hand (about 1.6 GB of scratch per
# block, removed afterwards):
#   BUILD=build sh bench/aggregate_7b.sh
# Knobs: N=64, METHODS, MORE_BLOCKS=2, MORE_METHOD=median, CHUNK_MB (default:
# the job's), BENCH_DIR.
set -eu
. "$(dirname "$0")/env.sh"
N=${N:-64} METHODS=${METHODS:-median trimmed-mean krum}
MORE_BLOCKS=${MORE_BLOCKS:-2} MORE_METHOD=${MORE_METHOD:-median}
chunk=${CHUNK_MB:+--chunk-mb $CHUNK_MB}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-aggregate-7b-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$BUILD/tests/unit/test_aggregate_mkdelta" "$dir/template.bd.h5" --owner t --seed 1

# agg BLOCKS NP METHOD: one timed run on the deltas in $dir/d, one table line.
agg() {
    opt=""
    case $3 in median | trimmed-mean) opt="--requantize" ;; esac
    t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$dir/rss" $MPIEXEC -n "$2" "$DELTASOUP" aggregate --method "$3" $opt $chunk \
        -o "$dir/out.bd.h5" --overwrite --quiet "$dir"/d/*.bd.h5 > "$dir/log" < /dev/null
    t1=$(date +%s.%N)
    rss=$(sed -n 's/.*peak RSS per rank \([0-9.]*\) MB.*/\1/p' "$dir/log")
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v b="$1" -v np="$2" -v m="$3" -v s="$(echo "$t1 - $t0" | bc)" -v r="$rss" -v t="$(cat "$dir/rss")" -v l="$load" \
        'BEGIN { printf "%6d %5d %-12s %8.1f %10s %10.0f %5s\n", b, np, m, s, r, t / 1024, l }'
}
gen() {
    rm -rf "$dir/d" && mkdir "$dir/d"
    $PY "$top/bench/aggregate_gen.py" "$dir/template.bd.h5" "$dir/d" "$N" llama7b "$1"
    echo "# $1 block(s): $(du -sh "$dir/d" | cut -f1) of deltas, $N users, $(nproc) cores, $(uptime | sed 's/.*load/load/')"
    cat "$dir"/d/*.bd.h5 > /dev/null # warm page cache for every run
}
echo "blocks ranks method        seconds job_rss_MB time_rss_MB load1"
gen 1
for np in 1 2; do
    for m in $METHODS; do agg 1 "$np" "$m"; done
done
if [ "$MORE_BLOCKS" -gt 1 ]; then
    gen "$MORE_BLOCKS"
    agg "$MORE_BLOCKS" 1 "$MORE_METHOD"
fi
