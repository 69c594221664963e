#!/bin/sh
# fit-scales --device: cpu writes what no option writes (a short real fit on
# stories260K); cuda is refused whether or not a GPU is present (the model
# engine runs on the CPU), an unknown device too: one line, exit 2, no output.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/gpu_jobs/common.sh"
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
model=$top_srcdir/data/models/stories260K
q=--quiet

"$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b.h5" $q >/dev/null
$PY "$top_srcdir/tests/python/bitdelta_ref.py" perturb "$w/b.h5" "$w/f.h5" 7 --zero-frac 0.01
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" --device cpu $q >/dev/null
head -c 4000 "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" >"$w/calib.txt"
fit() { echo fit-scales --base "$w/b.h5" --finetuned "$w/f.h5" --delta "$w/d.bd.h5" --calib "$w/calib.txt" \
    --steps 3 --batch 2 --seq-len 16 --samples 8 $q "$@"; }
sha() { $PY "$top_srcdir/tests/python/bitdelta_ref.py" hash "$1"; }
# shellcheck disable=SC2046
"$DELTASOUP" $(fit -o "$w/o1.bd.h5") >/dev/null
# shellcheck disable=SC2046
"$DELTASOUP" $(fit -o "$w/o2.bd.h5" --device cpu) >/dev/null
a=$(sha "$w/o1.bd.h5") b=$(sha "$w/o2.bd.h5")
[ "$a" = "$b" ] || fail "fitted delta without --device $a, with --device cpu $b"
[ "$a" != "$(sha "$w/d.bd.h5")" ] || fail "the fit changed no scale"
echo "ok: --device cpu = no option ($a)"

# shellcheck disable=SC2046
{
    refused 1 "--device cuda is not supported by this job yet" $(fit -o "$w/no.bd.h5" --device cuda)
    refused 2 "--device cuda is not supported by this job yet" $(fit -o "$w/no.bd.h5" --device cuda)
    refused 1 "--device: expected cpu or cuda, got 'bogus'" $(fit -o "$w/no.bd.h5" --device bogus)
}
[ ! -e "$w/no.bd.h5" ] && [ ! -e "$w/no.bd.h5.tmp" ] || fail "a refused run left an output"
"$DELTASOUP" fit-scales --help | grep -q -- '--device DEV .*cpu only' || fail "fit-scales --help does not document --device"
echo "ok: --device cuda / bogus refused with no output"
