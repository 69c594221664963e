#!/bin/sh
# Engine vs PyTorch (eager float32, 2 threads): forward+backward tokens/s on a
# ~20M-parameter Llama (batch 4 x 128), generation tokens/s on that config and
# on stories260K's, and the peak RSS of finetune on stories260K.
#   bench/model_bench.sh BUILD_DIR        (run from the source tree)
set -e
B=${1:-.}
PY=${PYTHON3:-/usr/bin/python3}
CFG20="512 1376 6 8 4 4096 256 0"     # dim hidden layers heads kv_heads vocab seq tied
CFG260="64 172 5 8 4 512 512 1"
echo "OpenBLAS core: ${OPENBLAS_CORETYPE:-auto}"
ours=$("$B/bench/model_bench" $CFG20 4 128 5 128 2)
torch=$($PY bench/model_torch.py $CFG20 4 128 5 2)
echo "20M  deltasoup: $ours"
echo "20M  pytorch:   $torch"
$PY -c "import sys; a=float('$ours'.split('fwd_bwd_tokens_per_s=')[1].split()[0]); b=float('$torch'.split('=')[1]); print('20M  fwd+bwd speed ratio deltasoup/pytorch: %.2fx' % (a/b))"
echo "260K deltasoup: $("$B/bench/model_bench" $CFG260 8 128 10 500 2)"
tmp=$(mktemp -d /tmp/ds-model-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
S=data/models/stories260K
"$B/deltasoup" import --from llama2c $S/stories260K.bin --tokenizer $S/tok512.bin -o "$tmp/m.h5" --quiet >/dev/null
"$B/deltasoup" finetune --base "$tmp/m.h5" --data data/lm_corpus/tinystories_train_excerpt.txt -o "$tmp/f.h5" \
    --steps 200 --batch 8 --seq-len 128 | tail -1
"$B/deltasoup" generate --model "$tmp/m.h5" --prompt "Once upon a time" --max-tokens 400 --temperature 0 2>&1 >/dev/null | tail -1
