#!/bin/sh
# Sizes that cannot fit are refused up front (issue 15 item 11;
# docs/robustness.md "Sizes that cannot fit"): `fit-scales --samples 8
# --batch 65536` grew to several GB until killed; now fit-scales and
# finetune compare the activations they would allocate (src/membudget.h)
# with the node's memory and refuse at once, exit 3, with the memory needed,
# writing nothing (under a timeout, so that a regression cannot eat the
# machine for long). A size that fits still runs.
set -u
. "$(dirname "$0")/../defaults.sh"
limit=60
. "$(dirname "$0")/common.sh"
need_numpy
models
expect 3 "$w/fit.bd.h5" "fit-scales: error: --batch 65536 --seq-len 128 --samples 8: needs" "GiB per rank" \
    "more than this node's" "(lower --batch or --seq-len)" -- fit-scales --base "$w/b.h5" --finetuned "$w/f.h5" \
    --delta "$w/d.bd.h5" --calib "$w/text.txt" -o "$w/fit.bd.h5" --samples 8 --batch 65536 --steps 1
np=2
expect 3 "$w/ft.h5" "finetune: error: --batch 65536 --seq-len 128: needs" "(2 rank(s) on this node:" -- \
    finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/ft.h5" --batch 65536 --steps 1
"$DELTASOUP" finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/ft.h5" --batch 2 --seq-len 32 --steps 1 --quiet ||
    fail "finetune of a size that fits"
[ $fails = 0 ] || { echo "memory.sh: $fails failure(s)"; exit 1; }
echo "memory: ok"
