#!/usr/bin/env bash
# The whole pipeline on the shipped real model (stories260K), end to end, with
# 2 MPI ranks (NP=...):
#   import -> inspect -> export (safetensors) -> generate -> eval
#   -> finetune five users (one with DP-SGD) -> compress -> fit-scales (KL) -> inspect delta
#   -> apply -> sign -> aggregate (trusted keys, multi-krum) -> eval tasks
#   (perplexity, TruthfulQA MC, refusal, XSTest) for base, users and soup -> gate
#   -> report (the night as the nightly soup script would record it: report.html)
# Installs what is missing, builds, then runs. Outputs in demo-out/ (DEMO_OUT=...).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${DEMO_OUT:-$top/demo-out}
np=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none

bash scripts/setup.sh
if [ ! -f build/Makefile ]; then
    autoreconf -fi >/dev/null
    mkdir -p build
    (cd build && "$top/configure" -q)
fi
make -C build -j"$(nproc)" >/dev/null
t0=$(date +%s)
# Each section is a step of the report's timings (seconds; the peak RSS of
# its runs by /usr/bin/time when there is one).
step="" step_t0=$(date +%s.%N)
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -a -f %M -o "$out/.rss.txt")
end_step() {
    [ -n "$step" ] || return 0
    local m
    m=$(grep -hx '[0-9][0-9]*' "$out/.rss.txt" 2>/dev/null | sort -n | tail -n 1 || true)
    printf '%s\t%s\t%s\n' "$step" "$(awk -v a="$step_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')" \
        "${m:-null}" >>"$out/timings.tsv"
    rm -f "$out/.rss.txt"
}
section() {
    end_step
    step=$1 step_t0=$(date +%s.%N)
    printf '\n==== %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"
}
ds() { echo "+ deltasoup $*" >&2; "${timer[@]}" mpiexec -n "$np" "$top/build/deltasoup" "$@"; }

rm -rf "$out"; mkdir -p "$out"
model=data/models/stories260K
bench=data/benchmarks

section "import the shipped llama2.c model into an HDF5 checkpoint"
ds import --from llama2c $model/stories260K.bin --tokenizer $model/tok512.bin -o "$out/base.h5"
ds inspect "$out/base.h5" > "$out/base.inspect.txt"
sed -n '1,16p;$p' "$out/base.inspect.txt"

section "export to safetensors (bit-exact round trip)"
ds export --to safetensors "$out/base.h5" -o "$out/base.safetensors"
ds import --from safetensors "$out/base.safetensors" -o "$out/base_rt.h5" --quiet
ds inspect --json "$out/base.h5" > "$out/a.json"; ds inspect --json "$out/base_rt.h5" > "$out/b.json"
/usr/bin/python3 -c 'import json,sys; a,b=(json.load(open(f))["content_sha256"] for f in sys.argv[1:]); print("round trip content hash:", a, "same" if a==b else "DIFFERENT"); sys.exit(a!=b)' "$out/a.json" "$out/b.json"

section "generate and perplexity of the base"
ds generate --model "$out/base.h5" --prompt "Once upon a time" --max-tokens 60 --temperature 0
ds eval --model "$out/base.h5" --ppl data/lm_corpus/tinystories_valid_fragment.txt --seq-len 256

section "five users fine-tune on text unlike TinyStories"
/usr/bin/python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
with open("data/benchmarks/mt_bench/question.jsonl") as f, open(out + "/user_mtbench.txt", "w") as g:
    for line in f:
        g.write(" ".join(json.loads(line)["turns"]) + "\n\n")
rows = list(csv.DictReader(open("data/benchmarks/truthfulqa/TruthfulQA.csv", encoding="utf-8-sig")))
# four more users, each on a quarter of TruthfulQA
for q, name in enumerate(["tqa", "tqa2", "tqa3", "tqa4"]):
    with open(out + "/user_%s.txt" % name, "w") as g:
        for r in rows[q * len(rows) // 4:(q + 1) * len(rows) // 4]:
            g.write(r["Question"] + " " + r["Best Answer"] + "\n\n")
PY
users="mtbench tqa tqa2 tqa3 tqa4"
for u in $users; do
    # tqa4 fine-tunes with DP-SGD (docs/privacy.md): its delta carries the epsilon the
    # toolkit computed (dp_epsilon), which the night's report shows in its contributors table
    dp=()
    [ "$u" = tqa4 ] && dp=(--dp --target-epsilon 8 --max-grad-norm 1)
    ds finetune --base "$out/base.h5" --data "$out/user_$u.txt" -o "$out/ft_$u.h5" --steps 100 --seed 1 --quiet ${dp[@]+"${dp[@]}"}
done

section "BitDelta: compress each fine-tune to 1 bit + scales, fit the scales (KL)"
for u in $users; do
    ds compress --base "$out/base.h5" --finetuned "$out/ft_$u.h5" -o "$out/$u.raw.bd.h5" --owner "$u" --quiet
    ds fit-scales --base "$out/base.h5" --finetuned "$out/ft_$u.h5" --delta "$out/$u.raw.bd.h5" \
        --calib "$out/user_$u.txt" -o "$out/$u.bd.h5" --steps 50 --lr 1e-3 --samples 200 \
        --report "$out/$u.fit.json" --quiet
done
ds inspect "$out/mtbench.bd.h5" > "$out/mtbench.inspect.txt"; tail -n 6 "$out/mtbench.inspect.txt"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("fit-scales report:", json.dumps(r, indent=1)[:1200])' "$out/mtbench.fit.json"
ds apply --base "$out/base.h5" --delta "$out/mtbench.bd.h5" -o "$out/mtbench_applied.h5"

section "perplexity on the user's domain: base, fine-tune, 1-bit delta on the fly"
ds eval --model "$out/base.h5" --ppl "$out/user_mtbench.txt" --seq-len 128
ds eval --model "$out/ft_mtbench.h5" --ppl "$out/user_mtbench.txt" --seq-len 128
ds eval --model "$out/base.h5" --delta "$out/mtbench.bd.h5" --ppl "$out/user_mtbench.txt" --seq-len 128

section "DeltaSoup: users sign; two attackers join; trusted keys + multi-krum keep them out"
ds keygen -o "$out/alice.key"
honest=""
for u in $users; do
    ds sign --key "$out/alice.key" "$out/$u.bd.h5"
    honest="$honest $out/$u.bd.h5"
done
cp "$out/alice.key.pub" "$out/trusted.keys"
# Two sign-flip attackers (-4 x the honest mean): one unsigned (the trust
# filter drops it), one insider holding a trusted key (Krum must reject it).
ds poison --attack sign-flip --count 2 --strength 4 -o "$out/attack" $honest
ds sign --key "$out/alice.key" "$out/attack/sign-flip-0.bd.h5"
ds aggregate --method multi-krum --byzantine 1 --trusted-keys "$out/trusted.keys" \
    -o "$out/soup.bd.h5" --report "$out/soup.json" $honest "$out/attack/sign-flip-0.bd.h5" "$out/attack/sign-flip-1.bd.h5"
/usr/bin/python3 - "$out/soup.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [c for c in r["contributors"] if c["owner"].startswith("poison-") and c["weight"] > 0]
print("attackers with weight > 0 in the soup:", len(bad))
sys.exit(1 if bad else 0)
PY

section "evaluation tasks: base, each user and the soup"
printf '%s\n' base "$out/mtbench.bd.h5" "$out/tqa.bd.h5" "$out/soup.bd.h5" > "$out/deltas.txt"
ds eval --model "$out/base.h5" --delta-list "$out/deltas.txt" \
    --task ppl:data/lm_corpus/tinystories_valid_fragment.txt \
    --task truthfulqa-mc:$bench/truthfulqa/data/mc_task.json \
    --task refusal:$bench/advbench/harmful_behaviors.csv --task xstest:$bench/xstest/xstest_prompts.csv \
    --limit 40 --max-tokens 24 --json "$out/eval.json" --csv "$out/eval.csv"

section "safety gate: the soup against the base"
ds eval --model "$out/base.h5" --task ppl:data/lm_corpus/tinystories_valid_fragment.txt \
    --task truthfulqa-mc:$bench/truthfulqa/data/mc_task.json --limit 40 --json "$out/gate_base.json" --quiet
ds eval --model "$out/base.h5" --delta "$out/soup.bd.h5" --task ppl:data/lm_corpus/tinystories_valid_fragment.txt \
    --task truthfulqa-mc:$bench/truthfulqa/data/mc_task.json --limit 40 --json "$out/gate_soup.json" --quiet
set +e
"$top/build/deltasoup" gate --baseline "$out/gate_base.json" --candidate "$out/gate_soup.json" >"$out/gate.txt"
rc=$?
set -e
cat "$out/gate.txt"
echo "gate exit code: $rc (0 pass, 1 the soup is worse than the base on some metric)"

section "the night's report: one HTML page with the contributors, charts, metrics and timings"
# The history folder as slurm/nightly-soup.sbatch leaves it (docs/report.md):
# one night, the gate's verdict as its status.
night="$out/history/$(date +%F)"
mkdir -p "$night"
cp "$out/soup.json" "$night/aggregate.json"
cp "$out/gate_base.json" "$night/baseline.json"
cp "$out/gate_soup.json" "$night/candidate.json"
cp "$out/gate.txt" "$night/gate.txt"
k=0
for d in $honest "$out/attack/sign-flip-0.bd.h5" "$out/attack/sign-flip-1.bd.h5"; do
    k=$((k + 1))
    ds inspect --json "$d" >"$night/inspect-$k.json"
done
end_step
step=""
/usr/bin/python3 - "$night" "$rc" "$out/timings.tsv" <<'PY'
import glob, json, os, sys
night, rc, tsv = sys.argv[1], int(sys.argv[2]), sys.argv[3]
agg = json.load(open(night + "/aggregate.json"))
timings = []
for line in open(tsv):
    s, sec, m = line.rstrip("\n").split("\t")
    timings.append({"step": s, "seconds": float(sec), "peak_rss_kb": None if m == "null" else int(m)})
peaks = [t["peak_rss_kb"] for t in timings if t["peak_rss_kb"] is not None]
n_rej = sum(1 for c in agg["contributors"] if c["status"] != "used")
rec = {"format": "deltasoup.night", "format_version": 1, "date": os.path.basename(night), "job": "demo",
       "status": "published" if rc == 0 else "refused", "step": "publish" if rc == 0 else "gate",
       "message": "scripts/demo.sh: the soup against the base" + ("" if rc == 0 else ", refused by the gate"),
       "method": agg["method"], "reference": "soup.bd.h5" if rc == 0 else None, "baseline_ref": "base",
       "collected": len(agg["contributors"]), "accepted": len(agg["contributors"]), "rejected": n_rej,
       "gate_rule": {"min_ratio": 0.95, "abs_slack": 0.01, "se_slack": 0}, "gate_exit": rc,
       "files": {"aggregate": "aggregate.json", "baseline": "baseline.json", "candidate": "candidate.json",
                 "gate": "gate.txt", "inspect": sorted((os.path.basename(f) for f in glob.glob(night + "/inspect-*.json")),
                                                       key=lambda f: int(f[8:-5]))},
       "filter_rejected": [], "timings": timings, "peak_rss_kb": max(peaks) if peaks else None}
json.dump(rec, open(night + "/night.json", "w"), indent=1)
PY
ds report --history "$out/history" -o "$out/report.html" --overwrite
echo "report: $out/report.html"
section "demo: done; outputs in $out"
