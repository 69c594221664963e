#!/bin/sh
# `deltasoup inspect` on damaged or foreign files: each gives exit 3 and one
# error line on stderr naming the file (and the tensor where there is one),
# at 1 and at 2 ranks. The damaged copies are made with h5py, independently
# of deltasoup: not HDF5, truncated, wrong / missing format attribute, a newer
# format_version, a tensor whose shape disagrees with the config, a missing
# tensor, flipped data bytes (content hash mismatch), and a missing file.
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/mpi/inspect_bad.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "inspect_bad.sh: FAIL: $*" >&2; exit 1; }
"$PYTHON3" -c 'import h5py, numpy' 2>/dev/null || { echo "skip: $PYTHON3 lacks h5py"; exit 77; }

# A good model from the writer under test (1 rank), then damaged copies.
timeout 120 ${MPIEXEC:-mpiexec} -n 1 "$top_builddir/tests/unit/test_h5_model" "$d/w" > "$d/w.log" 2>&1 \
    || fail "writing the model: $(cat "$d/w.log")"
good="$d/w/np1/model.h5"
"$DELTASOUP" inspect "$good" > /dev/null || fail "the good model does not inspect"

echo "just text" > "$d/text.h5"
head -c 6000 "$good" > "$d/truncated.h5"
"$PYTHON3" - "$good" "$d" <<'PY' || fail "h5py could not make the damaged copies"
import shutil, sys
import h5py, numpy as np
good, d = sys.argv[1], sys.argv[2]
def copy(name):
    shutil.copy(good, "%s/%s.h5" % (d, name))
    return h5py.File("%s/%s.h5" % (d, name), "r+")
with copy("wrongformat") as f: f.attrs["format"] = "deltasoup.other"
with copy("noformat") as f: del f.attrs["format"]
with copy("version2") as f: f.attrs["format_version"] = np.int64(2)
with copy("shape") as f:
    del f["tensors/model.norm.weight"]
    f["tensors"].create_dataset("model.norm.weight", data=np.ones(17, "f4"))
with copy("missing") as f: del f["tensors/lm_head.weight"]
# Flip bytes in the middle of a tensor's data: HDF5 still reads it.
with h5py.File(good, "r") as f: off = f["tensors/model.layers.1.mlp.up_proj.weight"].id.get_offset()
shutil.copy(good, "%s/flipped.h5" % d)
with open("%s/flipped.h5" % d, "r+b") as g:
    g.seek(off + 100); b = g.read(4); g.seek(off + 100); g.write(bytes(x ^ 0x55 for x in b))
PY

# expect FILE PATTERN NP: exit 3, exactly one error line (the whole stderr at
# one rank), naming FILE, matching PATTERN
expect() {
    f="$d/$1.h5"
    if [ "$3" -eq 1 ]; then
        timeout 60 "$DELTASOUP" inspect "$f" > "$d/out" 2> "$d/err"
    else # mpiexec adds its own notice about the exit code: keep our lines
        timeout 60 ${MPIEXEC:-mpiexec} -n "$3" "$DELTASOUP" inspect "$f" > "$d/out" 2> "$d/err.all"
    fi
    rc=$?
    [ "$3" -eq 1 ] || grep '^deltasoup' "$d/err.all" > "$d/err"
    [ $rc -eq 3 ] || fail "$1 at $3 ranks: exit $rc, not 3: $(cat "$d/err")"
    [ "$(grep -c '' "$d/err")" -eq 1 ] || fail "$1 at $3 ranks: not one error line: $(cat "$d/err")"
    grep -q "error: $f: " "$d/err" || fail "$1: the message does not name the file: $(cat "$d/err")"
    grep -q "$2" "$d/err" || fail "$1: expected '$2' in: $(cat "$d/err")"
    echo "ok $1 ($3 ranks): $(cat "$d/err")"
}
for np in 1 2; do
    expect text "not a file deltasoup reads" $np
    expect truncated "truncated" $np
    expect wrongformat 'unknown format "deltasoup.other"' $np
    expect noformat "without a format attribute" $np
    expect version2 "format_version 2 is newer" $np
    expect shape "tensor model.norm.weight: shape \[17\] does not match the config (expected \[16\])" $np
    expect missing "tensor lm_head.weight missing" $np
    # verification on read names the tensor (docs/robustness.md "Verification on read") ...
    expect flipped "tensor model.layers.1.mlp.up_proj.weight: data does not match its recorded sha256" $np
    # ... and without it inspect's own recomputed hash still reports the mismatch
    timeout 60 ${MPIEXEC:-mpiexec} -n $np "$DELTASOUP" inspect --no-verify "$d/flipped.h5" > "$d/out" 2> "$d/err"
    [ $? -eq 3 ] && grep -q "content hash mismatch" "$d/err" || fail "flipped --no-verify: $(cat "$d/err")"
    grep -q '"match": false' "$d/out" || grep -q "match: no" "$d/out" || fail "flipped: the report does not say the hash does not match"
    expect nosuchfile "No such file" $np
done
rm -rf "$d"
