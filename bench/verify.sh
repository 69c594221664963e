#!/bin/sh
# Cost of verification on read (docs/robustness.md "Verification on read"):
# apply, aggregate (mean of 3 deltas) and eval --ppl on synthetic 7B-shaped
# bf16 checkpoints (LAYERS decoder blocks of Llama 2 7B, default 2: ~0.85 GB
# a model), each timed with and without --no-verify (best of REPS, default
# 3, warm page cache), at RANKS ranks (default "1 2"); prints the seconds
# and the ratio verified / --no-verify, of wall and of CPU time (user +
# system of every rank: on a machine busy with other work, the CPU ratio is
# the steadier figure). Run once by hand:
#   DELTASOUP=build/deltasoup sh bench/verify.sh
# JOBS (default "apply aggregate eval-ppl") picks jobs; MPIEXEC="mpiexec
# --bind-to none" lets a rank's hashing thread use a second core.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
DELTASOUP=${DELTASOUP:-$top/build/deltasoup}
PY=${PYTHON3:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
LAYERS=${LAYERS:-2} REPS=${REPS:-3} RANKS=${RANKS:-"1 2"}
dir=${BENCH_DIR:-/tmp}/ds-verify-bench.$$
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
m=$top/data/models/stories260K
"$DELTASOUP" import --from llama2c "$m/stories260K.bin" --tokenizer "$m/tok512.bin" --dtype bf16 -o "$dir/t.h5" --quiet >/dev/null
$PY "$top/bench/verify_gen.py" "$dir/t.h5" "$dir/b0.h5" "$dir/ft.h5" "$LAYERS"
q=--quiet
# files written by deltasoup (with per-tensor digests): the delta, the base
# (b0 + delta), two more deltas (poison), a text
"$DELTASOUP" compress --base "$dir/b0.h5" --finetuned "$dir/ft.h5" -o "$dir/d1.bd.h5" $q >/dev/null
"$DELTASOUP" apply --base "$dir/b0.h5" --delta "$dir/d1.bd.h5" --force -o "$dir/b.h5" $q >/dev/null 2>&1
"$DELTASOUP" poison --attack gaussian --count 2 --strength 0.5 -o "$dir/p" "$dir/d1.bd.h5" $q >/dev/null
head -c 6000 "$top/data/lm_corpus/tinystories_sample.txt" >"$dir/text.txt"
echo "model $(du -h "$dir/b.h5" | cut -f1), delta $(du -h "$dir/d1.bd.h5" | cut -f1); best of $REPS"
# best N CMD...: the best wall time of N runs and the CPU seconds (user +
# system, every process) of that run, in seconds: "WALL CPU"
best() {
    n=$1; shift
    b= c=
    for i in $(seq "$n"); do
        /usr/bin/time -o "$dir/time" -f '%e %U %S' "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
        read -r t u s <"$dir/time"
        if [ -z "$b" ] || [ "$($PY -c "print(int($t < $b))")" = 1 ]; then b=$t c=$($PY -c "print($u + $s)"); fi
    done
    echo "$b $c"
}
echo "job ranks verified_s no_verify_s ratio cpu_verified_s cpu_no_verify_s cpu_ratio"
for n in $RANKS; do
    for job in ${JOBS:-apply aggregate eval-ppl}; do
        case $job in
        apply) set -- apply --base "$dir/b.h5" --delta "$dir/d1.bd.h5" --force -o "$dir/o.h5" --overwrite $q ;;
        aggregate) set -- aggregate --method mean -o "$dir/r.bd.h5" --overwrite $q "$dir/d1.bd.h5" "$dir/p/gaussian-0.bd.h5" "$dir/p/gaussian-1.bd.h5" ;;
        eval-ppl) set -- eval --model "$dir/b.h5" --ppl "$dir/text.txt" --seq-len 64 $q ;;
        esac
        cat "$dir"/*.h5 "$dir"/p/*.h5 >/dev/null
        v=$(best "$REPS" $MPIEXEC -n "$n" "$DELTASOUP" "$@")
        nv=$(best "$REPS" $MPIEXEC -n "$n" "$DELTASOUP" "$@" --no-verify)
        set -- $v $nv
        $PY -c "print('%s %s %.2f %.2f %.3f %.2f %.2f %.3f' % ('$job', $n, $1, $3, $1 / $3, $2, $4, $2 / $4))"
    done
done
