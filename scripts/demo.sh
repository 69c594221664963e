#!/usr/bin/env bash
# The whole pipeline on the shipped real model (stories260K), end to end, with
# 2 MPI ranks (NP=...):
#   import -> inspect -> export (safetensors) -> generate -> eval
#   -> finetune three users -> compress -> fit-scales (KL) -> inspect delta
#   -> apply -> sign -> aggregate (trusted keys, multi-krum) -> eval tasks
#   (perplexity, TruthfulQA MC, refusal, XSTest) for base, users and soup -> gate
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
section() { printf '\n==== %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
ds() { echo "+ deltasoup $*" >&2; mpiexec -n "$np" "$top/build/deltasoup" "$@"; }

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
    ds finetune --base "$out/base.h5" --data "$out/user_$u.txt" -o "$out/ft_$u.h5" --steps 100 --seed 1 --quiet
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
"$top/build/deltasoup" gate --baseline "$out/gate_base.json" --candidate "$out/gate_soup.json"
rc=$?
set -e
echo "gate exit code: $rc (0 pass, 1 the soup is worse than the base on some metric)"
section "demo: done; outputs in $out"
