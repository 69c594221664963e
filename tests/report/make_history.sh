#!/bin/sh
# A 3-night history made by slurm/nightly-soup.sbatch itself (srun stood in
# by a script that runs the command once, so no cluster is needed; the
# script under a real Slurm cluster is tests/slurm/test_nightly.sh), and the
# page it writes for each night (deltasoup report), checked against the
# JSON of the history by check_report.py:
#  1. four users (one owner is HTML: "<b>eve</b> & \"co\"") by multi-krum: published;
#  2. the users, a scaled copy (poison --attack scale) and a damaged file:
#     the damaged one is rejected by the filter, multi-krum flags the scaled
#     one (weight 0), published;
#  3. three users and two scaled copies averaged by plain mean: the gate
#     refuses the night, nothing is published, the report says so.
# About 35 s (some 70 program starts), so not in make check: run by hand from
# a build folder, `sh ../tests/report/make_history.sh [DIR]`; with DIR it
# also writes the history there with its folders' paths made relative and
# the inspect records cut to what the report reads (the fixture
# tests/report/data/history that tests/report/history.sh and render.sh read).
. "$(dirname "$0")/../defaults.sh"
PY=$PYTHON3
"$PY" -c 'import html.parser' 2>/dev/null || { echo "SKIP: no $PY"; exit 77; }
w=$(mktemp -d "${TMPDIR:-/tmp}/ds-report-nightly.XXXXXX") || exit 99
trap 'rm -rf "$w"' EXIT
cd "$w" || exit 99
fail() { echo "FAIL: $*"; exit 1; }
m=$top_srcdir/data/models/stories260K c=$top_srcdir/data/lm_corpus
"$DELTASOUP" import --from llama2c "$m/stories260K.bin" --tokenizer "$m/tok512.bin" -o base.h5 --quiet >/dev/null ||
    fail "import"
head -c 3000 "$c/tinystories_valid_fragment.txt" >valid.txt
owners="user1 user2 <b>eve</b>&\"co\" user4"
i=1
for o in user1 user2 '<b>eve</b> & "co"' user4; do
    tail -c +$((i * 5000)) "$c/tinystories_train_excerpt.txt" | head -c 5000 >t$i.txt
    "$DELTASOUP" finetune --base base.h5 --data t$i.txt -o ft$i.h5 --steps 4 --batch 4 --seq-len 64 --lr 3e-4 \
        --seed $i --quiet >/dev/null || fail "finetune $i"
    "$DELTASOUP" compress --base base.h5 --finetuned ft$i.h5 -o d$i.bd.h5 --owner "$o" --quiet >/dev/null ||
        fail "compress $i"
    i=$((i + 1))
done
"$DELTASOUP" poison --attack scale --count 2 --strength 60 -o bad d1.bd.h5 d2.bd.h5 --quiet >/dev/null || fail "poison"

mkdir inbox bin
for i in 1 2 3 4; do cp d$i.bd.h5 inbox/n1_u$i.bd.h5; done
for i in 1 2 3 4; do cp d$i.bd.h5 inbox/n2_u$i.bd.h5; done
cp bad/scale-0.bd.h5 inbox/n2_scaled.bd.h5
head -c 3000 d1.bd.h5 >inbox/n2_damaged.bd.h5
for i in 1 2 3; do cp d$i.bd.h5 inbox/n3_u$i.bd.h5; done
cp bad/scale-0.bd.h5 inbox/n3_s0.bd.h5
cp bad/scale-1.bd.h5 inbox/n3_s1.bd.h5
touch -d "2026-03-01 09:00" inbox/n1_*
touch -d "2026-03-02 09:00" inbox/n2_*
touch -d "2026-03-03 09:00" inbox/n3_*
cat >bin/srun <<'EOF'
#!/bin/sh
# srun stand-in: drop srun's options, run the command once
while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done
exec "$@"
EOF
chmod +x bin/srun
night() # night DAY [VAR=value...]
{
    (
        export PATH="$w/bin:$PATH" DS_BASE=$w/base.h5 DS_INBOX=$w/inbox DS_PUBLISH=$w/soup DS_EVAL_TEXT=$w/valid.txt \
            DS_SEQ_LEN=128 DS_WORK=$w/scratch DS_DATE=$1 DELTASOUP
        shift
        for a in "$@"; do export "$a"; done
        bash "$top_srcdir/slurm/nightly-soup.sbatch" >night-$DS_DATE.log 2>&1
    )
}
night 2026-03-01 DS_METHOD=multi-krum DS_BYZANTINE=0 || fail "night 1: $(tail -n 3 night-2026-03-01.log)"
night 2026-03-02 DS_METHOD=multi-krum DS_BYZANTINE=1 || fail "night 2: $(tail -n 3 night-2026-03-02.log)"
if night 2026-03-03 DS_METHOD=mean; then fail "night 3 was not refused: $(tail -n 3 night-2026-03-03.log)"; fi
cat night-2026-03-03.log
grep -q "ds-nightly-soup: FAILED job=none date=2026-03-03 step=gate" night-2026-03-03.log || fail "night 3: not refused by the gate"
grep -q "report: could not" night-*.log && fail "a report step failed: $(grep 'report: could not' night-*.log)"
[ "$(readlink soup/latest)" = reference-2026-03-02.bd.h5 ] || fail "latest -> $(readlink soup/latest)"
for d in 2026-03-01 2026-03-02 2026-03-03; do
    [ -s soup/report-$d.html ] || fail "no soup/report-$d.html"
done
"$PY" - soup/history <<'PYEOF' || fail "night records"
import json, sys
h = sys.argv[1]
st = [json.load(open("%s/%s/night.json" % (h, d)))["status"] for d in ("2026-03-01", "2026-03-02", "2026-03-03")]
assert st == ["published", "published", "refused"], st
n2 = json.load(open(h + "/2026-03-02/night.json"))
assert [r["path"].rsplit("/", 1)[1] for r in n2["filter_rejected"]] == ["n2_damaged.bd.h5"], n2["filter_rejected"]
agg = json.load(open(h + "/2026-03-02/aggregate.json"))
scaled = [c for c in agg["contributors"] if c["owner"].startswith("poison-")]
assert len(scaled) == 1 and scaled[0]["weight"] == 0, scaled
assert [t["step"] for t in n2["timings"]] == ["setup", "collect", "filter", "aggregate", "eval", "gate", "publish"], n2["timings"]
print("nights: published, published, refused; night 2 filtered the damaged file, multi-krum gave the scaled one weight 0")
PYEOF
for d in 2026-03-01 2026-03-02 2026-03-03; do
    "$PY" "$top_srcdir/tests/report/check_report.py" soup/report-$d.html soup/history $d || fail "report of $d"
done
# The refused night's page says so, and the owner's HTML is text, not markup.
grep -q '<span class="refused">refused</span>' soup/report-2026-03-03.html || fail "night 3's page does not say refused"
grep -q '&lt;b&gt;eve&lt;/b&gt; &amp; &quot;co&quot;' soup/report-2026-03-01.html || fail "the owner's HTML is not escaped"
grep -q '<b>eve' soup/report-2026-03-01.html && fail "the owner's HTML is in the page as markup"
if [ -n "${1:-}" ]; then
    rm -rf "$1" && mkdir -p "$1" && cp -r soup/history/. "$1/" || fail "cannot write $1"
    "$PY" - "$1" "$w/" <<'PYEOF' || fail "fixture"
import glob, json, os, sys
out, prefix = sys.argv[1], sys.argv[2]
for f in glob.glob(out + "/*/*"):
    t = open(f).read().replace(prefix, "")
    if os.path.basename(f).startswith("inspect-"):
        j = json.loads(t)
        j = {"file": j["file"], "owner": j["owner"], "dp": j["dp"], "content_sha256": j["content_sha256"],
             "tensors": [{k: x[k] for k in ("name", "shape", "mean", "std")} for x in j["tensors"]]}
        t = json.dumps(j, indent=1) + "\n"
    open(f, "w").write(t)
PYEOF
    echo "history written to $1"
fi
echo "PASS: three nights by nightly-soup.sbatch, a report per night matching the history"
