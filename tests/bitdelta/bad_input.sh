#!/bin/sh
# Bad input to compress, apply and inspect: each case must fail with one
# error line on stderr naming the file (and the tensor), the expected exit
# code, and leave no output (nor NAME.tmp) behind. Cases marked "np=2" run
# at 2 ranks, so that a message printed by every rank would show (the others
# at 1: a failing mpiexec waits about a second and a half before it exits).
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
ref=$top_srcdir/tests/python/bitdelta_ref.py
bad=$top_srcdir/tests/python/bitdelta_bad.py
model=$top_srcdir/data/models/stories260K
w=${TMPDIR:-/tmp}/ds-bitdelta-bad.$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
q=--quiet
fails=0

# [np=2] expect CODE OUTPUT PATTERN... -- ARGS: run deltasoup at $np ranks.
np=1
expect() {
    code=$1 out=$2; shift 2
    pats=
    while [ "$1" != -- ]; do pats="$pats
$1"; shift; done
    shift
    set +e
    if [ "$np" = 1 ]; then "$DELTASOUP" "$@"; else $MPIEXEC -n "$np" "$DELTASOUP" "$@"; fi >"$w/stdout" 2>"$w/stderr"
    rc=$?
    np=1
    set -e
    # mpiexec adds its own lines about a non-zero exit: count ours
    lines=$(grep -c '^deltasoup' "$w/stderr" || true)
    ok=1
    [ "$rc" -eq "$code" ] || { echo "FAIL: exit $rc, expected $code: $*"; ok=0; }
    [ "$lines" -eq 1 ] || { echo "FAIL: $lines stderr lines, expected 1: $*"; ok=0; }
    echo "$pats" | while IFS= read -r p; do
        [ -z "$p" ] || grep -qF -- "$p" "$w/stderr" || { echo "FAIL: stderr lacks '$p': $*"; exit 1; }
    done || ok=0
    if [ "$out" != - ]; then
        [ ! -e "$out" ] || { echo "FAIL: output $out was written: $*"; ok=0; }
        [ ! -e "$out.tmp" ] || { echo "FAIL: $out.tmp left behind: $*"; ok=0; }
    fi
    if [ $ok = 1 ]; then echo "ok: $(grep '^deltasoup' "$w/stderr")"; else cat "$w/stderr"; fails=$((fails + 1)); fi
}

"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b.h5" $q >/dev/null
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b16.h5" --dtype bf16 $q >/dev/null
$PY "$ref" perturb "$w/b.h5" "$w/f.h5" 3
for k in untied kvheads nan inf big overflow; do $PY "$bad" $k "$w/b.h5" "$w/$k.h5"; done
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" $q >/dev/null
o=$w/out.h5

echo "== compress"
expect 3 "$o" "untied.h5" "lm_head.weight" "b.h5" -- compress --base "$w/b.h5" --finetuned "$w/untied.h5" -o "$o"
expect 3 "$o" "kvheads.h5" "k_proj.weight" "shape" -- compress --base "$w/b.h5" --finetuned "$w/kvheads.h5" -o "$o"
expect 3 "$o" "b16.h5" "dtype BF16" -- compress --base "$w/b.h5" --finetuned "$w/b16.h5" -o "$o"
np=2
expect 3 "$o" "nan.h5" "model.layers.1.self_attn.q_proj.weight" "non-finite" -- compress --base "$w/b.h5" --finetuned "$w/nan.h5" -o "$o"
expect 3 "$o" "inf.h5" "model.norm.weight" "non-finite" -- compress --base "$w/b.h5" --finetuned "$w/inf.h5" -o "$o"
expect 3 "$o" "overflow.h5" "model.layers.0.self_attn.q_proj.weight" "element 1 " -- compress --base "$w/big.h5" --finetuned "$w/overflow.h5" -o "$o"
expect 3 "$o" "missing.h5" -- compress --base "$w/b.h5" --finetuned "$w/missing.h5" -o "$o"
expect 2 "$o" "--bits-for" "model.norm.weight" -- compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$o" --bits-for model.norm.weight
expect 2 "$o" "--scale" -- compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$o" --scale rows
expect 2 - "--shapes" -- compress --shapes llama-7b
# an existing output is refused and left as it was
cp "$w/d.bd.h5" "$w/keep.bd.h5"
sum=$(cksum <"$w/keep.bd.h5")
np=2
expect 4 - "keep.bd.h5" "--overwrite" -- compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/keep.bd.h5"
[ "$(cksum <"$w/keep.bd.h5")" = "$sum" ] || { echo "FAIL: existing output was modified"; fails=$((fails + 1)); }

echo "== apply"
# the wrong base: b16 holds the same weights in bf16, so its content hash differs
np=2
expect 3 "$o" "d.bd.h5" "b16.h5" "--force" -- apply --base "$w/b16.h5" --delta "$w/d.bd.h5" -o "$o"
# a base that records no content hash cannot be checked
expect 3 "$o" "d.bd.h5" "f.h5" "no content hash" -- apply --base "$w/f.h5" --delta "$w/d.bd.h5" -o "$o"
$MPIEXEC -n 2 "$DELTASOUP" apply --base "$w/b16.h5" --delta "$w/d.bd.h5" -o "$o" --force $q >/dev/null 2>"$w/stderr" ||
    { echo "FAIL: --force did not apply"; fails=$((fails + 1)); }
[ "$(grep -c warning "$w/stderr")" -eq 1 ] && [ -e "$o" ] || { echo "FAIL: --force: no warning or no output"; fails=$((fails + 1)); }
expect 4 - "out.h5" "--overwrite" -- apply --base "$w/b.h5" --delta "$w/d.bd.h5" -o "$o"
rm -f "$o"
expect 3 "$o" "b.h5" "not a deltasoup delta file" -- apply --base "$w/b.h5" --delta "$w/b.h5" -o "$o"
head -c 20000 "$w/d.bd.h5" >"$w/trunc.bd.h5"
np=2
expect 3 "$o" "trunc.bd.h5" -- apply --base "$w/b.h5" --delta "$w/trunc.bd.h5" -o "$o"
echo "not hdf5" >"$w/text.bd.h5"
expect 3 "$o" "text.bd.h5" -- apply --base "$w/b.h5" --delta "$w/text.bd.h5" -o "$o"
cp "$w/d.bd.h5" "$w/shape.bd.h5"
$PY "$bad" bits "$w/d.bd.h5" "$w/shape.bd.h5"
expect 3 "$o" "shape.bd.h5" "signs" -- apply --base "$w/b.h5" --delta "$w/shape.bd.h5" -o "$o"

echo "== inspect"
expect 3 - "trunc.bd.h5" -- inspect "$w/trunc.bd.h5"
np=2
expect 3 - "shape.bd.h5" "signs" -- inspect "$w/shape.bd.h5"

[ $fails -eq 0 ] || { echo "$fails case(s) failed"; exit 1; }
