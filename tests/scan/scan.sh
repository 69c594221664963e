#!/bin/sh
# deltasoup scan (docs/scan.md) on a small synthetic set: 14 honest deltas of
# stories260K (noisy copies of one compressed fine-tune, scan_ref.py make) + 2
# poisoned ones from each of `deltasoup poison --attack sign-flip, scale,
# gaussian`. Checks: the poisoned are flagged and the honest are not; every
# statistic, z-score and flag against the independent numpy reference
# (tests/python/scan_ref.py check, 1e-6 relative); the same JSON at 1 and 2
# ranks with several chunks per tensor; aggregate --report's "deltas" = scan's;
# bad input refused with one line, its
# exit code and no output.
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/scan/scan.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "scan.sh: FAIL: $*" >&2; exit 1; }
# mpiexec'd programs: Open MPI's allocations read as leaks under ASan (Makefile.am)
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export ASAN_OPTIONS
REF="$top_srcdir/tests/python/scan_ref.py"

models="$top_srcdir/data/models/stories260K"
"$DELTASOUP" import --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" -o "$d/base.h5" --quiet \
    > /dev/null || fail "import"
"$PYTHON3" "$top_srcdir/tests/python/bitdelta_ref.py" perturb "$d/base.h5" "$d/ft.h5" 1 || fail "perturb"
"$DELTASOUP" compress --base "$d/base.h5" --finetuned "$d/ft.h5" -o "$d/template.bd.h5" --scale row --quiet > /dev/null ||
    fail "compress"
"$PYTHON3" "$REF" make "$d/template.bd.h5" "$d/honest" 14 || fail "scan_ref.py make"
honest=$(ls "$d"/honest/honest*.bd.h5)
for a in sign-flip scale gaussian; do
    "$DELTASOUP" poison --attack "$a" --count 2 --seed 1 -o "$d/poison" --quiet $honest > /dev/null || fail "poison $a"
done
all="$honest $(ls "$d"/poison/*.bd.h5)"

# 1 rank, several chunks per tensor; the numpy reference; the flags and their rules
"$DELTASOUP" scan --base "$d/base.h5" --json "$d/np1.json" --chunk-mb 0.05 $all > "$d/np1.out" || fail "scan"
grep -q "scan: 6 of 20 deltas flagged" "$d/np1.out" || fail "table: $(tail -3 "$d/np1.out")"
# the rule that names each attack: sign-flip the opposite direction, scale 10x the norm,
# gaussian orthogonal (half the signs agree); all far from the others (Krum)
"$PYTHON3" "$REF" check "$d/np1.json" honest:clean poison-:flagged poison-sign-flip:cosine_low,krum_high \
    poison-scale:norm_high,krum_high poison-gaussian:agreement_low,cosine_low,krum_high || fail "numpy reference, flags"
# 2 ranks: the same JSON, byte for byte
$MPIEXEC -n 2 "$DELTASOUP" scan --base "$d/base.h5" --json "$d/np2.json" --chunk-mb 0.05 --quiet $all > /dev/null ||
    fail "scan at 2 ranks"
cmp "$d/np1.json" "$d/np2.json" || fail "1 and 2 ranks differ"
# aggregate --report carries the same "deltas" list (its participants), at 2
# ranks (one delta of each attack: the sign-flips are copies, which aggregate refuses)
sub="$honest $(ls "$d"/poison/*-0.bd.h5)"
"$DELTASOUP" scan --base "$d/base.h5" --json "$d/sub.json" --chunk-mb 0.05 --quiet $sub > /dev/null || fail "scan (17)"
$MPIEXEC -n 2 "$DELTASOUP" aggregate --method median -o "$d/agg.bd.h5" --report "$d/agg.json" --chunk-mb 0.05 \
    --quiet $sub > /dev/null || fail "aggregate --report"
"$PYTHON3" - "$d/agg.json" "$d/sub.json" <<'EOF' || fail "aggregate --report's deltas differ from scan's"
import json, sys
a, b = (json.load(open(f))["deltas"] for f in sys.argv[1:3])
assert len(a) == len(b) == 17, (len(a), len(b))
assert sorted(a, key=lambda x: x["file"]) == sorted(b, key=lambda x: x["file"])
assert sum(x["flagged"] for x in a) == 3, [x["file"] for x in a if x["flagged"]]
EOF

# n = 3 with two copies: every MAD is 0, the odd one out gets z = inf (null in the JSON), the copies duplicate
cp "$d/honest/honest1.bd.h5" "$d/copy.bd.h5"
"$DELTASOUP" scan --base "$d/base.h5" --json "$d/three.json" --quiet "$d/honest/honest1.bd.h5" "$d/copy.bd.h5" \
    "$d/honest/honest2.bd.h5" > /dev/null || fail "scan of 3"
"$PYTHON3" "$REF" check "$d/three.json" honest1:duplicate honest2:flagged > /dev/null || fail "MAD 0 (3 deltas)"

# bad input: one line, the exit code, no output
cp "$d/honest/honest3.bd.h5" "$d/other.bd.h5"
cp "$d/honest/honest4.bd.h5" "$d/damaged.bd.h5"
"$PYTHON3" -c "import h5py, sys, numpy as np
f = h5py.File(sys.argv[1], 'r+'); del f.attrs['base_sha256']; f.attrs.create('base_sha256', np.bytes_('2' * 64))
g = h5py.File(sys.argv[2], 'r+'); g['bits/model.layers.0.mlp.down_proj.weight/scale'][0] *= 2" \
    "$d/other.bd.h5" "$d/damaged.bd.h5" || fail "h5py"
H="$d/honest/honest1.bd.h5 $d/honest/honest2.bd.h5"
expect() { # NP CODE "message part" scan-args...
    np=$1 want=$2 msg=$3
    shift 3
    if [ "$np" = 1 ]; then
        "$DELTASOUP" scan --json "$d/bad.json" --quiet "$@" > /dev/null 2> "$d/stderr"
    else
        $MPIEXEC -n "$np" "$DELTASOUP" scan --json "$d/bad.json" --quiet "$@" > /dev/null 2> "$d/all"
    fi
    rc=$?
    [ "$np" = 1 ] || grep '^deltasoup' "$d/all" > "$d/stderr"
    [ $rc -eq "$want" ] || fail "exit $rc, wanted $want: $*: $(cat "$d/stderr")"
    grep -qF -- "$msg" "$d/stderr" || fail "no '$msg' in: $(cat "$d/stderr")"
    [ "$(grep -c . "$d/stderr")" -eq 1 ] || fail "more than one line: $(cat "$d/stderr")"
    [ ! -e "$d/bad.json" ] && [ ! -e "$d/bad.json.tmp" ] || fail "output left by: $*"
}
expect 1 2 "scan needs at least 3 deltas (a median, a MAD and Krum's neighbours), got 2" --base "$d/base.h5" $H
expect 1 3 "$d/missing.bd.h5: cannot open" --base "$d/base.h5" $H "$d/missing.bd.h5"
expect 2 3 "$d/other.bd.h5: delta was made for base sha256 2222222222222222..., but $d/base.h5 has sha256" \
    --base "$d/base.h5" $H "$d/other.bd.h5"
expect 1 3 "$d/damaged.bd.h5: tensor model.layers.0.mlp.down_proj.weight: scale data does not match its recorded sha256" \
    --base "$d/base.h5" $H "$d/damaged.bd.h5"
expect 1 2 "--byzantine 1 needs at least 5 deltas (2F + 3), got 3" --base "$d/base.h5" --byzantine 1 $H "$d/other.bd.h5"
rm -rf "$d"
