#!/bin/sh
# The engine (forward logits, gradients of CE/KL/MSE, KV-cached greedy
# generation) against the independent PyTorch float64 reference, on random
# configs (GQA, MQA, tied and untied heads) and on the shipped stories260K.
. "$(dirname "$0")/../defaults.sh"
exec "$PYTHON3" "$top_srcdir/tests/python/llama_ref.py" check \
    "$top_builddir/tests/model/model_probe" "$top_srcdir/data/models/stories260K/stories260K.bin"
