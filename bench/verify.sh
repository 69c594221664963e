#!/bin/sh
# Cost of verification on read (docs/robustness.md "Verification on read"):
# apply, aggregate (mean of 3 deltas) and eval --ppl on synthetic 7B-shaped
# bf16 checkpoints (LAYERS decoder blocks of Llama 2 7B, default 2: ~0.85 GB
# a model), each timed with and without --no-verify (best of REPS, default
# 3, warm page cache), at RANKS ranks (default "1 2"); prints the seconds
# and the ratio verified / --no-verify. Run once by hand:
#   DELTASOUP=build/deltasoup sh bench/verify.sh
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
# best N CMD...: the best wall time of N runs, in seconds
best() {
    n=$1; shift
    b=
    for i in $(seq "$n"); do
        t0=$($PY -c 'import time; print(time.time())')
        "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
        t=$($PY -c "import time; print(time.time() - $t0)")
        b=$($PY -c "print(min($t, ${b:-1e9}))")
    done
    echo "$b"
}
echo "job ranks verified_s no_verify_s ratio"
for n in $RANKS; do
    run() { $MPIEXEC -n "$n" "$DELTASOUP" "$@"; }
    for job in apply aggregate eval-ppl; do
        case $job in
        apply) set -- apply --base "$dir/b.h5" --delta "$dir/d1.bd.h5" --force -o "$dir/o.h5" --overwrite $q ;;
        aggregate) set -- aggregate --method mean -o "$dir/r.bd.h5" --overwrite $q "$dir/d1.bd.h5" "$dir/p/gaussian-0.bd.h5" "$dir/p/gaussian-1.bd.h5" ;;
        eval-ppl) set -- eval --model "$dir/b.h5" --ppl "$dir/text.txt" --seq-len 64 $q ;;
        esac
        cat "$dir"/*.h5 "$dir"/p/*.h5 >/dev/null
        v=$(best "$REPS" run "$@")
        nv=$(best "$REPS" run "$@" --no-verify)
        $PY -c "print('%s %s %.2f %.2f %.3f' % ('$job', $n, $v, $nv, $v / $nv))"
    done
done
