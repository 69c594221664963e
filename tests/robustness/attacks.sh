#!/bin/sh
# bench/robustness.sh at test size, synthetic part only: 15 honest + 6
# poisoned deltas per attack, every method. bench/robustness.py (numpy) checks
# that median, trimmed mean, Krum, Multi-Krum and majority stay within the
# bounds computed from the honest deltas alone and that sign-flip and scale
# pull the mean beyond the median's bound. Then: the checker rejects an
# aggregate that is not robust (the mean's output in the median's place), and
# the poisoned deltas and two aggregates are the same at 2 ranks.
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/robustness/attacks.d
fail() { echo "attacks.sh: FAIL: $*" >&2; exit 1; }
rm -rf "$d"
mkdir -p "$d" || exit 1
export HONEST=15 POISON=6 TRIM=0.3 REAL=0 NP=1
methods="mean median trimmed-mean krum multi-krum majority"
export METHODS="$methods" # the newer methods: by hand (docs/robustness.md), CI time
attacks="sign-flip scale gaussian alie ipm"
sh "$top_srcdir/bench/robustness.sh" "$d/run" > "$d/run.txt" 2>&1 || { cat "$d/run.txt"; fail "robustness.sh"; }
cat "$d/run.txt"
syn="$d/run/syn"

# The checker can fail: the mean is no robust aggregate.
cp "$syn/agg/scale-mean.bd.h5" "$syn/agg/scale-median.bd.h5"
"$PYTHON3" "$top_srcdir/bench/robustness.py" synth "$syn" --byzantine 6 --trim 0.3 --attacks "$attacks" \
    --methods "$methods" > "$d/neg.txt" 2>&1 && fail "the mean passed as the median: $(cat "$d/neg.txt")"
grep -q '^| scale | .*\*' "$d/neg.txt" || fail "the swapped aggregate is not marked: $(cat "$d/neg.txt")"

# 2 ranks: the same poisoned deltas and aggregates (content hashes).
chash() { "$PYTHON3" -c 'import h5py, sys; print(h5py.File(sys.argv[1], "r").attrs["content_sha256"].decode())' "$1"; }
mkdir -p "$d/np2/agg"
$MPIEXEC -n 2 "$DELTASOUP" poison --attack alie --count 6 -o "$d/np2/poison" --quiet $(cat "$syn/honest.list") \
    > "$d/np2/poison.log" 2>&1 || fail "poison at 2 ranks: $(cat "$d/np2/poison.log")"
for k in 0 5; do
    [ "$(chash "$d/np2/poison/alie-$k.bd.h5")" = "$(chash "$syn/poison/alie-$k.bd.h5")" ] ||
        fail "alie-$k.bd.h5 differs at 2 ranks"
done
for m in median krum; do
    opt=""
    [ $m = krum ] && opt="--byzantine 6"
    $MPIEXEC -n 2 "$DELTASOUP" aggregate --method $m $opt --keep-duplicates -o "$d/np2/agg/$m.bd.h5" --quiet \
        "$d/np2/poison"/alie-*.bd.h5 --list "$syn/honest.list" > "$d/np2/$m.log" 2>&1 ||
        fail "aggregate $m at 2 ranks: $(cat "$d/np2/$m.log")"
    [ "$(chash "$d/np2/agg/$m.bd.h5")" = "$(chash "$syn/agg/alie-$m.bd.h5")" ] || fail "alie-$m differs at 2 ranks"
done
echo "attacks.sh: ok"
rm -rf "$d"
