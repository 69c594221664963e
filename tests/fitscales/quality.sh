#!/bin/sh
# On a real delta (stories260K fine-tuned on MT-Bench questions, a text
# unlike TinyStories), fitted scales (per tensor and per row) lower the
# held-out KL(finetuned || compressed) below that of the mean|d| scales: in
# fit-scales' own report (held-out calibration windows, where the NLL must
# also come closer to the fine-tune's) and, independently, in PyTorch float64
# on the held-out MT-Bench questions with the deltas applied in numpy
# (tests/python/fitscales_check.py). The output keeps signs and dense parts,
# records the fit and has a recomputed content hash.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
ds_skip_sanitized "a quality measurement; fit-scales runs under ASan in ranks, resume, pipeline, bad_input"
fs_setup quality
$PY -c 'import h5py, torch' 2>/dev/null || { echo "skip: no h5py/torch"; exit 77; }
fs_inputs 60
cd "$tmp" || exit 99
for mode in tensor row; do
    d=d.bd.h5; [ $mode = row ] && d=drow.bd.h5
    "$DELTASOUP" fit-scales --base base.h5 --finetuned ft.h5 --delta $d --calib train.txt -o fit-$mode.bd.h5 \
        --steps 40 --lr 1e-3 --seq-len 64 --report r-$mode.json --quiet >/dev/null || fs_fail "fit-scales ($mode)"
    $PY - r-$mode.json $mode <<'PYEOF' || fs_fail "report ($mode)"
import json, sys
r = json.load(open(sys.argv[1]))
h = r["heldout"]
print("%s: report held-out KL %.5f -> %.5f, NLL %.4f -> %.4f (fine-tune %.4f)" % (
    sys.argv[2], h["kl_before"], h["kl_after"], h["nll_before"], h["nll_after"], h["nll_finetuned"]))
assert r["objective"] == "kl" and r["steps"] == 40 and h["windows"] > 0, r
assert r["objective_before"] == h["kl_before"] and r["objective_after"] == h["kl_after"], r
assert h["kl_after"] < h["kl_before"], "held-out KL not lowered"
assert abs(h["nll_after"] - h["nll_finetuned"]) < abs(h["nll_before"] - h["nll_finetuned"]), "NLL not closer"
PYEOF
    $PY "$top_srcdir/tests/python/fitscales_check.py" output $d fit-$mode.bd.h5 train.txt kl 40 || exit 1
done
$PY "$top_srcdir/tests/python/fitscales_check.py" quality base.h5 ft.h5 \
    "$top_srcdir/data/models/stories260K/tok512.bin" held.txt 128 d.bd.h5 fit-tensor.bd.h5 \
    drow.bd.h5 fit-row.bd.h5 || exit 1
# The fitted delta works wherever a delta does: eval --delta agrees with the
# checkpoint apply writes.
"$DELTASOUP" apply --base base.h5 --delta fit-row.bd.h5 -o applied.h5 --quiet >/dev/null || fs_fail "apply"
a=$("$DELTASOUP" eval --model applied.h5 --ppl held.txt --seq-len 128 --json | sed -n 's/.*"nll": *\([-0-9.eE+]*\).*/\1/p')
b=$("$DELTASOUP" eval --model base.h5 --delta fit-row.bd.h5 --ppl held.txt --seq-len 128 --json |
    sed -n 's/.*"nll": *\([-0-9.eE+]*\).*/\1/p')
[ -n "$a" ] && [ "$a" = "$b" ] || fs_fail "eval of the applied fit ($a) and eval --delta ($b) differ"
echo "quality: ok"
