#!/bin/sh
# eval --task kl against an independent reference (tests/python/eval_ref.py:
# the spec-written BPE, float64 PyTorch): KL(p_base || p_finetuned) per
# predicted token and its standard error, at 2 ranks, on a real fine-tune.
set -eu
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
$PY -c 'import torch, h5py' 2>/dev/null || { echo "skip: no torch/h5py"; exit 77; }
w=$(mktemp -d /tmp/ds-eval-kl.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
T=$top_srcdir/data/lm_corpus/tinystories_sample.txt
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null
head -c 1500 "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" >"$w/user.txt"
"$DELTASOUP" finetune --base "$w/b.h5" --data "$w/user.txt" -o "$w/f.h5" --steps 4 --batch 2 --seq-len 32 \
    --lr 3e-3 --quiet >/dev/null
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/f.h5" --task "kl:$w/b.h5:$T" --seq-len 64 --json "$w/r.json" \
    --quiet >/dev/null
$PY "$top_srcdir/tests/python/eval_ref.py" kl "$w/f.h5" "$w/b.h5" "$S/tok512.bin" "$T" 64 "$w/r.json"
echo "kl_ref: ok"
