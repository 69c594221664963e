#!/bin/sh
# Prefill (forward only) tokens/s of a 1B-shaped Llama (TinyLlama-1.1B
# shapes: dim 2048, hidden 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000,
# untied head; random weights) on one sequence of T tokens, THREADS threads
# each: the engine with bf16 and f32 weights (bench/model_bench ... prefill)
# against PyTorch eager (bench/model_torch.py ... prefill) in f32 and bf16,
# with the GFLOP/s of each and the sgemm peak measured in the same run.
# Issue 14's goal: the engine's bf16 at least 1.5x the faster PyTorch.
#   BUILD=build sh bench/prefill.sh [T] [THREADS]    (T 256, THREADS 2)
set -eu
. "$(dirname "$0")/env.sh"
T=${1:-256} THREADS=${2:-2} ITERS=${ITERS:-2}
CFG="2048 5632 22 32 4 32000 $T 0"
echo "== prefill of 1 x $T tokens, $THREADS threads, $ITERS iterations; $(uptime | sed 's/.*load/load/')"
for dt in bf16 f32; do
    echo "deltasoup $dt: $("$BUILD/bench/model_bench" $CFG 1 "$T" "$ITERS" 0 "$THREADS" "$dt" prefill)"
done
for dt in f32 bf16; do
    echo "pytorch   $dt: $($PY "$top/bench/model_torch.py" $CFG 1 "$T" "$ITERS" "$THREADS" prefill "$dt")"
done
echo "load after: $(uptime | sed 's/.*load/load/')"
