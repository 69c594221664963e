#!/bin/sh
# compress -> apply on the shipped stories260K (f32 and bf16) against the
# independent numpy reference (tests/python/bitdelta_ref.py): sign bits,
# scales (tensor / row / column), dense deltas, the applied model, the ratio
# and both content hashes; then the delta's and the applied model's content
# hashes at 1, 2, 3 and 4 ranks.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
ref=$top_srcdir/tests/python/bitdelta_ref.py
model=$top_srcdir/data/models/stories260K
w=${TMPDIR:-/tmp}/ds-bitdelta-roundtrip.$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
ds() { n=$1; shift; $MPIEXEC -n "$n" "$DELTASOUP" "$@"; }
q=--quiet

# f32: a real fine-tune (deltasoup finetune, on TruthfulQA text); bf16: a
# random perturbation with 5% exact zeros (sign(0) must give bit 1)
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b32.h5" $q >/dev/null
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b16.h5" --dtype bf16 $q >/dev/null
head -c 1500 "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" >"$w/user.txt"
"$DELTASOUP" finetune --base "$w/b32.h5" --data "$w/user.txt" -o "$w/f32.h5" --steps 6 --batch 2 --seq-len 32 --lr 3e-3 $q >/dev/null
$PY "$ref" perturb "$w/b16.h5" "$w/f16.h5" 2 --zero-frac 0.05

check() { # dtype scale extra-compress-args...
    dt=$1 sc=$2; shift 2
    "$DELTASOUP" compress --base "$w/b$dt.h5" --finetuned "$w/f$dt.h5" -o "$w/d.bd.h5" --scale "$sc" "$@" --overwrite $q >/dev/null
    "$DELTASOUP" apply --base "$w/b$dt.h5" --delta "$w/d.bd.h5" -o "$w/a.h5" --overwrite $q >/dev/null
    r=$($PY "$ref" check "$w/b$dt.h5" "$w/f$dt.h5" "$w/d.bd.h5" "$w/a.h5" --scale "$sc" "$@")
    # the ratio inspect reports equals the one counted in numpy
    "$DELTASOUP" inspect "$w/d.bd.h5" --json >"$w/inspect.json" || { echo "inspect failed"; exit 1; }
    got=$($PY -c 'import json,sys; r=json.load(sys.stdin); assert r["content_sha256"]["match"]; print("ratio %.6f" % r["compression"]["ratio"])' <"$w/inspect.json")
    [ "$r" = "$got" ] || { echo "ratio: numpy '$r', inspect '$got'"; exit 1; }
    # and its per-tensor min/max/mean/std of the delta values are numpy's
    $PY "$ref" stats "$w/d.bd.h5" "$w/inspect.json" || exit 1
    echo "ok: $dt $sc $* ($r)"
}
check 32 tensor
check 32 row
check 32 col --dense-for 'model.layers.0.*'
check 16 tensor
check 16 row --bits-for model.embed_tokens.weight
check 16 col --bits-for model.embed_tokens.weight

# --dry-run: the plan's ratio is the one of the file it would write, and nothing is written
r=$("$DELTASOUP" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/dry.bd.h5" --scale row --dry-run --json |
    $PY -c 'import json,sys; print("ratio %.6f" % json.load(sys.stdin)["ratio"])')
"$DELTASOUP" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/d.bd.h5" --scale row --overwrite $q >/dev/null
"$DELTASOUP" apply --base "$w/b16.h5" --delta "$w/d.bd.h5" -o "$w/a.h5" --overwrite $q >/dev/null
[ "$r" = "$($PY "$ref" check "$w/b16.h5" "$w/f16.h5" "$w/d.bd.h5" "$w/a.h5" --scale row)" ] && [ ! -e "$w/dry.bd.h5" ] ||
    { echo "dry-run: '$r' or it wrote a file"; exit 1; }
# Llama 2 7B shapes, no files: >= 10x as BitDelta counts, >= 15x with the embeddings
# and the head coded with per-row scales (byte counts: docs/bitdelta.md)
r7=$("$DELTASOUP" compress --dry-run --shapes llama-7b --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["ratio"])')
r7b=$("$DELTASOUP" compress --dry-run --shapes llama-7b --json --bits-for model.embed_tokens.weight \
    --bits-for lm_head.weight --scale row | $PY -c 'import json,sys; print(json.load(sys.stdin)["ratio"])')
$PY -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); \
assert abs(a - 13476831232 / 1334322048) < 1e-9 and a >= 10, a; \
assert abs(b - 13476831232 / 848496640) < 1e-9 and b >= 15, b" "$r7" "$r7b"
echo "ok: llama-7b shapes: ${r7}x, ${r7b}x with embeddings and head coded per row"

# rank independence of both outputs
for n in 1 2 3 4; do
    ds "$n" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/d$n.bd.h5" --scale row $q >/dev/null
    ds "$n" apply --base "$w/b16.h5" --delta "$w/d$n.bd.h5" -o "$w/a$n.h5" $q >/dev/null
    echo "$n $($PY "$ref" hash "$w/d$n.bd.h5") $($PY "$ref" hash "$w/a$n.h5")" >>"$w/hashes"
done
cat "$w/hashes"
[ "$(cut -d' ' -f2,3 "$w/hashes" | sort -u | wc -l)" -eq 1 ] || { echo "content hashes depend on the number of ranks"; exit 1; }
$PY "$ref" check "$w/b16.h5" "$w/f16.h5" "$w/d4.bd.h5" "$w/a4.h5" --scale row >/dev/null
echo "ok: identical content hashes at 1-4 ranks"

# compress --no-verify takes the base's recorded per-tensor digests for
# base_sha256 (no hashing of the base): the same delta, the same base_sha256
for n in 1 2; do
    ds "$n" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/nv$n.bd.h5" --scale row --no-verify $q >/dev/null 2>&1
    [ "$($PY "$ref" hash "$w/nv$n.bd.h5")" = "$($PY "$ref" hash "$w/d1.bd.h5")" ] ||
        { echo "compress --no-verify at $n rank(s) wrote another delta"; exit 1; }
    $PY -c 'import h5py, sys; a, b = (h5py.File(p, "r").attrs["base_sha256"] for p in sys.argv[1:]); assert a == b, (a, b)' \
        "$w/nv$n.bd.h5" "$w/d1.bd.h5" || { echo "compress --no-verify: another base_sha256 ($n)"; exit 1; }
done
echo "ok: compress --no-verify writes the same delta at 1 and 2 ranks"
