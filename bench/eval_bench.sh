#!/bin/sh
# deltasoup eval throughput on the shipped stories260K with TruthfulQA MC
# (data/benchmarks/truthfulqa/data/mc_task.json, the first LIMIT questions
# everywhere): items/s of the base at 1 and 2 ranks, then 16 deltas in ONE
# job (--delta-list) against 16 separate `deltasoup eval` jobs one after
# another, in the same run, at NP ranks; prints the ratio and the goal (>= 3x).
# The 16 deltas are real: 8 short fine-tunes (4 texts x 2 seeds, STEPS steps),
# each compressed with per-tensor and per-row scales. The separate jobs must
# give the same numbers as the one job (checked). Run once by hand:
#   BUILD=build sh bench/eval_bench.sh
# Knobs: LIMIT=100, NP=2, STEPS=20, BENCH_DIR (scratch, removed afterwards).
set -eu
. "$(dirname "$0")/env.sh"
LIMIT=${LIMIT:-100} NP=${NP:-2} STEPS=${STEPS:-20}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-eval-bench-XXXXXX")
trap 'rm -rf "$dir"' EXIT
model=$top/data/models/stories260K
task=truthfulqa-mc:$top/data/benchmarks/truthfulqa/data/mc_task.json
# stdin from /dev/null: mpiexec forwards stdin, which would eat the delta list
ds() { np=$1; shift; $MPIEXEC -n "$np" "$DELTASOUP" "$@" < /dev/null; }
now() { date +%s.%N; }

echo "== setup: import, 8 fine-tunes of $STEPS steps, 16 deltas (not timed)"
ds "$NP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$dir/base.h5" --quiet
$PY - "$top" "$dir" <<'PY'
import csv, json, sys
top, out = sys.argv[1], sys.argv[2]
b = top + "/data/benchmarks"
with open(b + "/mt_bench/question.jsonl") as f, open(out + "/t0.txt", "w") as g:
    for line in f:
        g.write(" ".join(json.loads(line)["turns"]) + "\n\n")
rows = list(csv.DictReader(open(b + "/truthfulqa/TruthfulQA.csv", encoding="utf-8-sig")))
for k, part in ((1, rows[: len(rows) // 2]), (2, rows[len(rows) // 2:])):
    with open("%s/t%d.txt" % (out, k), "w") as g:
        for r in part:
            g.write(r["Question"] + " " + r["Best Answer"] + "\n\n")
with open(top + "/data/lm_corpus/tinystories_valid_fragment.txt") as f, open(out + "/t3.txt", "w") as g:
    g.write(f.read())
PY
: > "$dir/deltas.txt"
for t in 0 1 2 3; do
    for seed in 1 2; do
        ds "$NP" finetune --base "$dir/base.h5" --data "$dir/t$t.txt" -o "$dir/ft.h5" --steps "$STEPS" --seed "$seed" \
            --overwrite --quiet
        for sc in tensor row; do
            d=$dir/d$t$seed$sc.bd.h5
            ds "$NP" compress --base "$dir/base.h5" --finetuned "$dir/ft.h5" -o "$d" --scale "$sc" --owner "u$t$seed" \
                --quiet > /dev/null
            echo "$d" >> "$dir/deltas.txt"
        done
    done
done
[ "$(wc -l < "$dir/deltas.txt")" -eq 16 ]

echo "== TruthfulQA MC, --limit $LIMIT, cpu: $(nproc) cores, $(uptime | sed 's/.*load/load/')"
echo "base items/s (items / the job's item-loop seconds; wall includes startup and loading):"
for np in 1 2; do
    t0=$(now)
    ds "$np" eval --model "$dir/base.h5" --task "$task" --limit "$LIMIT" --json "$dir/base$np.json" --quiet > /dev/null
    t1=$(now)
    $PY - "$dir/base$np.json" "$t0" "$t1" "$np" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = r["tasks"][0]["n"]; wall = float(sys.argv[3]) - float(sys.argv[2])
print("  %s rank(s): %d items, loop %.2f s = %.1f items/s; wall %.2f s = %.1f items/s"
      % (sys.argv[4], n, r["seconds"], n / r["seconds"], wall, n / wall))
PY
done

echo "16 deltas at $NP ranks:"
t0=$(now)
ds "$NP" eval --model "$dir/base.h5" --delta-list "$dir/deltas.txt" --task "$task" --limit "$LIMIT" \
    --csv "$dir/one.csv" --quiet > /dev/null
t1=$(now)
i=0
while read -r d; do
    ds "$NP" eval --model "$dir/base.h5" --delta "$d" --task "$task" --limit "$LIMIT" --csv "$dir/sep$i.csv" \
        --quiet > /dev/null
    i=$((i + 1))
done < "$dir/deltas.txt"
t2=$(now)
# the same rows either way (header once)
for k in $(seq 0 15); do sed 1d "$dir/sep$k.csv"; done > "$dir/sep.rows"
sed 1d "$dir/one.csv" | cmp -s - "$dir/sep.rows" || { echo "one job and separate jobs differ"; exit 1; }
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$LIMIT" 'BEGIN {
    one = b - a; sep = c - b
    printf "  one job (--delta-list): %.2f s (%.1f items/s)\n", one, 16 * n / one
    printf "  16 separate jobs:       %.2f s (%.1f items/s)\n", sep, 16 * n / sep
    printf "  ratio %.2fx (goal >= 3x): %s\n", sep / one, (sep >= 3 * one) ? "met" : "NOT met" }'
echo "load after: $(uptime | sed 's/.*load/load/')"
