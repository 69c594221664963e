#!/bin/sh
# Bad input to import/export: each case must exit with the documented code,
# print one error line naming the file (and the tensor), and leave no output
# (neither OUT nor OUT.tmp).
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy' 2>/dev/null || { echo "numpy missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
REF=$top_srcdir/tests/python
ST="$PY $REF/st_ref.py"
M=$top_srcdir/data/models/stories260K
T=$(mktemp -d /tmp/ds-bad-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0

# expect CODE PATTERN OUT cmd... : exit code, a stderr line with PATTERN, no OUT.
expect() {
    code=$1 pat=$2 out=$3
    shift 3
    rc=0
    "$@" > "$T/stdout" 2> "$T/stderr" || rc=$?
    if [ "$rc" != "$code" ]; then
        echo "FAIL (exit $rc, want $code): $*"; cat "$T/stderr"; fails=$((fails + 1))
    elif ! grep -q -- "$pat" "$T/stderr"; then
        echo "FAIL (message): $*"; echo "  want: $pat"; echo "  got:  $(cat "$T/stderr")"; fails=$((fails + 1))
    elif [ "$(grep -c 'error:' "$T/stderr")" != 1 ]; then
        echo "FAIL (not one error line): $*"; cat "$T/stderr"; fails=$((fails + 1))
    elif [ -n "$out" ] && { [ -e "$out" ] || [ -e "$out.tmp" ]; }; then
        echo "FAIL (left output $out): $*"; fails=$((fails + 1))
    fi
}

# ---- llama2.c
B=$M/stories260K.bin
size=$(wc -c < "$B")
head -c $((size - 100)) "$B" > "$T/trunc.bin"
expect 3 "trunc.bin: .* bytes, but the header .* implies $size: truncated" "$T/o.h5" \
    $DS import --from llama2c "$T/trunc.bin" -o "$T/o.h5"
{ cat "$B"; printf 'junk'; } > "$T/trail.bin"
expect 3 "trail.bin: .*: trailing data" "$T/o.h5" $DS import --from llama2c "$T/trail.bin" -o "$T/o.h5"
head -c 20 "$B" > "$T/short.bin"
expect 3 "short.bin: truncated: 20 bytes" "$T/o.h5" $DS import --from llama2c "$T/short.bin" -o "$T/o.h5"
{ printf '24ka\001\000\000\000'; head -c 300 /dev/zero; } > "$T/v1.bin"
expect 3 "v1.bin: magic 'ak42' of a versioned llama2.c export (version 1)" "$T/o.h5" \
    $DS import --from llama2c "$T/v1.bin" -o "$T/o.h5"
expect 3 "nope.bin: cannot open" "$T/o.h5" $DS import --from llama2c "$T/nope.bin" -o "$T/o.h5"
# A NaN at element 70 of layer 1's q_proj (HF layout; the reference finds its
# byte in the llama2.c layout, permutation included).
cp "$B" "$T/nan.bin"
off=$($PY "$REF/llama2c_ref.py" index "$B" model.layers.1.self_attn.q_proj.weight 70)
printf '\000\000\300\177' | dd of="$T/nan.bin" bs=1 seek="$off" conv=notrunc 2> /dev/null
expect 3 "nan.bin: tensor model.layers.1.self_attn.q_proj.weight: non-finite value NaN at index 70" "$T/o.h5" \
    $MPIEXEC -n 2 $DS import --from llama2c "$T/nan.bin" -o "$T/o.h5"
$DS import --from llama2c "$T/nan.bin" -o "$T/o.h5" --allow-nonfinite --quiet > /dev/null
rm -f "$T/o.h5"

# ---- safetensors
mkdir "$T/good"
$ST make "$T/good" --dtype bf16
cp "$T/good/config.json" "$T/config.json"
for f in offsets_overlap truncated_data hlen_absurd invalid_utf8 duplicate_names unknown_dtype; do
    cp "$top_srcdir/tests/data/safetensors_bad/$f.safetensors" "$T/$f.safetensors"
    expect 3 "$T/$f.safetensors: " "$T/o.h5" $DS import --from safetensors "$T/$f.safetensors" -o "$T/o.h5"
done
expect 3 "offsets_overlap.safetensors: tensor v: data_offsets \[8, 16) overlap tensor w" "$T/o.h5" \
    $DS import --from safetensors "$T/offsets_overlap.safetensors" -o "$T/o.h5"
gsize=$(wc -c < "$T/good/model.safetensors")
head -c $((gsize - 10)) "$T/good/model.safetensors" > "$T/cut.safetensors"
expect 3 "cut.safetensors: tensor model.norm.weight: data_offsets .* run past the end" "$T/o.h5" \
    $DS import --from safetensors "$T/cut.safetensors" -o "$T/o.h5"
sed 's/"vocab_size": 32/"vocab_size": 33/' "$T/good/config.json" > "$T/c33.json"
expect 3 "model.safetensors: tensor lm_head.weight: shape \[32, 16\], but .*c33.json implies \[33, 16\]" \
    "$T/o.h5" $DS import --from safetensors "$T/good/model.safetensors" --config "$T/c33.json" -o "$T/o.h5"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 1/' "$T/good/config.json" > "$T/c1.json"
expect 3 "tensor model.layers.1.input_layernorm.weight: not a tensor of the Llama model of" "$T/o.h5" \
    $DS import --from safetensors "$T/good/model.safetensors" --config "$T/c1.json" -o "$T/o.h5"
mkdir "$T/tied"
$ST make "$T/tied" --tied
sed 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$T/tied/config.json" > "$T/untied.json"
expect 3 "tensor lm_head.weight: missing" "$T/o.h5" \
    $DS import --from safetensors "$T/tied/model.safetensors" --config "$T/untied.json" -o "$T/o.h5"
printf '{"hidden_size": 16,' > "$T/broken.json"
expect 3 "broken.json: invalid JSON" "$T/o.h5" \
    $DS import --from safetensors "$T/good/model.safetensors" --config "$T/broken.json" -o "$T/o.h5"
mkdir "$T/nan"
$ST make "$T/nan" --nan model.layers.0.mlp.up_proj.weight:5
expect 3 "nan/model.safetensors: tensor model.layers.0.mlp.up_proj.weight: non-finite value NaN at index 5" "$T/o.h5" \
    $MPIEXEC -n 2 $DS import --from safetensors "$T/nan/model.safetensors" -o "$T/o.h5"

# ---- outputs that exist, export of what is not a model, usage
$DS import --from safetensors "$T/good/model.safetensors" -o "$T/keep.h5" --quiet > /dev/null
sum=$(cksum < "$T/keep.h5")
expect 4 "keep.h5: output exists" "" $DS import --from safetensors "$T/good/model.safetensors" -o "$T/keep.h5"
[ "$(cksum < "$T/keep.h5")" = "$sum" ] || { echo "FAIL: refused import touched keep.h5"; fails=$((fails + 1)); }
[ ! -e "$T/keep.h5.tmp" ] || { echo "FAIL: keep.h5.tmp left"; fails=$((fails + 1)); }
$DS import --from safetensors "$T/good/model.safetensors" -o "$T/keep.h5" --overwrite --quiet > /dev/null
mkdir "$T/ex"
: > "$T/ex/model.safetensors"
expect 4 "ex/model.safetensors: output exists" "" $DS export --to safetensors "$T/keep.h5" -o "$T/ex/model.safetensors"
[ ! -s "$T/ex/model.safetensors" ] && [ ! -e "$T/ex/config.json" ] || { echo "FAIL: refused export wrote"; fails=$((fails + 1)); }
rm "$T/ex/model.safetensors"
: > "$T/ex/config.json"
expect 4 "ex/config.json: output exists" "$T/ex/model.safetensors" \
    $DS export --to safetensors "$T/keep.h5" -o "$T/ex/model.safetensors"
expect 3 "model.safetensors" "$T/ex/x.safetensors" $DS export --to safetensors "$T/good/model.safetensors" -o "$T/ex/x.safetensors"
expect 2 "--from llama2c, safetensors or hf is required" "$T/o.h5" $DS import "$B" -o "$T/o.h5"
expect 2 "--dtype: expected f32, f16 or bf16" "$T/o.h5" $DS import --from llama2c "$B" --dtype f8 -o "$T/o.h5"
expect 2 "--from: expected llama2c, safetensors or hf, got 'gguf'" "$T/o.h5" $DS import --from gguf "$B" -o "$T/o.h5"
expect 2 "deltasoup import: error: unknown option '--bogus' (see --help)" "$T/o.h5" $DS import --from llama2c "$B" --bogus -o "$T/o.h5"
expect 2 "--from llama2c takes one MODEL.bin" "$T/o.h5" $DS import --from llama2c "$B" "$B" -o "$T/o.h5"
expect 2 "deltasoup export: error: expected one IN.h5" "" $DS export --to safetensors -o "$T/x"
expect 2 "--to: expected safetensors, got 'gguf'" "" $DS export --to gguf "$T/keep.h5" -o "$T/x"
expect 2 "--to safetensors is required" "" $DS export "$T/keep.h5" -o "$T/x"

[ $fails = 0 ] || { echo "$fails case(s) failed"; exit 1; }
echo "ok: every bad input refused with its exit code, one line naming file and tensor, no output"
