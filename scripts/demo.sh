#!/usr/bin/env bash
# The main pipeline on the shipped real model (stories260K), end to end:
# import -> inspect -> export -> generate -> eval -> finetune (two users)
# -> compress -> inspect delta -> apply -> eval with the delta on the fly.
# Installs what is missing, builds, then runs everything with 2 MPI ranks.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${DEMO_OUT:-$top/demo-out}
np=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none

bash scripts/setup.sh
if [ ! -x build/deltasoup ] || [ -n "${REBUILD:-}" ]; then
    autoreconf -fi >/dev/null
    mkdir -p build
    (cd build && "$top/configure" -q && make -j"$(nproc)" >/dev/null)
else
    make -C build -j"$(nproc)" >/dev/null
fi
ds() { echo "+ deltasoup $*" >&2; mpiexec -n "$np" "$top/build/deltasoup" "$@"; }
has() { "$top/build/deltasoup" --help | grep -q "^  $1 "; }

rm -rf "$out"; mkdir -p "$out"
model=data/models/stories260K
ds import --from llama2c $model/stories260K.bin --tokenizer $model/tok512.bin -o "$out/base.h5"
ds inspect "$out/base.h5" | head -n 20
if has export; then
    ds export --to safetensors "$out/base.h5" -o "$out/base.safetensors"
    ds inspect "$out/base.safetensors" | tail -n 3
fi
if has generate; then
    ds generate --model "$out/base.h5" --prompt "Once upon a time" --max-tokens 60 --temperature 0
fi
if has eval; then
    ds eval --model "$out/base.h5" --ppl data/lm_corpus/tinystories_valid_fragment.txt --seq-len 256
fi
if has finetune && has compress; then
    # Two users fine-tune on text unlike TinyStories: MT-Bench and TruthfulQA questions.
    /usr/bin/python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
with open("data/benchmarks/mt_bench/question.jsonl") as f, open(out + "/user_mtbench.txt", "w") as g:
    for line in f:
        g.write(" ".join(json.loads(line)["turns"]) + "\n\n")
with open("data/benchmarks/truthfulqa/TruthfulQA.csv", encoding="utf-8-sig") as f, open(out + "/user_tqa.txt", "w") as g:
    for row in csv.DictReader(f):
        g.write(row["Question"] + " " + row["Best Answer"] + "\n\n")
PY
    for u in mtbench tqa; do
        ds finetune --base "$out/base.h5" --data "$out/user_$u.txt" -o "$out/ft_$u.h5" --steps 100 --seed 1
        ds compress --base "$out/base.h5" --finetuned "$out/ft_$u.h5" -o "$out/$u.bd.h5" --owner "$u"
        ds inspect "$out/$u.bd.h5" | tail -n 4
    done
    if has apply; then
        ds apply --base "$out/base.h5" --delta "$out/mtbench.bd.h5" -o "$out/mtbench_applied.h5"
    fi
    ds eval --model "$out/ft_mtbench.h5" --ppl "$out/user_mtbench.txt" --seq-len 128
    ds eval --model "$out/base.h5" --delta "$out/mtbench.bd.h5" --ppl "$out/user_mtbench.txt" --seq-len 128
    ds eval --model "$out/base.h5" --ppl "$out/user_mtbench.txt" --seq-len 128
fi
echo "demo: done; outputs in $out"
