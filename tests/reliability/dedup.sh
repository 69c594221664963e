#!/bin/sh
# Duplicate inputs to aggregate (issue 15 item 6; docs/aggregate.md
# "Duplicate inputs"): the same delta given twice (the same content hash,
# under any path) is refused with one line naming both files, exit 3, and
# nothing written; with --dedup it counts once: the output is that of the
# distinct inputs (same content hash) and the table names the duplicate. With
# --trusted-keys, two different deltas of one owner signed by one key are
# duplicates too (one owner got 75% of the weight from three copies). At 1
# and 2 ranks.
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
users 3
"$MK" "$w/u1b.bd.h5" --owner u1 --seed 9 > /dev/null || exit 1 # u1's second, different delta
cp "$w/u1.bd.h5" "$w/copy.bd.h5"

"$DELTASOUP" aggregate --method mean -o "$w/ref.bd.h5" --quiet "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/u3.bd.h5" > "$w/ref.log" 2>&1 ||
    { cat "$w/ref.log"; exit 1; }
ref=$(grep '^content_sha256' "$w/ref.log")

for np in 1 2; do
    np=$np expect 3 "$w/o.bd.h5" "$w/u1.bd.h5 and $w/copy.bd.h5: the same delta (content_sha256" "use --dedup" -- \
        aggregate --method mean -o "$w/o.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/copy.bd.h5" "$w/u3.bd.h5"
    np=$np expect 3 "$w/o.bd.h5" "$w/u2.bd.h5 and $w/u2.bd.h5: the same delta" -- \
        aggregate --method trimmed-mean --trim 0.25 -o "$w/o.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/u2.bd.h5" "$w/u3.bd.h5" "$w/u2.bd.h5"
    # --dedup: counted once, the output is the 3 distinct deltas' mean
    rm -f "$w/o.bd.h5"
    if [ $np = 1 ]; then run=; else run="$MPIEXEC -n $np"; fi
    $run "$DELTASOUP" aggregate --method mean --dedup -o "$w/o.bd.h5" --report "$w/o.json" "$w/u1.bd.h5" "$w/u2.bd.h5" \
        "$w/copy.bd.h5" "$w/u3.bd.h5" "$w/u1.bd.h5" > "$w/o.log" 2>&1 || fail "--dedup at $np: $(tail -3 "$w/o.log")"
    [ "$(grep '^content_sha256' "$w/o.log")" = "$ref" ] || fail "--dedup at $np: not the 3 distinct deltas' mean"
    grep -q "of 5 deltas (3 used, 2 dropped)" "$w/o.log" && [ "$(grep -c "duplicate of input 0 (same content, --dedup)" "$w/o.log")" = 2 ] ||
        fail "--dedup at $np: table: $(cat "$w/o.log")"
    $PYTHON3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert [x['status'] for x in r['contributors']] == ['used','used','dropped','used','dropped'], r['contributors']" \
        "$w/o.json" 2> "$w/py" || fail "--dedup report: $(cat "$w/py")"
    rm -f "$w/o.bd.h5" "$w/o.json"
done

# --keep-duplicates (robustness experiments): every copy counts, with a warning
"$DELTASOUP" aggregate --method mean --keep-duplicates -o "$w/o.bd.h5" "$w/u1.bd.h5" "$w/copy.bd.h5" "$w/u2.bd.h5" > "$w/o.log" 2> "$w/o.err" &&
    grep -q "of 3 deltas (3 used, 0 dropped)" "$w/o.log" && grep -q "warning: 1 duplicate input(s) counted as separate deltas" "$w/o.err" ||
    fail "--keep-duplicates: $(cat "$w/o.log" "$w/o.err")"
rm -f "$w/o.bd.h5"

# --trusted-keys: one owner, one key, two different deltas
"$DELTASOUP" keygen -o "$w/k1" --quiet && "$DELTASOUP" keygen -o "$w/k2" --quiet || exit 1
"$DELTASOUP" sign --key "$w/k1" "$w/u1.bd.h5" "$w/u1b.bd.h5" "$w/u2.bd.h5" --quiet && "$DELTASOUP" sign --key "$w/k2" "$w/u3.bd.h5" --quiet || exit 1
printf '%s\n%s\n' "$(cat "$w/k1.pub")" "$(cat "$w/k2.pub")" > "$w/keys"
np=2 expect 3 "$w/o.bd.h5" "$w/u1.bd.h5 and $w/u1b.bd.h5: the same owner 'u1' signed by the same key" -- \
    aggregate --method mean --trusted-keys "$w/keys" -o "$w/o.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/u1b.bd.h5" "$w/u3.bd.h5"
# without --trusted-keys owners are not verified: two different deltas both count
"$DELTASOUP" aggregate --method mean -o "$w/o.bd.h5" --quiet "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/u1b.bd.h5" "$w/u3.bd.h5" > /dev/null 2>&1 ||
    fail "different deltas of one owner without --trusted-keys refused"
rm -f "$w/o.bd.h5"
"$DELTASOUP" aggregate --method mean --dedup --trusted-keys "$w/keys" -o "$w/o.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5" "$w/u1b.bd.h5" \
    "$w/u3.bd.h5" > "$w/o.log" 2>&1 || fail "--dedup --trusted-keys: $(tail -3 "$w/o.log")"
[ "$(grep '^content_sha256' "$w/o.log")" = "$ref" ] && grep -q "duplicate of input 0 (same owner and key, --dedup)" "$w/o.log" ||
    fail "--dedup --trusted-keys: $(cat "$w/o.log")"
[ $fails = 0 ] || { echo "dedup.sh: $fails failure(s)"; exit 1; }
echo "dedup: ok"
