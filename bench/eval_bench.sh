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
# Knobs: LIMIT=100, NP=2, STEPS=20, BENCH_DIR (scratch, removed afterwards),
# SKIP_DELTAS=1 (only the base runs).
# Scoring with a shared prefix (issue 14, docs/eval.md): with OLD=DIR (the
# build directory of commit 20a0a0b, e.g. a `git worktree` of it, configured
# and built) the base's items/s at 1 and NP ranks is also measured with that
# build and with this build's reference twin (DS_EVAL_PREFIX=0: one forward
# of the whole sequences), interleaved, REPS=3 times each; MC1/MC2 must match.
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
if [ -z "${SKIP_DELTAS:-}" ]; then
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
fi

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

if [ -n "${OLD:-}" ]; then
    echo "== prefix scoring vs $OLD (commit 20a0a0b) and DS_EVAL_PREFIX=0, $LIMIT items, best of ${REPS:=3}"
    "$OLD/deltasoup" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" \
        -o "$dir/base-old.h5" --quiet > /dev/null
    for np in 1 "$NP"; do
        for r in $(seq "$REPS"); do
            $MPIEXEC -n "$np" "$OLD/deltasoup" eval --model "$dir/base-old.h5" --task "$task" --limit "$LIMIT" \
                --json "$dir/old$np-$r.json" --quiet < /dev/null > /dev/null
            DS_EVAL_PREFIX=0 ds "$np" eval --model "$dir/base.h5" --task "$task" --limit "$LIMIT" \
                --json "$dir/twin$np-$r.json" --quiet > /dev/null
            ds "$np" eval --model "$dir/base.h5" --task "$task" --limit "$LIMIT" --json "$dir/new$np-$r.json" \
                --quiet > /dev/null
        done
        $PY - "$dir" "$np" "$REPS" <<'PY'
import json, sys
d, np, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {k: [json.load(open("%s/%s%s-%d.json" % (d, k, np, r))) for r in range(1, reps + 1)] for k in ("old", "twin", "new")}
best = {k: min(x["seconds"] for x in v) for k, v in runs.items()}
n = runs["new"][0]["tasks"][0]["n"]
print("  %s rank(s): 20a0a0b %.1f items/s, twin %.1f, prefix %.1f: %.2fx 20a0a0b (goal >= 2x), %.2fx the twin"
      % (np, n / best["old"], n / best["twin"], n / best["new"], best["old"] / best["new"], best["twin"] / best["new"]))
for k in ("old", "twin", "new"):
    print("    %-4s %s" % (k, " ".join("%s=%.6f" % (m["metric"], m["value"]) for m in runs[k][0]["results"])))
PY
    done
fi
[ -n "${SKIP_DELTAS:-}" ] && exit 0

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
