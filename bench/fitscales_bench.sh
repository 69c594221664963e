#!/bin/sh
# fit-scales vs a PyTorch implementation of the same scale distillation
# (bench/fitscales_torch.py: eager float32, autograd on the scales only,
# torch.set_num_threads(2)): seconds per step at batch 4 x 128 tokens on
#   - stories260K fine-tuned on MT-Bench questions (real weights), and
#   - a random ~20M-parameter config (dim 512, hidden 1376, 7 layers, 8/4
#     heads, vocab 512) with a random "fine-tune" (weights + 1% noise).
# deltasoup runs as one rank with 2 OpenBLAS threads; one run each, ratio
# printed (goal: deltasoup >= 1.5x PyTorch's speed). THREADS=1 pins both to
# one CPU (taskset) with one thread each: on a loaded machine PyTorch's
# spinning OpenMP threads slow it down several times, which says more about
# the load than about either implementation.
#   [THREADS=1] bench/fitscales_bench.sh BUILD_DIR [STEPS_260K] [STEPS_20M]   (from the source tree)
set -e
B=${1:-.}
N1=${2:-40}
N2=${3:-6}
PY=${PYTHON3:-/usr/bin/python3}
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
fi
tmp=$(mktemp -d /tmp/ds-fit-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
S=data/models/stories260K
TH=${THREADS:-2}
D="$B/deltasoup"
pin=
[ "$TH" = 1 ] && pin="taskset -c 0"
echo "OpenBLAS core: ${OPENBLAS_CORETYPE:-auto}; threads: $TH; load: $(cut -d' ' -f1-3 /proc/loadavg)"

# ours CALIB BASE FT DELTA STEPS: deltasoup's seconds per step
ours()
{
    $pin "$D" fit-scales --base "$2" --finetuned "$3" --delta "$4" --calib "$1" -o "$tmp/out.bd.h5" --steps "$5" \
        --overwrite | sed -n 's/.*(\([0-9.]*\) s\/step).*/\1/p'
}
ratio()
{
    $PY -c "import sys; print('%s: deltasoup %.4f s/step, pytorch %.4f s/step, speed ratio %.2fx' % ('$1', $2, $3, $3 / $2))"
}

# stories260K, real fine-tune
$PY - data/benchmarks/mt_bench/question.jsonl "$tmp/calib.txt" <<'PYEOF'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        for t in json.loads(line)["turns"]:
            out.write(t.strip() + "\n\n")
PYEOF
"$D" import --from llama2c $S/stories260K.bin --tokenizer $S/tok512.bin -o "$tmp/b.h5" --quiet >/dev/null
"$D" finetune --base "$tmp/b.h5" --data "$tmp/calib.txt" -o "$tmp/f.h5" --steps 50 --batch 8 --seq-len 64 \
    --lr 1e-3 --quiet >/dev/null
"$D" compress --base "$tmp/b.h5" --finetuned "$tmp/f.h5" -o "$tmp/d.bd.h5" --quiet >/dev/null
a=$(ours "$tmp/calib.txt" "$tmp/b.h5" "$tmp/f.h5" "$tmp/d.bd.h5" "$N1")
t=$($pin $PY bench/fitscales_torch.py "$tmp/b.h5" "$tmp/f.h5" "$tmp/d.bd.h5" 4 128 "$N1" "$TH" | sed 's/.*=\([0-9.]*\) .*/\1/')
ratio "stories260K ($N1 steps)" "$a" "$t"

# ~20M random config through llama2.c files (vocab 512: the shipped tokenizer)
$PY - "$tmp" <<'PYEOF'
import numpy as np, struct, sys
D, F, L, H, KVH, V, S = 512, 1376, 7, 8, 4, 512, 256
kvd = D // H * KVH
rng = np.random.default_rng(5)
shapes = [(V, D), (L, D), (L, D, D), (L, kvd, D), (L, kvd, D), (L, D, D), (L, D), (L, F, D), (L, D, F), (L, F, D),
          (D,), (S, D // H // 2), (S, D // H // 2)]
norms = (1, 6, 10)  # rms_att, rms_ffn, rms_final
base = [1 + 0.1 * rng.standard_normal(s) if i in norms else 0.02 * rng.standard_normal(s) for i, s in enumerate(shapes)]
for name, noise in (("b20", 0.0), ("f20", 0.01)):
    with open("%s/%s.bin" % (sys.argv[1], name), "wb") as f:
        f.write(struct.pack("<7i", D, F, L, H, KVH, V, S))
        for w in base:
            f.write((w * (1 + noise * rng.standard_normal(w.shape))).astype("<f4").tobytes())
PYEOF
"$D" import --from llama2c "$tmp/b20.bin" --tokenizer $S/tok512.bin -o "$tmp/b20.h5" --quiet >/dev/null
"$D" import --from llama2c "$tmp/f20.bin" --tokenizer $S/tok512.bin -o "$tmp/f20.h5" --quiet >/dev/null
"$D" compress --base "$tmp/b20.h5" --finetuned "$tmp/f20.h5" -o "$tmp/d20.bd.h5" --quiet >/dev/null
a=$(ours data/lm_corpus/tinystories_train_excerpt.txt "$tmp/b20.h5" "$tmp/f20.h5" "$tmp/d20.bd.h5" "$N2")
t=$($pin $PY bench/fitscales_torch.py "$tmp/b20.h5" "$tmp/f20.h5" "$tmp/d20.bd.h5" 4 128 "$N2" "$TH" | sed 's/.*=\([0-9.]*\) .*/\1/')
ratio "20M ($N2 steps)" "$a" "$t"
