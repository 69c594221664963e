#!/bin/sh
# Every aggregation method on real deltas (stories260K fine-tuned with four
# seeds: import, finetune, compress) against the independent numpy
# reference (tests/python/aggregate_ref.py).
set -u
. "$(dirname "$0")/../defaults.sh"
"$PYTHON3" -c 'import numpy, h5py' 2>/dev/null || { echo "SKIP: $PYTHON3 lacks numpy or h5py"; exit 77; }
d=tests/aggregate/real.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "real.sh: FAIL: $*" >&2; exit 1; }
. "$top_srcdir/tests/aggregate/cases.sh"

# Real deltas: stories260K fine-tuned with four seeds, compressed with 1 bit.
models="$top_srcdir/data/models/stories260K"
"$DELTASOUP" import --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" -o "$d/base.h5" --quiet \
    > /dev/null || fail "import"
real=""
for s in 1 2 3 4; do
    "$DELTASOUP" finetune --base "$d/base.h5" --data "$top_srcdir/data/lm_corpus/tinystories_sample.txt" -o "$d/ft$s.h5" \
        --steps 4 --batch 2 --seq-len 32 --seed $s --quiet > /dev/null || fail "finetune $s"
    "$DELTASOUP" compress --base "$d/base.h5" --finetuned "$d/ft$s.h5" -o "$d/real$s.bd.h5" --owner "user$s" --quiet \
        > /dev/null || fail "compress $s"
    "$DELTASOUP" compress --base "$d/base.h5" --finetuned "$d/ft$s.h5" -o "$d/row$s.bd.h5" --owner "user$s" --scale row \
        --quiet > /dev/null || fail "compress --scale row $s"
    real="$real $d/real$s.bd.h5"
    row="${row:-} $d/row$s.bd.h5"
done
for m in mean median trimmed-mean majority; do
    agg real-$m $m "" "" $real
done
agg real-krum krum "--byzantine 0" "byzantine=0" $real
agg real-mkrum multi-krum "--byzantine 0 --select 2" "byzantine=0 select=2" $real
agg row-median median "" "" $row
agg row-krum krum "" "" $row

"$PYTHON3" "$top_srcdir/tests/python/aggregate_ref.py" "$cases" || fail "numpy reference"
rm -rf "$d"
