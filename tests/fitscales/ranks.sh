#!/bin/sh
# Data-parallel fit-scales at 1, 2 and 4 ranks (batch 3: with 4 ranks one
# rank has no rows and contributes zero) gives the same scales bit for bit:
# every window's scale gradients are computed alone and added in window
# order (docs/fit-scales.md "Pipelined"), for per-tensor scales with KL and
# per-row scales with MSE; the held-out numbers of the reports are equal.
# All runs go through mpiexec (the same OpenBLAS threads per rank).
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
fs_setup ranks
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
fs_inputs 5
cd "$tmp" || exit 99
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
for cfg in "d.bd.h5 kl" "drow.bd.h5 mse"; do
    set -- $cfg
    for n in 1 2 4; do
        $MPIEXEC -n $n "$DELTASOUP" fit-scales --base base.h5 --finetuned ft.h5 --delta $1 --calib train.txt \
            -o $2-$n.bd.h5 --objective $2 --steps 12 --lr 1e-3 --batch 3 --seq-len 32 --report $2-$n.json \
            --quiet >/dev/null || fs_fail "fit-scales $2 at $n ranks"
    done
    for n in 2 4; do
        $PY "$top_srcdir/tests/python/fitscales_check.py" scales $2-1.bd.h5 $2-$n.bd.h5 0 || exit 1
        $PY - $2-1.json $2-$n.json <<'PYEOF' || fs_fail "reports at 1 and $n ranks differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for k in ("kl_before", "kl_after", "mse_after", "nll_after", "nll_finetuned"):
    x, y = a["heldout"][k], b["heldout"][k]
    assert x == y, (k, x, y)
assert a["heldout"]["windows"] == b["heldout"]["windows"]
PYEOF
    done
done
echo "ranks: ok"
