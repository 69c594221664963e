#!/bin/sh
# deltasoup aggregate on 64 synthetic 1-bit deltas with the tensor shapes of
# Llama-7B decoder blocks (bench/aggregate_gen.py llama7b: q,k,v,o 4096x4096,
# gate,up 11008x4096, down 4096x11008 coded, the two RMSNorm weights dense
# BF16; real content_sha256 and per-dataset digests, so builds that verify on
# read and older ones read the same files): median, trimmed-mean and krum at
# 1 and 2 ranks on one block, then MORE_METHOD at 1 rank on MORE_BLOCKS
# blocks, to show that the peak RSS per rank does not grow with the model (it
# is bounded by --chunk-mb). With OLD=DIR (a build of an older commit, e.g.
# 20a0a0b in a git worktree) every line is run by both builds in the same
# run, on the same files, and the ratio old/new is printed; the new build
# runs as a user would (verifying digests on read) and, with NOVERIFY=1, also
# with --no-verify (the old build does not verify). Prints seconds, the
# job's peak RSS per rank, /usr/bin/time's maximum RSS (the largest process:
# one rank), CPU seconds (user + system of all ranks, MPI's busy waiting
# included) and the 1-minute load average after the run (the machine may be
# shared: on a loaded machine the CPU ratio is the steadier one). `trivial` lines time a job that does nothing (inspect of a small
# file) at the same rank count: process and MPI start-up. Run by hand (about
# 1.6 GB of scratch per block, removed afterwards):
#   BUILD=build OLD=/work/scratch/old/build NOVERIFY=1 sh bench/aggregate_7b.sh
# Knobs: N=64, METHODS, RANKS="1 2", MORE_BLOCKS=2, MORE_METHOD=median,
# CHUNK_MB (default: the job's), BENCH_DIR, OLD, NOVERIFY, REPEAT=1 (runs per
# line; the fastest is printed). Newer methods' parameters: centered-clipping
# --tau 1 --iters 3, bulyan --byzantine 8, ties/dare-* --density 0.5.
set -eu
. "$(dirname "$0")/env.sh"
N=${N:-64} METHODS=${METHODS:-median trimmed-mean krum} RANKS=${RANKS:-1 2}
MORE_BLOCKS=${MORE_BLOCKS:-2} MORE_METHOD=${MORE_METHOD:-median}
OLD=${OLD:-} NOVERIFY=${NOVERIFY:-0} REPEAT=${REPEAT:-1}
chunk=${CHUNK_MB:+--chunk-mb $CHUNK_MB}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-aggregate-7b-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$BUILD/tests/unit/test_aggregate_mkdelta" "$dir/template.bd.h5" --owner t --seed 1

# run1 EXE NP METHOD [FLAGS]: one timed run; sets secs, rss, trss, cpu, load.
run1() {
    exe=$1 np=$2 m=$3
    shift 3
    opt=""
    case $m in
    median | trimmed-mean) opt="--requantize" ;;
    centered-clipping) opt="--tau 1 --iters 3" ;;
    bulyan) opt="--byzantine 8" ;;
    ties | dare-ties | dare-linear) opt="--density 0.5" ;;
    esac
    t0=$(date +%s.%N)
    if [ "$m" = trivial ]; then
        /usr/bin/time -f "%M %U %S" -o "$dir/rss" $MPIEXEC -n "$np" "$exe" inspect "$dir/template.bd.h5" > "$dir/log" < /dev/null
    else
        /usr/bin/time -f "%M %U %S" -o "$dir/rss" $MPIEXEC -n "$np" "$exe" aggregate --method "$m" $opt $chunk "$@" \
            -o "$dir/out.bd.h5" --overwrite --quiet "$dir"/d/*.bd.h5 > "$dir/log" 2> "$dir/err" < /dev/null ||
            { cat "$dir/err" >&2; exit 1; }
    fi
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc)
    rss=$(sed -n 's/.*peak RSS per rank \([0-9.]*\) MB.*/\1/p' "$dir/log")
    trss=$(tail -n 1 "$dir/rss" | cut -d' ' -f1)
    cpu=$(tail -n 1 "$dir/rss" | awk '{ print $2 + $3 }')
    load=$(cut -d' ' -f1 /proc/loadavg)
    hash=$(sed -n 's/^content_sha256: //p' "$dir/log")
}
# agg BLOCKS NP METHOD BUILDNAME EXE [FLAGS]: the fastest of REPEAT runs, one
# table line; prints the ratio to the old build's line of the same case.
agg() {
    b=$1 np=$2 m=$3 name=$4 exe=$5
    shift 5
    best=""
    i=0
    while [ "$i" -lt "$REPEAT" ]; do
        run1 "$exe" "$np" "$m" "$@"
        if [ -z "$best" ] || [ "$(echo "$secs < $best" | bc)" = 1 ]; then best=$secs brss=$rss btrss=$trss bcpu=$cpu bload=$load; fi
        i=$((i + 1))
    done
    ratio=- cratio=-
    if [ "$name" = old ]; then old_secs=$best old_cpu=$bcpu old_hash=$hash; elif [ -n "$OLD" ] && [ "$m" != trivial ]; then
        ratio=$(echo "scale=2; $old_secs / $best" | bc)
        cratio=$(echo "scale=2; $old_cpu / $bcpu" | bc)
        [ "$hash" = "$old_hash" ] || ratio="$ratio(hash-differs)"
    fi
    awk -v b="$b" -v np="$np" -v m="$m" -v n="$name" -v s="$best" -v r="${brss:--}" -v t="$btrss" -v c="$bcpu" -v l="$bload" \
        -v x="$ratio" -v y="$cratio" \
        'BEGIN { printf "%6d %5d %-12s %-14s %8.2f %10s %10.0f %6.2f %5s %7s %7s\n", b, np, m, n, s, r, t / 1024, c, l, x, y }'
}
# all BLOCKS NP METHOD: the old build, the new one, the new one unverified.
all() {
    if [ -n "$OLD" ]; then agg "$1" "$2" "$3" old "$OLD/deltasoup"; fi
    agg "$1" "$2" "$3" new "$DELTASOUP"
    if [ "$NOVERIFY" = 1 ] && [ "$3" != trivial ]; then agg "$1" "$2" "$3" new-no-verify "$DELTASOUP" --no-verify; fi
}
gen() {
    rm -rf "$dir/d" && mkdir "$dir/d"
    $PY "$top/bench/aggregate_gen.py" "$dir/template.bd.h5" "$dir/d" "$N" llama7b "$1"
    echo "# $1 block(s): $(du -sh "$dir/d" | cut -f1) of deltas, $N users, $(nproc) cores, $(uptime | sed 's/.*load/load/')"
    cat "$dir"/d/*.bd.h5 > /dev/null # warm page cache for every run
}
echo "blocks ranks method       build           seconds job_rss_MB time_rss_MB  cpu_s load1 old/new cpu_old/new"
gen 1
for np in $RANKS; do
    all 1 "$np" trivial
    for m in $METHODS; do all 1 "$np" "$m"; done
done
if [ "$MORE_BLOCKS" -gt 1 ]; then
    gen "$MORE_BLOCKS"
    all "$MORE_BLOCKS" 1 "$MORE_METHOD"
fi
