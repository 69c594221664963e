#!/bin/sh
# nightly-soup.sbatch over three nights, submitted with the options of
# slurm/nightly-soup.scrontab (Debian's Slurm ships no scrontab command, so
# the test reads the #SCRON lines and submits them as scrontab would):
#  1. three users' real fine-tunes: published as reference-<day> + latest;
#  2. four users plus a poisoned delta (a real fine-tune on noise at a high
#     learning rate: alone it multiplies the perplexity by >100) and a
#     damaged file: the damaged one is rejected by the filter, the poisoned
#     one gets no weight, and the soup stays as good as night 1's;
#  3. the evaluation step fails: nothing is published, latest stays on 2.
# Nights 2 and 3 are queued together: singleton must hold 3 back until 2 ends.
# aggregate.sbatch runs once on its own too (and once with no deltas).
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
. "$top_srcdir/tests/slurm/fixtures.sh"
ds_need_jobs import finetune compress apply eval inspect aggregate gate
# gate reads the results file of eval --json OUT (the --task form of eval).
ds_need_option eval --task
ds_cluster_start
w=$DS_CLUSTER_DIR/work
ds_fixtures "$w" 4
cd "$w" || exit 99
S=$top_srcdir/slurm
PY=$PYTHON3

mkdir inbox soup
for i in 1 2 3 4; do
    "$DELTASOUP" compress --base base.h5 --finetuned ft$i.h5 -o d$i.bd.h5 --owner user$i --quiet >/dev/null ||
        ds_cluster_fail "compress $i"
done
head -c 4000 /dev/urandom | od -An -tx1 >noise.txt
"$DELTASOUP" finetune --base base.h5 --data noise.txt -o poison.h5 --steps 10 --batch 4 --seq-len 64 \
    --lr 0.05 --seed 9 --quiet >/dev/null || ds_cluster_fail "poison finetune"
"$DELTASOUP" compress --base base.h5 --finetuned poison.h5 -o poison.bd.h5 --owner mallory --quiet >/dev/null ||
    ds_cluster_fail "poison compress"
ppl_of() # ppl_of DELTA: perplexity of base + DELTA on valid.txt, a plain run
{
    "$DELTASOUP" apply --base base.h5 --delta "$1" -o m.h5 --overwrite --quiet >/dev/null &&
        "$DELTASOUP" eval --model m.h5 --ppl valid.txt --seq-len 128 --json --quiet |
        sed -n 's/.*"ppl": *\([-0-9.eE+]*\).*/\1/p'
}
base_ppl=$("$DELTASOUP" eval --model base.h5 --ppl valid.txt --seq-len 128 --json --quiet | sed -n 's/.*"ppl": *\([-0-9.eE+]*\).*/\1/p')
poison_ppl=$(ppl_of poison.bd.h5)
awk -v p="$poison_ppl" -v b="$base_ppl" 'BEGIN { exit !(p > 100 * b) }' ||
    ds_cluster_fail "the poisoned delta is not harmful enough to test anything (ppl $poison_ppl, base $base_ppl)"

day1=2026-03-01 day2=2026-03-02 day3=2026-03-03
for i in 1 2 3; do cp d$i.bd.h5 inbox/n1_user$i.bd.h5; done
for i in 1 2 3 4; do cp d$i.bd.h5 inbox/n2_user$i.bd.h5; done
cp poison.bd.h5 inbox/n2_mallory.bd.h5
head -c 3000 d1.bd.h5 >inbox/n2_damaged.bd.h5
for i in 1 2 3; do cp d$i.bd.h5 inbox/n3_user$i.bd.h5; done
touch -d "$day1 09:00" inbox/n1_*
touch -d "$day2 13:00" inbox/n2_*
touch -d "$day3 23:59" inbox/n3_*
cat >nightly.env <<ENV
DS_BASE=$w/base.h5
DS_INBOX=$w/inbox
DS_PUBLISH=$w/soup
DS_EVAL_TEXT=$w/valid.txt
DS_SEQ_LEN=128
DS_WORK=$w/scratch
DELTASOUP=$DELTASOUP
ENV

# The schedule: options from the #SCRON lines, one cron line running the script.
opts=$(sed -n 's/^#SCRON //p' "$S/nightly-soup.scrontab")
echo "$opts" | grep -qx -- '--dependency=singleton' || ds_cluster_fail "scrontab lacks --dependency=singleton"
cron=$(grep -v '^#' "$S/nightly-soup.scrontab" | grep .)
[ "$(echo "$cron" | wc -l)" = 1 ] && echo "$cron" | awk '{ exit !(NF >= 6 && $NF ~ /nightly-soup\.sbatch$/) }' ||
    ds_cluster_fail "scrontab: want one 'm h dom mon dow command' line running nightly-soup.sbatch, got: $cron"
night() # night DAY [VAR=value...]: submit like scrontab, print the job id
{
    (
        export DS_CONFIG="$w/nightly.env" DS_DATE="$1"
        shift
        for a in "$@"; do export "$a"; done
        ds_sbatch $opts --output=%x_%j.out "$S/nightly-soup.sbatch"
    )
}

# aggregate.sbatch on its own, next to night 1: the deltas of a directory,
# at 2 ranks, must give what a plain one-rank aggregate gives.
mkdir agg_in
cp d1.bd.h5 d2.bd.h5 d3.bd.h5 agg_in/
ja=$(DS_OUT=agg.bd.h5 DS_DELTA_DIR=agg_in DS_METHOD=median DS_REPORT=agg.json ds_sbatch "$S/aggregate.sbatch") || exit 99
j1=$(night $day1) || exit 99
"$DELTASOUP" aggregate --method median -o agg_ref.bd.h5 agg_in/d1.bd.h5 agg_in/d2.bd.h5 agg_in/d3.bd.h5 \
    --quiet >/dev/null || ds_cluster_fail "plain aggregate"
st=$(ds_job_wait "$ja" 120) || exit 99
cat ds-aggregate_"$ja".out
[ "$st" = COMPLETED ] || ds_cluster_fail "aggregate.sbatch ended $st"
tail -n 1 ds-aggregate_"$ja".out | grep -q "^ds-aggregate: OK job=$ja restarts=0 deltas=3 out=agg.bd.h5 " ||
    ds_cluster_fail "aggregate.sbatch summary line"
[ -s agg.json ] || ds_cluster_fail "aggregate.sbatch wrote no report"
hash_of() { "$DELTASOUP" inspect "$1" --json | sed -n 's/.*"computed": *"\([0-9a-f]*\)".*/\1/p' | head -n 1; }
[ "$(hash_of agg.bd.h5)" = "$(hash_of agg_ref.bd.h5)" ] || ds_cluster_fail "aggregate at 2 ranks under Slurm differs from 1 rank"
jb=$(DS_OUT=none.bd.h5 DS_DELTA_DIR=empty ds_sbatch "$S/aggregate.sbatch") || exit 99
st=$(ds_job_wait "$jb" 60) || exit 99
[ "$st" = FAILED ] && grep -q "^ds-aggregate: FAILED job=$jb restarts=0 no deltas" ds-aggregate_"$jb".out ||
    ds_cluster_fail "aggregate.sbatch without deltas: $st"

st=$(ds_job_wait "$j1" 180) || exit 99
cat ds-nightly-soup_"$j1".out
[ "$st" = COMPLETED ] || ds_cluster_fail "night 1 ended $st"
[ "$(readlink soup/latest)" = reference-$day1.bd.h5 ] || ds_cluster_fail "night 1: latest -> $(readlink soup/latest)"
"$DELTASOUP" inspect soup/latest >/dev/null || ds_cluster_fail "night 1: the published reference does not verify"
tail -n 1 ds-nightly-soup_"$j1".out | grep -q "^ds-nightly-soup: OK job=$j1 date=$day1 collected=3 accepted=3 rejected=0 " ||
    ds_cluster_fail "night 1 summary line"
# The perplexities the night logged are those of plain runs.
logged=$(tail -n 1 ds-nightly-soup_"$j1".out | sed -n 's/.* baseline_ppl=\([^ ]*\) candidate_ppl=\([^ ]*\) .*/\1 \2/p')
ppl1=$(ppl_of soup/latest)
echo "$logged" | awk -v b="$base_ppl" -v c="$ppl1" '{ exit !(NF == 2 && $1 - b < 1e-5 * b && b - $1 < 1e-5 * b &&
    $2 - c < 1e-5 * c && c - $2 < 1e-5 * c) }' || ds_cluster_fail "night 1 logged ppl '$logged', plain runs $base_ppl $ppl1"

j2=$(night $day2 DS_METHOD=multi-krum DS_BYZANTINE=1) || exit 99
j3=$(night $day3 DS_EVAL_TEXT=$w/missing.txt) || exit 99
# Night 3's state is read before night 2's: night 3 seen started while night 2
# was still not done afterwards means they overlapped (the other order of the
# two reads fails when night 2 ends and night 3 starts between them).
while :; do
    s3=$(ds_job_field "$j3" JobState)
    s2=$(ds_job_field "$j2" JobState)
    [ "$s2" = COMPLETED ] || [ "$s2" = FAILED ] && break
    [ "$s3" = PENDING ] || ds_cluster_fail "night 3 ran ($s3) while night 2 was not done ($s2): singleton ignored"
    sleep 0.5
done
st=$(ds_job_wait "$j2" 180) || exit 99
cat ds-nightly-soup_"$j2".out
[ "$st" = COMPLETED ] || ds_cluster_fail "night 2 ended $st"
[ "$(readlink soup/latest)" = reference-$day2.bd.h5 ] || ds_cluster_fail "night 2: latest -> $(readlink soup/latest)"
tail -n 1 ds-nightly-soup_"$j2".out | grep -q "^ds-nightly-soup: OK job=$j2 date=$day2 collected=6 accepted=5 rejected=1 method=multi-krum " ||
    ds_cluster_fail "night 2 summary line"
grep -q "rejected .*n2_damaged.bd.h5" ds-nightly-soup_"$j2".out || ds_cluster_fail "night 2: damaged delta not named as rejected"
ppl2=$(ppl_of soup/latest)
# Independent of the report: had the poison any real weight the soup would
# be far worse; it must be within 5% of the clean night 1.
awk -v a="$ppl2" -v b="$ppl1" 'BEGIN { exit !(a <= 1.05 * b) }' ||
    ds_cluster_fail "night 2 soup ppl $ppl2 vs night 1 $ppl1: the poisoned delta got through"
# The report names the poisoned delta with weight 0 (or not selected), and its
# anomaly report ("deltas") flags it.
"$PY" - soup/reference-$day2.json <<'PYEOF' || ds_cluster_fail "night 2: the aggregate report does not give the poisoned delta weight 0"
import json, sys
rec = json.load(open(sys.argv[1]))
assert rec["accepted"] == 5 and rec["rejected"] == 1, rec
def entries(x):
    if isinstance(x, dict):
        yield x
        for v in x.values(): yield from entries(v)
    elif isinstance(x, list):
        for v in x: yield from entries(v)
# the contributor entries (weight or selection), not the anomaly report's "deltas"
hits = [e for e in entries(rec["aggregate_report"])
        if ("weight" in e or "selected" in e) and any(isinstance(v, str) and ("mallory" in v) for v in e.values())]
assert hits, "poisoned delta not in the report"
for e in hits:
    w = e.get("weight", e.get("selected"))
    assert w in (0, 0.0, False), e
print("poisoned delta in the report:", hits[0])
# and the anomaly report (aggregate --report's "deltas", 3 or more contributors) flags it
scan = [d for d in rec["aggregate_report"].get("deltas", []) if d.get("owner") == "mallory"]
assert scan and scan[0]["flagged"], scan
print("flagged by the anomaly report:", scan[0]["reasons"])
PYEOF

st=$(ds_job_wait "$j3" 180) || exit 99
cat ds-nightly-soup_"$j3".out
[ "$st" = FAILED ] || ds_cluster_fail "night 3 (missing eval text) ended $st"
tail -n 1 ds-nightly-soup_"$j3".out | grep -q "^ds-nightly-soup: FAILED job=$j3 date=$day3 step=eval .*latest=reference-$day2.bd.h5" ||
    ds_cluster_fail "night 3 summary line"
[ "$(readlink soup/latest)" = reference-$day2.bd.h5 ] || ds_cluster_fail "night 3 moved latest to $(readlink soup/latest)"
[ "$(ls -A soup | sort | tr '\n' ' ')" = "history latest reference-$day1.bd.h5 reference-$day1.json reference-$day2.bd.h5 reference-$day2.json report-$day1.html report-$day2.html report-$day3.html " ] ||
    ds_cluster_fail "publish dir after the failed night: $(ls -A soup)"
# Each night's page (deltasoup report, docs/report.md) against its record in soup/history.
for d in $day1 $day2 $day3; do
    "$PY" "$top_srcdir/tests/report/check_report.py" soup/report-$d.html soup/history $d || ds_cluster_fail "report of $d"
done
grep -q '<span class="failed">failed</span>' soup/report-$day3.html || ds_cluster_fail "night 3's page does not say failed"
echo "PASS: three nights (clean, poisoned, failing), singleton, atomic publication, a report per night"
