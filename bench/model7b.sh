#!/bin/sh
# A model of Llama-2-7B shapes in bf16 (32 decoder blocks of dim 4096, hidden
# 11008, 32 heads; stories260K's 512-piece vocabulary and tokenizer: 6.5 B
# parameters, 13 GB), written tensor by tensor (bench/verify_gen.py: one
# tensor in memory at a time), then on this machine (issue 14, docs/model.md
# "Pipeline"):
#  1. `eval --ppl` at 2 ranks without a pipeline (--pipeline 1): refused up
#     front, naming --pipeline (each rank would hold the whole model);
#  2. `eval --ppl` at 2 ranks with --pipeline 2 (and with the automatic
#     choice, --pipeline 0): peak RSS of each rank, NLL, seconds;
#  3. `generate` at 2 ranks with --pipeline 2 (8 tokens);
#  4. eval's task runner at 2 ranks with --pipeline 2: `--task ppl:TEXT` and
#     one truthfulqa-mc item (prompt once, its answers as a continuation);
#  5. prefill tokens/s: `eval --ppl` of DOCS documents of 32 tokens at 1
#     stage (1 rank, both cores as OpenBLAS threads) and at 2 stages (2
#     ranks, one core each; the documents are micro-batches, so the stages
#     overlap), the forward's seconds as eval reports them (loading apart);
#  6. fit-scales at 2 ranks: --pipeline 1 refused up front, naming
#     --pipeline; then 2 steps with --pipeline 2 (a fine-tune made with the
#     base, FAST=1 bench/verify_gen.py: base + 0.1 x other draws; the delta
#     from compress; --force: the generated base records no content hash):
#     peak RSS of each rank, seconds, the report.
# STEPS=14 runs steps 1 and 4 only (default: 1-4; 5 and 6 only when named,
# 6 writes a second 13 GB checkpoint). DOCS=8.
# Usage: BUILD=build sh bench/model7b.sh [LAYERS]   (LAYERS default 32;
# MEM=GIB passes --mem-per-rank to the eval runs, e.g. MEM=1.6 with 2 layers)
# Scratch in $TMPDIR (13 GB of disk), removed afterwards. Needs ~15 GB of free
# memory; one run takes minutes (a window of 64 tokens is ~0.8 TFLOP).
set -eu
. "$(dirname "$0")/env.sh"
layers=${1:-32} STEPS=${STEPS:-1234}
step() { case $STEPS in *$1*) return 0 ;; esac; return 1; }
w=$(mktemp -d "${TMPDIR:-/tmp}/ds-7b.XXXXXX")
trap 'rm -rf "$w"' EXIT
m=$top/data/models/stories260K
"$DELTASOUP" import --from llama2c "$m/stories260K.bin" --tokenizer "$m/tok512.bin" -o "$w/t.h5" --dtype bf16 \
    --quiet > /dev/null
t0=$(date +%s)
if step 6; then
    FAST=1 $PY "$top/bench/verify_gen.py" "$w/t.h5" "$w/big.h5" "$w/ft.h5" "$layers"
else
    $PY "$top/bench/verify_gen.py" "$w/t.h5" "$w/big.h5" - "$layers"
fi
echo "== model: $layers layers, $(du -h "$w/big.h5" | cut -f1) written in $(( $(date +%s) - t0 )) s;" \
    "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uptime | sed 's/.*load/load/')"
head -c 400 "$top/data/lm_corpus/tinystories_sample.txt" > "$w/text.txt"
# each rank under /usr/bin/time: its own peak RSS
rss() { /usr/bin/time -f "rank peak RSS %M KiB, %e s" "$@"; }
echo "== 1. eval --ppl, 2 ranks, --pipeline 1 (must be refused)"
if step 1 && $MPIEXEC -n 2 "$DELTASOUP" eval --model "$w/big.h5" --ppl "$w/text.txt" --seq-len 64 --pipeline 1 ${MEM:+--mem-per-rank $MEM} --quiet \
    < /dev/null > "$w/o1" 2> "$w/e1"; then
    echo "NOT refused"; exit 1
fi
step 1 && { grep -m1 -i "pipeline" "$w/e1" || { cat "$w/e1"; exit 1; }; }
for p in 2 0; do
    step 2 || break
    echo "== 2. eval --ppl, 2 ranks, --pipeline $p"
    t0=$(date +%s.%N)
    $MPIEXEC -n 2 /usr/bin/time -f "rank peak RSS %M KiB, %e s" "$DELTASOUP" eval --model "$w/big.h5" \
        --ppl "$w/text.txt" --seq-len 64 --pipeline "$p" ${MEM:+--mem-per-rank $MEM} < /dev/null 2>&1 | grep -av "^\[" || true
    echo "  wall $(echo "$(date +%s.%N) - $t0" | bc) s"
done
echo "== 3. generate, 2 ranks, --pipeline 2, 8 tokens"
step 3 && $MPIEXEC -n 2 /usr/bin/time -f "rank peak RSS %M KiB, %e s" "$DELTASOUP" generate --model "$w/big.h5" \
    --prompt "Once upon a time" --max-tokens 8 --pipeline 2 < /dev/null 2>&1 | tail -4
echo "== 4. eval --task ppl:TEXT --task truthfulqa-mc (1 item), 2 ranks, --pipeline 2"
t0=$(date +%s.%N)
step 4 && $MPIEXEC -n 2 /usr/bin/time -f "rank peak RSS %M KiB, %e s" "$DELTASOUP" eval --model "$w/big.h5" \
    --task "ppl:$w/text.txt" --task "truthfulqa-mc:$top/data/benchmarks/truthfulqa/data/mc_task.json" --limit 1 \
    --seq-len 64 --pipeline 2 --json --quiet ${MEM:+--mem-per-rank $MEM} < /dev/null 2>&1 |
    $PY -c 'import json,sys
t = sys.stdin.read(); i = t.index("{"); j = t.rindex("}") + 1; d = json.loads(t[i:j])
print(t[:i] + t[j:], end="")
for r in d["results"]: print("  %s %s = %.6f (n %d)" % (r["task"], r["metric"], r["value"], r["n"]))
print("  seconds %.1f" % d["seconds"])'
echo "  wall $(echo "$(date +%s.%N) - $t0" | bc) s"
if step 5; then
    DOCS=${DOCS:-8}
    $PY -c 'import sys
words = open(sys.argv[1]).read().split()
for d in range(int(sys.argv[2])): print(" ".join(words[d * 40:(d + 1) * 40]) + "\n")' \
        "$top/data/lm_corpus/tinystories_train_excerpt.txt" "$DOCS" > "$w/docs.txt"
    for run in "1 1" "2 2"; do
        set -- $run
        echo "== 5. prefill, $DOCS documents of <= 32 tokens, $1 rank(s), --pipeline $2 ($(uptime | sed 's/.*load/load/'))"
        $MPIEXEC -n "$1" --bind-to none "$DELTASOUP" eval --model "$w/big.h5" --ppl "$w/docs.txt" --seq-len 32 \
            --pipeline "$2" --json --quiet < /dev/null |
            $PY -c 'import json,sys; d = json.load(sys.stdin)
print("  %d tokens in %.1f s: %.2f tokens/s, NLL %.6f" % (d["tokens"] + d["documents"], d["seconds"], (d["tokens"] + d["documents"]) / d["seconds"], d["nll"]))'
    done
fi
if step 6; then
    head -c 6000 "$top/data/lm_corpus/tinystories_sample.txt" > "$w/calib.txt"
    t0=$(date +%s.%N)
    $MPIEXEC -n 2 "$DELTASOUP" compress --base "$w/big.h5" --finetuned "$w/ft.h5" -o "$w/d.bd.h5" --quiet < /dev/null
    echo "== 6. fit-scales (delta: compress at 2 ranks, $(echo "$(date +%s.%N) - $t0" | bc) s)"
    fit() { # PIPELINE [ARGS]: fit-scales at 2 ranks, 2 steps of 2 windows of 32 tokens
        p=$1; shift
        $MPIEXEC -n 2 /usr/bin/time -f "rank peak RSS %M KiB, %e s" "$DELTASOUP" fit-scales --base "$w/big.h5" \
            --finetuned "$w/ft.h5" --delta "$w/d.bd.h5" --calib "$w/calib.txt" -o "$w/fit$p.bd.h5" --steps 2 \
            --batch 2 --seq-len 32 --samples 8 --holdout 0.25 --pipeline "$p" --force ${MEM:+--mem-per-rank $MEM} "$@" \
            < /dev/null
    }
    echo "== 6a. fit-scales, 2 ranks, --pipeline 1 (must be refused)"
    if fit 1 --quiet > "$w/o6" 2> "$w/e6"; then echo "NOT refused"; exit 1; fi
    grep -m1 -i "pipeline" "$w/e6" || { cat "$w/e6"; exit 1; }
    echo "== 6b. fit-scales, 2 ranks, --pipeline 2, 2 steps"
    t0=$(date +%s.%N)
    fit 2 --report "$w/fit.json" 2>&1 | grep -av "^\[fit-scales\] step" || true
    echo "  wall $(echo "$(date +%s.%N) - $t0" | bc) s"
    $PY -c 'import json,sys; d = json.load(open(sys.argv[1]))
print("  held-out KL %.6g -> %.6g, NLL %.6f -> %.6f (fine-tune %.6f), peak RSS per rank %s GiB" % (d["heldout"]["kl_before"], d["heldout"]["kl_after"], d["heldout"]["nll_before"], d["heldout"]["nll_after"], d["heldout"]["nll_finetuned"], ", ".join("%.2f" % (b / 2**30) for b in d.get("peak_rss_bytes", []))))' "$w/fit.json"
fi
echo "load after: $(uptime | sed 's/.*load/load/')"
