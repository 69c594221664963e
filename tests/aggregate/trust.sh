#!/bin/sh
# The trust filter of `deltasoup aggregate`, with keygen and sign:
# unsigned, untrusted signer, key not trusted for the owner, bad signature,
# data tampered with after signing (the recomputed content hash no longer
# matches), and privacy budgets missing or above --max-dp-epsilon: each is
# dropped with its reason (stdout table + report), and the rest aggregate to
# what the numpy reference computes without them. Also: sign keeps
# content_sha256, refuses a file whose data no longer matches it, and keygen
# writes a 0600 secret key.
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/aggregate/trust.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "trust.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
attr() { "$PYTHON3" -c "import h5py; print(h5py.File('$1', 'r').attrs['$2'].decode())"; }

"$DELTASOUP" keygen -o "$d/k1" --quiet || fail keygen
"$DELTASOUP" keygen -o "$d/k2" --quiet || fail keygen
"$DELTASOUP" keygen -o "$d/k3" --quiet || fail keygen
[ "$(stat -c %a "$d/k1")" = 600 ] || fail "secret key mode $(stat -c %a "$d/k1")"
grep -Eq '^[0-9a-f]{64}$' "$d/k1.pub" || fail "k1.pub: $(cat "$d/k1.pub")"
"$DELTASOUP" keygen -o "$d/k1" --quiet 2> /dev/null && fail "keygen replaced a key without --overwrite"

# u1 ok, u2 bad signature, u3 unsigned, u4 signed by k3 (trusted for bob
# only), u5 tampered after signing, u6 signed by k2 (untrusted), u7 ok.
dp="1 8 - 0.5 2 1 1.5"
i=1
for e in $dp; do
    if [ "$e" = - ]; then "$MK" "$d/u$i.bd.h5" --owner "u$i" --seed $i || fail mkdelta
    else "$MK" "$d/u$i.bd.h5" --owner "u$i" --seed $i --dp "$e" || fail mkdelta; fi
    i=$((i + 1))
done
before=$(attr "$d/u1.bd.h5" content_sha256)
"$DELTASOUP" sign --key "$d/k1" "$d/u1.bd.h5" "$d/u2.bd.h5" "$d/u5.bd.h5" "$d/u7.bd.h5" --quiet || fail sign
"$DELTASOUP" sign --key "$d/k3" "$d/u4.bd.h5" --quiet || fail sign
"$DELTASOUP" sign --key "$d/k2" "$d/u6.bd.h5" --quiet || fail sign
[ "$(attr "$d/u1.bd.h5" content_sha256)" = "$before" ] || fail "sign changed content_sha256"
[ "$(attr "$d/u1.bd.h5" signer_public_key)" = "$(cat "$d/k1.pub")" ] || fail "signer_public_key"
ls "$d"/*.tmp 2> /dev/null && fail "sign left a temporary file"
"$PYTHON3" - "$d" <<'PY' || fail "h5py edits"
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/u2.bd.h5", "r+") as f:          # one hex digit of the signature changed
    s = f.attrs["signature"].decode()
    f.attrs["signature"] = (("0" if s[10] != "0" else "1").join([s[:10], s[11:]])).encode()
with h5py.File(f"{d}/u5.bd.h5", "r+") as f:          # one sign bit flipped after signing
    w = f["bits/a.weight/signs"]; v = w[()]; v[3, 1] ^= np.uint64(1 << 7); w[...] = v
PY
"$DELTASOUP" sign --key "$d/k1" "$d/u5.bd.h5" > /dev/null 2> "$d/err" && fail "signed a tampered file"
grep -q "u5.bd.h5: recorded content_sha256 .* does not match the data" "$d/err" || fail "sign tampered: $(cat "$d/err")"
printf '# trusted\n%s\n%s bob\n' "$(cat "$d/k1.pub")" "$(cat "$d/k3.pub")" > "$d/keys"

U="$d/u1.bd.h5 $d/u2.bd.h5 $d/u3.bd.h5 $d/u4.bd.h5 $d/u5.bd.h5 $d/u6.bd.h5 $d/u7.bd.h5"
: > "$d/cases"
for np in 1 3; do
    ${MPIEXEC:-mpiexec} -n $np "$DELTASOUP" aggregate --method median --trusted-keys "$d/keys" -o "$d/keys$np.bd.h5" \
        --report "$d/keys$np.json" --quiet $U > "$d/keys$np.out" 2>&1 || fail "keys at $np: $(cat "$d/keys$np.out")"
done
echo "median $d/keys1.bd.h5 $d/keys1.json dropped=1,2,3,4,5 -- $U" >> "$d/cases"
"$PYTHON3" -c "
import json
a, b = (json.load(open('$d/keys%d.json' % n)) for n in (1, 3))
a.pop('output'), b.pop('output')
assert a == b
" || fail "the trust filter at 3 ranks differs"
out="$d/keys1.out"
grep -q " u2 .* dropped .* bad signature" "$out" || fail "table: $(cat "$out")"
grep -q " u3 .* dropped .* unsigned" "$out" || fail "table: $(cat "$out")"
grep -q " u4 .* dropped .* is not trusted for owner 'u4'" "$out" || fail "table: $(cat "$out")"
grep -q " u5 .* dropped .* data changed after signing" "$out" || fail "table: $(cat "$out")"
grep -q " u6 .* dropped .* is not a trusted key" "$out" || fail "table: $(cat "$out")"
grep -q "(2 used, 5 dropped)" "$out" || fail "table: $(cat "$out")"

"$DELTASOUP" aggregate --method mean --max-dp-epsilon 1.5 -o "$d/dp.bd.h5" --report "$d/dp.json" --quiet $U \
    > "$d/dp.out" 2>&1 || fail "dp: $(cat "$d/dp.out")"
echo "mean $d/dp.bd.h5 $d/dp.json dropped=1,2,4 -- $U" >> "$d/cases"
grep -q " u2 .* dropped .* dp_epsilon 8 > --max-dp-epsilon 1.5" "$d/dp.out" || fail "dp table: $(cat "$d/dp.out")"
grep -q " u3 .* dropped .* no recorded privacy budget" "$d/dp.out" || fail "dp table: $(cat "$d/dp.out")"
[ "$(attr "$d/dp.bd.h5" owner)" = deltasoup-aggregate ] || fail "owner"

# Both filters; then nothing left.
"$DELTASOUP" aggregate --method mean --max-dp-epsilon 1 --trusted-keys "$d/keys" -o "$d/both.bd.h5" --report "$d/both.json" \
    --quiet $U > /dev/null 2>&1 || fail "both"
echo "mean $d/both.bd.h5 $d/both.json dropped=1,2,3,4,5,6 -- $U" >> "$d/cases"
"$DELTASOUP" aggregate --method mean --trusted-keys "$d/keys" -o "$d/none.bd.h5" --quiet "$d/u3.bd.h5" "$d/u6.bd.h5" \
    > /dev/null 2> "$d/err"
[ $? -eq 3 ] && grep -q "no deltas left to aggregate (2 of 2 inputs dropped by the trust filter)" "$d/err" \
    || fail "nothing left: $(cat "$d/err")"
[ -e "$d/none.bd.h5" ] && fail "output written with nothing to aggregate"

"$PYTHON3" "$top_srcdir/tests/python/aggregate_ref.py" "$d/cases" || fail "numpy reference"
# the reasons in the report, too
"$PYTHON3" -c "
import json
c = json.load(open('$d/keys1.json'))['contributors']
assert [x['status'] for x in c] == ['used', 'dropped', 'dropped', 'dropped', 'dropped', 'dropped', 'used'], c
assert c[1]['reason'] == 'bad signature' and c[2]['reason'] == 'unsigned', c
" || fail "report reasons"
rm -rf "$d"
