#!/bin/sh
# Peak RSS of eval --ppl on a bf16 model of Llama-2-7B layer shapes (issue 14,
# docs/model.md "Numerics and kernels"): the engine keeps the matrices in bf16,
# so the peak should be ~2 bytes a parameter plus the program's own ~50 MB.
#   BUILD=build-bf16 bench/bf16_rss.sh [LAYERS] [OLD_DELTASOUP]
# LAYERS decoder blocks (default 2: 407M parameters, 814 MB of bf16 files
# twice, written by bench/verify_gen.py into $TMPDIR); OLD_DELTASOUP, a
# deltasoup built before the change, is measured on the same file for
# comparison. Prints parameters, weight bytes, peak RSS and RSS per parameter.
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
top=$(dirname "$here")
BUILD=${BUILD:-build}
ds=$top/$BUILD/deltasoup
layers=${1:-2}
old=${2:-}
py=${PYTHON3:-/usr/bin/python3}
w=${TMPDIR:-/tmp}/ds-bf16-rss.$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
m=$top/data/models/stories260K
"$ds" import --from llama2c "$m/stories260K.bin" --tokenizer "$m/tok512.bin" -o "$w/t.h5" --dtype bf16 --quiet >/dev/null
"$py" "$here/verify_gen.py" "$w/t.h5" "$w/big.h5" "$w/ft.h5" "$layers"
rm -f "$w/ft.h5"
head -c 3000 "$top/data/lm_corpus/tinystories_sample.txt" >"$w/text.txt"
params=$("$py" -c "
import h5py, numpy as np
with h5py.File('$w/big.h5') as f: print(sum(int(np.prod(d.shape)) for d in f['tensors'].values()))")
run() { # LABEL DELTASOUP
    /usr/bin/time -f '%M' -o "$w/rss" "$2" eval --model "$w/big.h5" --ppl "$w/text.txt" --seq-len 64 --json --quiet \
        >"$w/out.json"
    kb=$(cat "$w/rss")
    nll=$("$py" -c "import json; print(json.load(open('$w/out.json'))['nll'])")
    "$py" -c "p=$params; kb=$kb
print('%-8s params %d, bf16 weights %.0f MB, peak RSS %.0f MB, %.2f bytes/param, nll $nll' % ('$1', p, 2*p/1e6, kb*1024/1e6, kb*1024/p))"
}
run new "$ds"
[ -z "$old" ] || run old "$old"
