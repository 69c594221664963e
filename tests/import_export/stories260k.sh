#!/bin/sh
# stories260K: llama2.c -> h5 -> safetensors, checked bit for bit against an
# independent numpy reading of the .bin (tests/python/llama2c_ref.py), its
# content hash against Python's hash of the expected tensors, inspect's hash
# of the export, then safetensors -> h5 -> safetensors (byte-identical file,
# same content hash), and the import and export at 1, 2 and 4 ranks.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy' 2>/dev/null || { echo "numpy missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
M=$top_srcdir/data/models/stories260K
REF=$top_srcdir/tests/python
T=$(mktemp -d /tmp/ds-stories-XXXXXX)
trap 'rm -rf "$T"' EXIT
hash_of() { sed -n 's/.*"content_sha256":"\([0-9a-f]*\)".*/\1/p'; }

$DS import --from llama2c "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o "$T/s.h5" --json --quiet > "$T/imp.json"
h_import=$(hash_of < "$T/imp.json")
mkdir "$T/st"
$DS export --to safetensors "$T/s.h5" -o "$T/st/model.safetensors" --quiet
h_ref=$($PY "$REF/llama2c_ref.py" "$M/stories260K.bin" "$T/st/model.safetensors" "$T/st/config.json")
[ "$h_import" = "$h_ref" ] || { echo "import hash $h_import != reference $h_ref"; exit 1; }
h_inspect=$($DS inspect "$T/st/model.safetensors" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["content_sha256"]["computed"])')
[ "$h_inspect" = "$h_ref" ] || { echo "inspect hash of the export $h_inspect != $h_ref"; exit 1; }

# safetensors -> h5 -> safetensors: the same file, byte for byte.
$DS import --from safetensors "$T/st/model.safetensors" -o "$T/s2.h5" --json --quiet > "$T/imp2.json"
[ "$(hash_of < "$T/imp2.json")" = "$h_ref" ] || { echo "re-import changed the content hash"; exit 1; }
mkdir "$T/st2"
$DS export --to safetensors "$T/s2.h5" -o "$T/st2/model.safetensors" --quiet
cmp "$T/st/model.safetensors" "$T/st2/model.safetensors"
cmp "$T/st/config.json" "$T/st2/config.json"

# Any number of ranks: the same content hash, the same exported bytes.
for n in 1 2 4; do
    $MPIEXEC -n $n "$DS" import --from llama2c "$M/stories260K.bin" -o "$T/n$n.h5" --json --quiet > "$T/n$n.json"
    [ "$(hash_of < "$T/n$n.json")" = "$h_ref" ] || { echo "llama2c import at $n ranks: other hash"; exit 1; }
    $MPIEXEC -n $n "$DS" import --from safetensors "$T/st/model.safetensors" -o "$T/m$n.h5" --json --quiet > "$T/m$n.json"
    [ "$(hash_of < "$T/m$n.json")" = "$h_ref" ] || { echo "safetensors import at $n ranks: other hash"; exit 1; }
    mkdir "$T/e$n"
    $MPIEXEC -n $n "$DS" export --to safetensors "$T/n$n.h5" -o "$T/e$n/model.safetensors" --quiet
    cmp "$T/st/model.safetensors" "$T/e$n/model.safetensors"
done
echo "ok: stories260K bit-exact vs numpy, hash $h_ref at 1/2/4 ranks, round trips byte-identical"
