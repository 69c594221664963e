#!/bin/sh
# Safetensors written by an independent numpy writer (tests/python/st_ref.py):
# import -> export gives the same file byte for byte (bf16; mixed F32/BF16
# with an untied lm_head; f16), the content hash equals Python's, shards (by
# index or by list) import to the same hash at 1, 2 and 4 ranks, and
# --dtype f32 widens bf16 exactly.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import numpy' 2>/dev/null || { echo "numpy missing in $PY: skip"; exit 77; }
DS=${DELTASOUP:?}
ST="$PY $top_srcdir/tests/python/st_ref.py"
T=$(mktemp -d /tmp/ds-st-XXXXXX)
trap 'rm -rf "$T"' EXIT
hash_of() { sed -n 's/.*"content_sha256":"\([0-9a-f]*\)".*/\1/p'; }

for kind in "bf16" "mixed" "f16 --tied"; do
    d=$T/$(echo "$kind" | cut -d' ' -f1)
    mkdir -p "$d/out"
    $ST make "$d" --dtype $kind --seed 7
    h=$($DS import --from safetensors "$d/model.safetensors" -o "$d/m.h5" --json --quiet | hash_of)
    [ "$h" = "$($ST hash "$d/model.safetensors")" ] || { echo "$kind: content hash differs from Python's"; exit 1; }
    $DS export --to safetensors "$d/m.h5" -o "$d/out/model.safetensors" --quiet
    cmp "$d/model.safetensors" "$d/out/model.safetensors"
    $PY -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
assert all(a[k] == b[k] for k in a), (a, b)' "$d/config.json" "$d/out/config.json"
done

# inspect: every tensor's stats and digest against numpy on the mixed model.
$DS inspect "$T/mixed/model.safetensors" --json > "$T/inspect.json"
$PY - "$T/mixed/model.safetensors" "$T/inspect.json" "$top_srcdir/tests/python" <<'EOF2'
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import st_ref
_, ts, _, _ = st_ref.parse(sys.argv[1])
rep = json.load(open(sys.argv[2]))
assert rep["format"] == "safetensors" and rep["metadata"] == {"format": "pt"} and rep["n_tensors"] == len(ts)
assert rep["content_sha256"]["computed"] == st_ref.content_hash(ts)
for t in rep["tensors"]:
    dt, shape, raw = ts[t["name"]]
    x = np.frombuffer(raw, "<u2").astype("<u4") << 16 if dt == "BF16" else np.frombuffer(raw, "<u4")
    x = x.view("<f4").astype(np.float64)
    assert t["dtype"] == dt and tuple(t["shape"]) == shape and t["bytes"] == len(raw), t["name"]
    for k, v in (("min", x.min()), ("max", x.max()), ("mean", x.mean()), ("std", x.std())):
        assert abs(t[k] - v) <= 1e-9 * max(1.0, abs(v)), (t["name"], k, t[k], v)
EOF2

# Shards: the index, or the shard files, at 1, 2 and 4 ranks.
mkdir "$T/sh"
$ST make "$T/sh" --dtype bf16 --seed 7 --shards 3
want=$($ST hash "$T/bf16/model.safetensors")
for n in 1 2 4; do
    h=$($MPIEXEC -n $n "$DS" import --from safetensors "$T/sh/model.safetensors.index.json" -o "$T/sh$n.h5" --json --quiet | hash_of)
    [ "$h" = "$want" ] || { echo "index import at $n ranks: $h != $want"; exit 1; }
done
h=$($DS import --from safetensors "$T"/sh/model-0000*.safetensors -o "$T/list.h5" --json --quiet | hash_of)
[ "$h" = "$want" ] || { echo "shard-list import: $h != $want"; exit 1; }

# --dtype f32: every bf16 value widened exactly (bits << 16).
mkdir "$T/w"
$DS import --from safetensors "$T/bf16/model.safetensors" --dtype f32 -o "$T/w.h5" --quiet
$DS export --to safetensors "$T/w.h5" -o "$T/w/model.safetensors" --quiet
$PY - "$T/bf16/model.safetensors" "$T/w/model.safetensors" "$top_srcdir/tests/python" <<'EOF'
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import st_ref
_, a, _, _ = st_ref.parse(sys.argv[1])
_, b, _, _ = st_ref.parse(sys.argv[2])
assert sorted(a) == sorted(b)
for k in a:
    assert a[k][0] == "BF16" and b[k][0] == "F32" and a[k][1] == b[k][1], k
    wide = np.frombuffer(a[k][2], "<u2").astype("<u4") << 16
    assert (wide == np.frombuffer(b[k][2], "<u4")).all(), k
EOF
# Names without a folder: config.json is the one in the current folder
# (import reads it, export writes it there).
mkdir "$T/bare"
(cd "$T/bf16" && $DS import --from safetensors model.safetensors -o bare.h5 --quiet &&
    cd "$T/bare" && $DS export --to safetensors "$T/bf16/bare.h5" -o model.safetensors --quiet) ||
    { echo "import/export of file names without a folder failed"; exit 1; }
cmp "$T/bf16/model.safetensors" "$T/bare/model.safetensors"
[ -f "$T/bare/config.json" ] || { echo "export -o model.safetensors: no ./config.json"; exit 1; }
echo "ok: foreign safetensors round trip byte-identical (bf16, mixed, f16), shards at 1/2/4 ranks, --dtype f32 exact, bare names"
