#!/bin/sh
# deltasoup finetune on MT-Bench questions (unlike TinyStories): 200 steps at
# 2 ranks lower the held-out NLL on that domain; runs are deterministic for a
# seed and rank count; the output keeps the base's dtype (bf16 here).
set -e
. "$(dirname "$0")/../defaults.sh"
# OpenBLAS 0.3.21 falls back to its slow Prescott kernels on CPUs it does not
# know (docs/model.md); pick the AVX2 ones where the CPU has AVX2.
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
fi
PY=$PYTHON3
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
tmp=$(mktemp -d /tmp/ds-model-ft.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
S=$top_srcdir/data/models/stories260K
# every 4th question held out; each turn a document
$PY "$top_srcdir/tests/python/mt_bench_split.py" "$top_srcdir/data/benchmarks/mt_bench/question.jsonl" "$tmp"
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$tmp/base.h5" --quiet
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$tmp/b16.h5" --dtype bf16 --quiet
nll() { "$DELTASOUP" eval --model "$1" --ppl "$tmp/held.txt" --seq-len 128 --json |
        $PY -c 'import json,sys; print(json.load(sys.stdin)["nll"])'; }
$MPIEXEC -n 2 "$DELTASOUP" finetune --base "$tmp/base.h5" --data "$tmp/train.txt" -o "$tmp/ft.h5" \
    --steps 200 --batch 8 --seq-len 64 --lr 1e-3 --seed 3 --quiet
before=$(nll "$tmp/base.h5"); after=$(nll "$tmp/ft.h5")
echo "held-out MT-Bench NLL: base $before, fine-tuned $after"
$PY -c "import sys; sys.exit(0 if $after < $before - 0.3 else 1)" || { echo "fine-tuning did not lower the held-out NLL"; exit 1; }
for i in 1 2; do
    $MPIEXEC -n 2 "$DELTASOUP" finetune --base "$tmp/b16.h5" --data "$tmp/train.txt" -o "$tmp/r$i.h5" \
        --steps 4 --batch 3 --seq-len 32 --seed 9 --quiet
done
$PY - "$tmp" <<'PYEOF'
import h5py, sys
d = sys.argv[1]
a, b, base = (h5py.File("%s/%s.h5" % (d, n), "r") for n in ("r1", "r2", "b16"))
assert a.attrs["content_sha256"] == b.attrs["content_sha256"], "two runs with one seed differ"
assert a.attrs["content_sha256"] != base.attrs["content_sha256"], "fine-tuning changed nothing"
for name, ds in a["tensors"].items():
    # h5py shows the bf16 float type as float32: ask HDF5 for its size
    size = ds.id.get_type().get_size()
    assert size == 2 == base["tensors"][name].id.get_type().get_size(), (name, size)
assert "tokenizer" in a, "tokenizer not carried over"
PYEOF
# an existing output is refused before training; bad data is named
rc=0; "$DELTASOUP" finetune --base "$tmp/base.h5" --data "$tmp/train.txt" -o "$tmp/ft.h5" --steps 1 2> "$tmp/err" || rc=$?
test $rc -eq 4
printf '\n\n' > "$tmp/empty.txt"
rc=0; "$DELTASOUP" finetune --base "$tmp/base.h5" --data "$tmp/empty.txt" -o "$tmp/x.h5" 2> "$tmp/err" || rc=$?
test $rc -eq 3 && grep -q empty.txt "$tmp/err" && test ! -e "$tmp/x.h5"
echo "finetune: ok"
