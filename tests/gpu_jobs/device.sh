#!/bin/sh
# --device on compress and apply, on any machine: --device cpu writes the
# same content as no option, and both are checked against the independent
# numpy reference (tests/python/bitdelta_ref.py) for every scale kind;
# --device cuda where it cannot run (no GPU, or a build without CUDA) and an
# unknown device fail with one line and exit 2 at 1 and 2 ranks, before
# any output exists (an existing output is left as it was).
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/gpu_jobs/common.sh"
$PY -c 'import numpy, h5py' 2>/dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
ref=$top_srcdir/tests/python/bitdelta_ref.py
model=$top_srcdir/data/models/stories260K
q=--quiet

"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b16.h5" --dtype bf16 $q >/dev/null
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b32.h5" $q >/dev/null
$PY "$ref" perturb "$w/b16.h5" "$w/f16.h5" 3 --zero-frac 0.05
$PY "$ref" perturb "$w/b32.h5" "$w/f32.h5" 4 --zero-frac 0.05

# no option and --device cpu: the same delta and applied model (the hashes
# the program prints), and the --device cpu ones agree with numpy
sha() { sed -n 's/^content_sha256: //p'; }
for run in "16 tensor" "16 row" "16 col" "32 row" "32 col"; do
    set -- $run
    dt=$1 sc=$2
    for dev in "" "--device cpu"; do
        t=$w/x${dev#--device }
        # shellcheck disable=SC2086
        "$DELTASOUP" compress --base "$w/b$dt.h5" --finetuned "$w/f$dt.h5" -o "$t.bd.h5" --scale $sc $dev --overwrite $q | sha >"$t.sha"
        # shellcheck disable=SC2086
        "$DELTASOUP" apply --base "$w/b$dt.h5" --delta "$t.bd.h5" -o "$t.h5" $dev --overwrite $q | sha >>"$t.sha"
    done
    [ "$(wc -l <"$w/x.sha")" -eq 2 ] && cmp -s "$w/x.sha" "$w/xcpu.sha" ||
        fail "f$dt $sc: content without --device $(cat "$w/x.sha"), with --device cpu $(cat "$w/xcpu.sha")"
    $PY "$ref" check "$w/b$dt.h5" "$w/f$dt.h5" "$w/xcpu.bd.h5" "$w/xcpu.h5" --scale $sc >/dev/null ||
        fail "f$dt $sc --device cpu: differs from the numpy reference"
    echo "ok: f$dt $sc: --device cpu = default = numpy reference"
done

probe_gpu

# refused: no output (and no NAME.tmp), an existing output untouched
for n in 1 2; do
    for dev in bogus cuda; do
        [ "$dev" = cuda ] && [ "$have_gpu" = 1 ] && continue
        [ "$dev" = bogus ] && [ "$n" = 2 ] && continue # parsed alike at any rank count
        want="--device cuda: "
        [ "$dev" = bogus ] && want="--device: expected cpu or cuda, got 'bogus'"
        refused $n "$want" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/no.bd.h5" --device $dev $q
        refused $n "$want" apply --base "$w/b16.h5" --delta "$w/x.bd.h5" -o "$w/no.h5" --device $dev $q
        refused $n "$want" compress --dry-run --shapes llama-7b --device $dev
        for f in no.bd.h5 no.bd.h5.tmp no.h5 no.h5.tmp; do [ ! -e "$w/$f" ] || fail "--device $dev at $n rank(s) left $f"; done
        cp "$w/xcpu.h5" "$w/keep.h5"
        refused $n "$want" apply --base "$w/b32.h5" --delta "$w/xcpu.bd.h5" -o "$w/keep.h5" --overwrite --device $dev $q
        cmp -s "$w/xcpu.h5" "$w/keep.h5" || fail "--device $dev --overwrite changed the existing output"
        echo "ok: --device $dev refused at $n rank(s), no output"
    done
done
refused 1 "needs a value" compress --base "$w/b16.h5" --finetuned "$w/f16.h5" -o "$w/no.bd.h5" --device
for job in compress apply; do
    "$DELTASOUP" $job --help | grep -q -- '--device DEV' || fail "$job --help does not document --device"
done
echo "ok: --device bogus / missing value refused; --help documents --device"
