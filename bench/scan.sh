#!/bin/sh
# Anomaly report figures (docs/scan.md): `deltasoup scan` against every attack
# of `deltasoup poison`.
#   (a) synthetic: HONEST deltas of stories260K made as bench/robustness.sh's
#       synthetic set is (noisy copies of one truth: each sign flipped with
#       probability NOISE, scales times 1 + k/8), here from one compressed
#       fine-tune by tests/python/scan_ref.py make (scan checks the base, so
#       the deltas must be of a real one) + POISON poisoned ones per attack:
#       one scan per attack (the honest + that attack's), each checked against
#       the numpy reference (scan_ref.py check).
#   (b) real (REAL=1): USERS fine-tunes of stories260K on slices of TruthfulQA
#       (as bench/robustness.sh (b)), compressed to 1 bit: a scan of the honest
#       alone, then honest + REAL_POISON poisoned per attack.
# Prints per scan: honest flagged / honest, the largest z of an honest delta
# (on the side its rule looks at: |z| of log norm, -z of cosine and agreement,
# z of Krum), poisoned flagged / poisoned, the smallest over the poisoned of
# their largest z, and the rules that fired with their counts.
# usage: bench/scan.sh [OUT]   (run from a build directory, or set DELTASOUP)
# env: SYN=1 HONEST=70 POISON=30 NOISE=0.1 ATTACKS="sign-flip scale gaussian alie ipm" REAL=1
#      USERS=10 REAL_POISON=3 REAL_ATTACKS="sign-flip:10 scale gaussian alie ipm" STEPS=30 NP=1
set -eu
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}" "${top_builddir:=.}" "${PYTHON3:=/usr/bin/python3}"
: "${DELTASOUP:=$top_builddir/deltasoup}" "${MPIEXEC:=mpiexec}" "${NP:=1}"
: "${SYN:=1}" "${HONEST:=70}" "${POISON:=30}" "${NOISE:=0.1}" "${ATTACKS:=sign-flip scale gaussian alie ipm}"
: "${REAL:=1}" "${USERS:=10}" "${REAL_POISON:=3}" "${REAL_ATTACKS:=sign-flip:10 scale gaussian alie ipm}" "${STEPS:=30}"
out=${1:-scan.out}
ref="$top_srcdir/tests/python/scan_ref.py"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

ds() {
    if [ "$NP" -gt 1 ]; then $MPIEXEC -n "$NP" "$DELTASOUP" "$@"; else "$DELTASOUP" "$@"; fi
}
# summary REPORT.json LABEL: one line of counts
summary() {
    "$PYTHON3" - "$1" "$2" << 'EOF'
import collections, json, sys
rep = json.load(open(sys.argv[1]))
d = rep["deltas"]
hon = [x for x in d if not x["owner"].startswith("poison-")]
poi = [x for x in d if x["owner"].startswith("poison-")]
rules = collections.Counter(r for x in poi for r in x["reasons"])
hrules = collections.Counter(r for x in hon for r in x["reasons"])
fmt = lambda c: " ".join("%s:%d" % kv for kv in sorted(c.items())) or "-"
# the largest |z| of the honest (the side a rule looks at) and, per poisoned delta, its largest
side = {"norm": lambda z: abs(z), "cosine_median": lambda z: -z, "sign_agreement": lambda z: -z, "krum_score": lambda z: z}
big = lambda x: max(side[k](x["z"][k]) if x["z"][k] is not None else float("inf") for k in side)
print("| %s | %d/%d | %.2f | %s | %s | %s | %s |" % (sys.argv[2], sum(x["flagged"] for x in hon), len(hon),
      max(big(x) for x in hon), "%d/%d" % (sum(x["flagged"] for x in poi), len(poi)) if poi else "-",
      "%.1f" % min(big(x) for x in poi) if poi else "-", fmt(hrules), fmt(rules)))
EOF
}
# scan_set DIR LABEL REPORT FILES...
scan_set() {
    dir=$1 label=$2 rep=$3
    shift 3
    ds scan --base "$dir/base.h5" --json "$rep" --quiet "$@" > "$rep.txt" || { cat "$rep.txt" >&2; exit 1; }
    summary "$rep" "$label" >> "$dir/table.md"
}
header() {
    printf '| set | honest flagged | honest max z | poisoned flagged | poisoned min z | rules (honest) | rules (poisoned) |\n' > "$1/table.md"
    printf '| --- | --- | --- | --- | --- | --- | --- |\n' >> "$1/table.md"
}

t0=$(date +%s)
rm -rf "$out"
mkdir -p "$out/syn"
syn=$(cd "$out/syn" && pwd)
model="$top_srcdir/data/models/stories260K"
ds import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$syn/base.h5" --quiet > /dev/null
if [ "$SYN" = 1 ]; then
    "$PYTHON3" "$top_srcdir/tests/python/bitdelta_ref.py" perturb "$syn/base.h5" "$syn/ft.h5" 1
    ds compress --base "$syn/base.h5" --finetuned "$syn/ft.h5" -o "$syn/template.bd.h5" --scale row --quiet > /dev/null
    "$PYTHON3" "$ref" make "$syn/template.bd.h5" "$syn/honest" "$HONEST" --noise "$NOISE"
    honest=$(ls "$syn"/honest/honest*.bd.h5)
    header "$syn"
    scan_set "$syn" "honest only" "$syn/none.json" $honest
    "$PYTHON3" "$ref" check "$syn/none.json" > /dev/null || rc=1
    for a in $ATTACKS; do
        ds poison --attack "$a" --count "$POISON" --seed 1 -o "$syn/poison" --quiet $honest > /dev/null
        scan_set "$syn" "$a" "$syn/$a.json" $honest "$syn/poison/$a"-*.bd.h5
        "$PYTHON3" "$ref" check "$syn/$a.json" > /dev/null || rc=1
    done
    echo "== (a) synthetic: $HONEST honest (noise $NOISE) + $POISON poisoned per attack: $(($(date +%s) - t0)) s"
    cat "$syn/table.md"
fi

if [ "$REAL" = 1 ]; then
    t1=$(date +%s)
    mkdir -p "$out/real"
    r=$(cd "$out/real" && pwd)
    cp "$syn/base.h5" "$r/base.h5"
    "$PYTHON3" "$top_srcdir/bench/robustness.py" slices "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" "$r" "$USERS"
    u=0
    while [ "$u" -lt "$USERS" ]; do
        ds finetune --base "$r/base.h5" --data "$r/user$u.txt" -o "$r/ft$u.h5" --steps "$STEPS" --lr 5e-4 \
            --seq-len 64 --seed $((u + 1)) --quiet
        ds compress --base "$r/base.h5" --finetuned "$r/ft$u.h5" -o "$r/user$u.bd.h5" --owner "user$u" \
            --quiet > /dev/null
        u=$((u + 1))
    done
    honest=$(ls "$r"/user*.bd.h5)
    header "$r"
    scan_set "$r" "honest only" "$r/none.json" $honest
    "$PYTHON3" "$ref" check "$r/none.json" > /dev/null || rc=1
    for spec in $REAL_ATTACKS; do
        a=${spec%%:*}
        strength=""
        [ "$a" != "$spec" ] && strength="--strength ${spec#*:}"
        ds poison --attack "$a" --count "$REAL_POISON" $strength -o "$r/poison" --quiet $honest > /dev/null
        scan_set "$r" "$spec" "$r/$a.json" $honest "$r/poison/$a"-*.bd.h5
        "$PYTHON3" "$ref" check "$r/$a.json" > /dev/null || rc=1
    done
    echo
    echo "== (b) stories260K fine-tunes: $USERS users, $STEPS steps each, + $REAL_POISON poisoned per attack" \
        "(:strength): $(($(date +%s) - t1)) s"
    cat "$r/table.md"
fi
echo "total: $(($(date +%s) - t0)) s on $NP rank(s); $(uptime)"
exit "${rc:-0}"
