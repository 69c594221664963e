#!/bin/sh
# TruthfulQA MC scored with a shared prefix (the prompt's keys and values
# computed once, the answers as one continuation, logits only where scored:
# eval/score.c ds_eval_loglik) against its reference twin, one forward of the
# whole sequences (DS_EVAL_PREFIX=0: ds_eval_loglik_ref), on stories260K's
# first 40 questions at 1 and 2 ranks: per item the same MC1, MC2 within
# 1e-4 (a ratio of exp(ll): ll of -100 moved by 1e-4), every answer's
# log-likelihood within 2e-6 relative (docs/eval.md:
# the BLAS blocks rows of different batch shapes differently, so not bit for
# bit), and the twin itself equal at 1 and 2 ranks.
set -eu
. "$(dirname "$0")/../defaults.sh"
w=$(mktemp -d /tmp/ds-eval-prefix.XXXXXX)
trap 'rm -rf "$w"' EXIT
S=$top_srcdir/data/models/stories260K
task=truthfulqa-mc:$top_srcdir/data/benchmarks/truthfulqa/data/mc_task.json
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null
$MPIEXEC -n 1 "$DELTASOUP" eval --model "$w/b.h5" --task "$task" --limit 40 --items "$w/p1.jsonl" --quiet >/dev/null
$MPIEXEC -n 1 -x DS_EVAL_PREFIX=0 "$DELTASOUP" eval --model "$w/b.h5" --task "$task" --limit 40 \
    --items "$w/r1.jsonl" --quiet >/dev/null
$MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/b.h5" --task "$task" --limit 40 --items "$w/p2.jsonl" --quiet >/dev/null
$MPIEXEC -n 2 -x DS_EVAL_PREFIX=0 "$DELTASOUP" eval --model "$w/b.h5" --task "$task" --limit 40 \
    --items "$w/r2.jsonl" --quiet >/dev/null
$PYTHON3 - "$w" <<'PYEOF'
import json, sys
w = sys.argv[1]
def load(name):
    return [json.loads(l) for l in open("%s/%s.jsonl" % (w, name))]
p1, r1, p2, r2 = load("p1"), load("r1"), load("p2"), load("r2")
assert len(p1) == len(r1) == 40, (len(p1), len(r1))
worst = 0.0
for ranks, p, r in (("1", p1, r1), ("2", p2, r2)):
    for a, b in zip(p, r):
        assert a["item"] == b["item"]
        assert a["mc1"] == b["mc1"], ("mc1", ranks, a["item"])
        assert abs(a["mc2"] - b["mc2"]) <= 1e-4, ("mc2", ranks, a["item"], a["mc2"], b["mc2"])
        for k in ("ll_mc1", "ll_mc2"):
            assert len(a[k]) == len(b[k])
            for x, y in zip(a[k], b[k]):
                rel = abs(x - y) / max(1.0, abs(y))
                worst = max(worst, rel)
                assert rel <= 2e-6, (k, ranks, a["item"], x, y)
# each path gives the same records at 1 and 2 ranks (items are whole on a rank)
for a, b in ((p1, p2), (r1, r2)):
    for x, y in zip(a, b):
        assert x["ll_mc1"] == y["ll_mc1"] and x["ll_mc2"] == y["ll_mc2"], x["item"]
print("prefix vs twin: 40 items, worst relative difference %.3g" % worst)
PYEOF
