#!/bin/sh
# `deltasoup poison` on per-tensor synthetic deltas: every attack at 1 and 2
# ranks matches the numpy reference (tests/python/poison_ref.py), the content
# hashes are the same at both rank counts, the gaussian seed changes the
# noise, --json reports the same hashes, and `deltasoup aggregate` takes the
# poisoned files next to the honest ones.
set -u
. "$(dirname "$0")/../defaults.sh"
name=attacks
. "$top_srcdir/tests/poison/common.sh"
for s in 1 2 3 4; do "$MK" "$d/h$s.bd.h5" --owner "u$s" --seed $s --noise 0.3 || fail mkdelta; done
H="$d/h1.bd.h5 $d/h2.bd.h5 $d/h3.bd.h5 $d/h4.bd.h5"

# run NP OUTDIR ATTACK-ARGS...: poison at NP ranks, the table's hashes into OUTDIR.hash
run() {
    np=$1 od=$2
    shift 2
    timeout 120 ${MPIEXEC:-mpiexec} -n "$np" "$DELTASOUP" poison -o "$od" --quiet "$@" $H > "$od.out" 2>&1 \
        || fail "poison $* at $np ranks: $(cat "$od.out")"
    awk '/^[^ ]*\.bd\.h5 /{print $NF}' "$od.out" > "$od.hash"
    [ -s "$od.hash" ] || fail "no summary table: $(cat "$od.out")"
}
i=0
for args in "--attack sign-flip --count 2" "--attack scale --count 5 --strength -3" "--attack gaussian --count 3 --seed 7" \
    "--attack alie --count 2" "--attack alie --count 1 --strength 1.5" "--attack ipm --count 2 --strength 0.25"; do
    i=$((i + 1))
    for np in 1 2; do
        run $np "$d/c$i-$np" $args
        z=$(sed -n 's/^alie: z = \([^ ]*\) .*/\1/p' "$d/c$i-$np.out")
        "$PYTHON3" "$REF" $args ${z:+--z "$z"} "$d/c$i-$np" $H > "$d/ref.out" 2>&1 || fail "$args at $np ranks: $(cat "$d/ref.out")"
    done
    cmp -s "$d/c$i-1.hash" "$d/c$i-2.hash" || fail "$args: content hashes at 1 and 2 ranks differ"
done
# the table's strength column is z for alie; the default z_max for n = 4, K = 2 is Phi^-1(2/3)
grep -q '^alie: z = 0.4307272992954' "$d/c4-1.out" || fail "alie z_max: $(cat "$d/c4-1.out")"

# another seed, other noise; the same seed, the same files (c3 above)
run 1 "$d/seed8" --attack gaussian --count 3 --seed 8
cmp -s "$d/seed8.hash" "$d/c3-1.hash" && fail "gaussian --seed 8 gives the same deltas as --seed 7"

# --json: the same hashes as the table
timeout 60 "$DELTASOUP" poison -o "$d/j" --quiet --json --attack scale --count 5 --strength -3 $H > "$d/j.json" \
    || fail "--json: $(cat "$d/j.json")"
"$PYTHON3" -c "import json,sys; r=json.load(open(sys.argv[1])); print('\n'.join(o['content_sha256'] for o in r['outputs']))" \
    "$d/j.json" > "$d/j.hash" || fail "--json output: $(cat "$d/j.json")"
cmp -s "$d/j.hash" "$d/c2-1.hash" || fail "--json hashes differ from the table's"

# aggregate accepts honest and poisoned deltas together
timeout 120 "$DELTASOUP" aggregate --method mean --keep-duplicates --quiet -o "$d/soup.bd.h5" $H "$d"/c1-1/*.bd.h5 "$d"/c3-1/*.bd.h5 \
    "$d"/c4-1/*.bd.h5 > "$d/agg.out" 2>&1 || fail "aggregate of honest + poisoned: $(cat "$d/agg.out")"
grep -q "mean of 11 deltas (11 used, 0 dropped)" "$d/agg.out" || fail "aggregate: $(cat "$d/agg.out")"
rm -rf "$d"
