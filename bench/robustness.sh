#!/bin/sh
# Robustness report (docs/robustness.md): every attack of `deltasoup poison`
# against every method of `deltasoup aggregate`.
#   (a) synthetic: HONEST deltas clustered around one truth
#       (tests/unit/test_aggregate_mkdelta) + POISON poisoned ones per attack;
#       bench/robustness.py measures the distance of each aggregate to the
#       honest mean with numpy and checks it against bounds computed from the
#       honest deltas alone (exit 1 when a robust method leaves its bound).
#   (b) real (REAL=1): USERS fine-tunes of stories260K on slices of
#       TruthfulQA, compressed to 1 bit, + REAL_POISON poisoned per attack;
#       held-out NLL of base + aggregate per method, and the distances and
#       bounds of (a) on these deltas.
# usage: bench/robustness.sh [OUT]   (run from a build directory, or set DELTASOUP and MK)
# env: HONEST=70 POISON=30 TRIM=0.3 MODE=row NOISE=0.1 ATTACKS="sign-flip scale gaussian alie ipm"
#      MUST_PULL="sign-flip scale" REAL=1 USERS=10 REAL_POISON=3 REAL_TRIM=0.25
#      REAL_ATTACKS="sign-flip:10 scale alie" STEPS=30 NP=1 (ranks; MPIEXEC=mpiexec)
#      METHODS (default: every method; nnm+M is M after --pre nnm). Parameters of the
#      newer methods: bulyan F = min(POISON, (n - 3) / 4) (it needs n >= 4F + 3);
#      centered-clipping --tau = the median honest ||h - honest mean||, --iters 3;
#      task-arithmetic, dare-ties, dare-linear --lambda 1/n (a mean, not a sum);
#      ties --density 0.2, dare-* --density 0.5 --seed 1
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}" "${top_builddir:=.}" "${PYTHON3:=/usr/bin/python3}"
: "${DELTASOUP:=$top_builddir/deltasoup}" "${MK:=$top_builddir/tests/unit/test_aggregate_mkdelta}"
: "${MPIEXEC:=mpiexec}" "${NP:=1}"
: "${HONEST:=70}" "${POISON:=30}" "${TRIM:=0.3}" "${MODE:=row}" "${NOISE:=0.1}"
: "${ATTACKS:=sign-flip scale gaussian alie ipm}" "${MUST_PULL:=sign-flip scale}"
: "${REAL:=1}" "${USERS:=10}" "${REAL_POISON:=3}" "${REAL_TRIM:=0.25}" "${REAL_ATTACKS:=sign-flip:10 scale alie}"
: "${STEPS:=30}"
out=${1:-robustness.out}
methods=${METHODS:-mean median trimmed-mean krum multi-krum majority geometric-median centered-clipping bulyan \
nnm+mean nnm+median nnm+geometric-median task-arithmetic ties dare-ties dare-linear}
py="$top_srcdir/bench/robustness.py"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

ds() {
    if [ "$NP" -gt 1 ]; then $MPIEXEC -n "$NP" "$DELTASOUP" "$@"; else "$DELTASOUP" "$@"; fi
}
# opts METHOD F TRIM N TAU: the method's parameters (F = tolerated poisoned
# deltas, N = deltas aggregated, TAU = centered-clipping's radius)
opts() {
    case $1 in
    nnm+*) echo "--pre nnm --byzantine $2 $(opts "${1#nnm+}" "$2" "$3" "$4" "$5" | sed 's/--byzantine [0-9]*//')" ;;
    trimmed-mean | majority) echo "--trim $3" ;;
    krum | multi-krum) echo "--byzantine $2" ;;
    bulyan) b=$(( ($4 - 3) / 4 )); [ "$b" -gt "$2" ] && b=$2; echo "--byzantine $b" ;;
    centered-clipping) echo "--tau $5 --iters 3" ;;
    task-arithmetic) echo "--lambda $(awk "BEGIN { print 1 / $4 }")" ;;
    ties) echo "--density 0.2" ;;
    dare-ties | dare-linear) echo "--density 0.5 --seed 1 --lambda $(awk "BEGIN { print 1 / $4 }")" ;;
    esac
}
# aggregate_all DIR F TRIM ATTACK [POISONED...]: every method over
# the honest deltas + the poisoned ones (listed first: every tie goes to them)
aggregate_all() {
    dir=$1 f=$2 trim=$3 att=$4
    shift 4
    n=$(($# + $(grep -c . "$dir/honest.list")))
    tau=$("$PYTHON3" "$py" tau "$dir/honest.list")
    for m in $methods; do
        ds aggregate --method "${m#nnm+}" $(opts "$m" "$f" "$trim" "$n" "$tau") --keep-duplicates -o "$dir/agg/$att-$m.bd.h5" --quiet \
            "$@" --list "$dir/honest.list" > "$dir/agg/$att-$m.log" 2>&1 ||
            { cat "$dir/agg/$att-$m.log" >&2; exit 1; }
    done
}

t0=$(date +%s)
rm -rf "$out"
mkdir -p "$out/syn/agg"
syn=$(cd "$out/syn" && pwd)
s=1
while [ "$s" -le "$HONEST" ]; do
    "$MK" "$syn/honest$s.bd.h5" --owner "honest$s" --seed "$s" --mode "$MODE" --noise "$NOISE"
    echo "$syn/honest$s.bd.h5" >> "$syn/honest.list"
    s=$((s + 1))
done
for a in $ATTACKS; do
    ds poison --attack "$a" --count "$POISON" --seed 1 -o "$syn/poison" --quiet $(cat "$syn/honest.list") \
        > /dev/null
done
aggregate_all "$syn" "$POISON" "$TRIM" none
for a in $ATTACKS; do
    aggregate_all "$syn" "$POISON" "$TRIM" "$a" "$syn/poison/$a"-*.bd.h5
done
echo "== (a) synthetic deltas: $(($(date +%s) - t0)) s"
"$PYTHON3" "$py" synth "$syn" --byzantine "$POISON" --trim "$TRIM" --attacks "$ATTACKS" --methods "$methods" \
    --must-pull "$MUST_PULL" || rc=1

if [ "$REAL" = 1 ]; then
    t1=$(date +%s)
    mkdir -p "$out/real/agg"
    r=$(cd "$out/real" && pwd)
    model="$top_srcdir/data/models/stories260K"
    ds import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$r/base.h5" --quiet > /dev/null
    "$PYTHON3" "$py" slices "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" "$r" "$USERS"
    echo base > "$r/eval.list"
    u=0
    while [ "$u" -lt "$USERS" ]; do
        ds finetune --base "$r/base.h5" --data "$r/user$u.txt" -o "$r/ft$u.h5" --steps "$STEPS" --lr 5e-4 \
            --seq-len 64 --seed $((u + 1)) --quiet
        ds compress --base "$r/base.h5" --finetuned "$r/ft$u.h5" -o "$r/user$u.bd.h5" --owner "user$u" \
            --quiet > /dev/null
        echo "$r/user$u.bd.h5" | tee -a "$r/honest.list" >> "$r/eval.list"
        u=$((u + 1))
    done
    atts=""
    for spec in $REAL_ATTACKS; do
        a=${spec%%:*}
        atts="$atts $a"
        strength=""
        [ "$a" != "$spec" ] && strength="--strength ${spec#*:}"
        ds poison --attack "$a" --count "$REAL_POISON" $strength -o "$r/poison" --quiet \
            $(cat "$r/honest.list") > /dev/null
    done
    aggregate_all "$r" "$REAL_POISON" "$REAL_TRIM" none
    for a in $atts; do
        aggregate_all "$r" "$REAL_POISON" "$REAL_TRIM" "$a" "$r/poison/$a"-*.bd.h5
    done
    ls "$r"/agg/*.bd.h5 >> "$r/eval.list"
    ds eval --model "$r/base.h5" --delta-list "$r/eval.list" --task "ppl:$r/heldout.txt" --json "$r/eval.json" \
        --quiet > /dev/null
    echo
    echo "== (b) stories260K fine-tunes: $(($(date +%s) - t1)) s; $USERS users, $STEPS steps each;" \
        "attacks (:strength): $REAL_ATTACKS"
    "$PYTHON3" "$py" real "$r/eval.json" --attacks "$atts" --methods "$methods"
    echo
    "$PYTHON3" "$py" synth "$r" --byzantine "$REAL_POISON" --trim "$REAL_TRIM" --attacks "$atts" \
        --methods "$methods" || rc=1
fi
echo "total: $(($(date +%s) - t0)) s on $NP rank(s); $(uptime)"
exit "${rc:-0}"
