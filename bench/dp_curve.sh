#!/bin/sh
# DP-SGD figures (docs/privacy.md "DP-SGD in finetune"):
#   (a) held-out NLL against epsilon: stories260K fine-tuned on TruthfulQA
#       text (each row "Q: question / A: best answer. correct answers" a
#       document; every 5th row held out) for STEPS steps with
#       --max-grad-norm 1 at --target-epsilon for each of EPSILONS, and
#       without DP (epsilon inf: plain finetune, same batch, steps and LR);
#       the held-out NLL of each (eval --ppl) against the base's;
#   (b) the cost of a DP step against a non-private one (tokens/s of the
#       same batch, one rank, one BLAS thread for both: the plain run under taskset -c 0).
#   (c) the same on a random ~19M-parameter model (dim 512, hidden 1376, 6
#       layers, 8 heads, 4 KV heads, vocabulary 512: stories260K's tokenizer),
#       written in llama2.c's format and imported.
# usage: BUILD=build-dpsgd bench/dp_curve.sh [OUT]
# env: PARTS="a b c" EPSILONS="2 8" STEPS=100 BATCH=128 SEQ=64 LR=1e-3 SEED=1
#      REPS=3 OSTEPS=20 (b); BIG_STEPS=3 BIG_BATCH=8 BIG_SEQ=64 (c)
set -eu
. "$(dirname "$0")/env.sh"
out=${1:-/tmp/dp_curve}
mkdir -p "$out"
: "${EPSILONS:=2 8}" "${STEPS:=100}" "${BATCH:=128}" "${SEQ:=64}" "${LR:=1e-3}" "${SEED:=1}"
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
fi
S=$top/data/models/stories260K
"$PY" - "$top/data/benchmarks/truthfulqa/TruthfulQA.csv" "$out" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8-sig")))
docs = ["Q: %s\nA: %s. %s" % (r["Question"], r["Best Answer"], r["Correct Answers"]) for r in rows]
for name, keep in (("train", lambda i: i % 5 != 0), ("held", lambda i: i % 5 == 0)):
    with open("%s/%s.txt" % (sys.argv[2], name), "w") as f:
        f.write("\n\n".join(d for i, d in enumerate(docs) if keep(i)) + "\n")
PYEOF
[ -e "$out/base.h5" ] || "$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" \
    -o "$out/base.h5" --quiet
nll() { "$DELTASOUP" eval --model "$1" --ppl "$out/held.txt" --seq-len 128 --json |
        "$PY" -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["nll"])'; }
FT="finetune --base $out/base.h5 --data $out/train.txt --steps $STEPS --batch $BATCH --seq-len $SEQ --lr $LR --seed $SEED"
: "${PARTS:=a b c}"
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
if part a; then
echo "base: held-out NLL $(nll "$out/base.h5")"
for e in $EPSILONS; do
    # shellcheck disable=SC2086
    "$DELTASOUP" $FT --dp --target-epsilon "$e" --max-grad-norm 1 -o "$out/dp$e.h5" --overwrite > "$out/dp$e.log"
    echo "epsilon $e: held-out NLL $(nll "$out/dp$e.h5") | $(grep -h 'DP-SGD\|wrote' "$out/dp$e.log" | tr '\n' ' ')"
done
# shellcheck disable=SC2086
taskset -c 0 "$DELTASOUP" $FT -o "$out/nodp.h5" --overwrite > "$out/nodp.log"
echo "epsilon inf (no DP): held-out NLL $(nll "$out/nodp.h5") | $(grep -h wrote "$out/nodp.log")"
echo "load: $(uptime)"
fi
# (b) cost: REPS alternating pairs of OSTEPS steps, DP and plain, both on one core
# (taskset -c 0); the best wall time of each (tokens/s as finetune prints them).
if part b; then
: "${REPS:=3}" "${OSTEPS:=20}"
FT="finetune --base $out/base.h5 --data $out/train.txt --steps $OSTEPS --batch $BATCH --seq-len $SEQ --lr $LR --seed $SEED"
for r in $(seq "$REPS"); do
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    taskset -c 0 "$DELTASOUP" $FT --dp --noise-multiplier 1 --max-grad-norm 1 -o "$out/o_dp.h5" --overwrite --quiet
    t1=$(date +%s.%N)
    # shellcheck disable=SC2086
    taskset -c 0 "$DELTASOUP" $FT -o "$out/o_plain.h5" --overwrite --quiet
    t2=$(date +%s.%N)
    echo "pair $r: DP $(echo "$t1 - $t0" | bc) s, plain $(echo "$t2 - $t1" | bc) s ($OSTEPS steps, batch $BATCH, seq $SEQ; load $(cut -d' ' -f1 /proc/loadavg))"
done
fi
# (c)
pair() { # MODEL STEPS BATCH SEQ TAG
    ft="finetune --base $1 --data $out/train.txt --steps $2 --batch $3 --seq-len $4 --lr $LR --seed $SEED"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    taskset -c 0 "$DELTASOUP" $ft --dp --noise-multiplier 1 --max-grad-norm 1 -o "$out/o_dp.h5" --overwrite --quiet
    t1=$(date +%s.%N)
    # shellcheck disable=SC2086
    taskset -c 0 "$DELTASOUP" $ft -o "$out/o_plain.h5" --overwrite --quiet
    t2=$(date +%s.%N)
    echo "$5: DP $(echo "$t1 - $t0" | bc) s, plain $(echo "$t2 - $t1" | bc) s ($2 steps, batch $3, seq $4; load $(cut -d' ' -f1 /proc/loadavg))"
}
if part c; then
: "${BIG_STEPS:=3}" "${BIG_BATCH:=8}" "${BIG_SEQ:=64}"
"$PY" - "$out/big.bin" <<'PYEOF'
import struct, sys
import numpy as np
D, F, L, H, KVH, V, S = 512, 1376, 6, 8, 4, 512, 256
hs, kvd = D // H, D // H * KVH
r = np.random.default_rng(0)
n = lambda *s: (r.standard_normal(s) * 0.02).astype("<f4")
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<7i", D, F, L, H, KVH, V, S))
    for a in (n(V, D), np.ones((L, D), "<f4"), n(L, D, D), n(L, kvd, D), n(L, kvd, D), n(L, D, D),
              np.ones((L, D), "<f4"), n(L, F, D), n(L, D, F), n(L, F, D), np.ones(D, "<f4"),
              np.zeros(S * hs, "<f4")):
        f.write(a.tobytes())
PYEOF
"$DELTASOUP" import --from llama2c "$out/big.bin" --tokenizer "$S/tok512.bin" -o "$out/big.h5" --overwrite --quiet
for r in 1 2; do pair "$out/big.h5" "$BIG_STEPS" "$BIG_BATCH" "$BIG_SEQ" "19M pair $r"; done
fi
