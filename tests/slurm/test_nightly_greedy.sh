#!/bin/sh
# nightly-soup.sbatch with DS_RECIPE=greedy, one night (the default recipe is
# tests/slurm/test_nightly.sh's): three users' real fine-tunes and a harmful
# delta (poison scale x10 of the first) arrive; the night publishes the
# greedy soup (docs/soup.md) of 2 ranks, which must be what a plain one-rank
# `deltasoup soup` with the same arguments writes (the same content hash and
# decisions), must not contain the harmful delta, and is named in the
# published record ("recipe": "greedy", "soup_report") and the night's
# history (soup.json). An unknown DS_RECIPE fails the night before any work.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
. "$top_srcdir/tests/slurm/fixtures.sh"
ds_need_jobs import finetune compress eval inspect aggregate gate soup poison
ds_cluster_start
w=$DS_CLUSTER_DIR/work
ds_fixtures "$w" 3
cd "$w" || exit 99
S=$top_srcdir/slurm
mkdir inbox soup
for i in 1 2 3; do
    "$DELTASOUP" compress --base base.h5 --finetuned ft$i.h5 -o inbox/user$i.bd.h5 --owner user$i --quiet >/dev/null ||
        ds_cluster_fail "compress $i"
done
"$DELTASOUP" poison --attack scale --count 1 --strength 10 -o p inbox/user1.bd.h5 --quiet >/dev/null || ds_cluster_fail poison
mv p/scale-0.bd.h5 inbox/mallory.bd.h5
day=2026-04-01
touch -d "$day 10:00" inbox/*.bd.h5
night() # night VAR=value...: submit one night, print the job id
{
    (
        export DS_BASE="$w/base.h5" DS_INBOX="$w/inbox" DS_PUBLISH="$w/soup" DS_EVAL_TEXT="$w/valid.txt" \
            DS_SEQ_LEN=128 DS_WORK="$w/scratch" DELTASOUP="$DELTASOUP" DS_DATE=$day
        for a in "$@"; do export "$a"; done
        ds_sbatch "$S/nightly-soup.sbatch"
    )
}
jb=$(night DS_RECIPE=bogus) || exit 99
j=$(night DS_RECIPE=greedy DS_SOUP_GATE="ppl:$w/valid.txt" DS_MIN_RATIO=0.5) || exit 99
st=$(ds_job_wait "$jb" 60) || exit 99
[ "$st" = FAILED ] && grep -q "FAILED .*step=setup DS_RECIPE=bogus: expected robust or greedy" ds-nightly-soup_"$jb".out ||
    ds_cluster_fail "DS_RECIPE=bogus: $st: $(tail -2 ds-nightly-soup_"$jb".out)"
st=$(ds_job_wait "$j" 240) || exit 99
cat ds-nightly-soup_"$j".out
[ "$st" = COMPLETED ] || ds_cluster_fail "the greedy night ended $st"
[ "$(readlink soup/latest)" = reference-$day.bd.h5 ] || ds_cluster_fail "latest -> $(readlink soup/latest)"
grep -q "not kept $w/inbox/mallory.bd.h5: " ds-nightly-soup_"$j".out || ds_cluster_fail "the harmful delta is not named as not kept"
[ -s soup/history/$day/soup.json ] || ds_cluster_fail "no soup.json in the night's history"

# The same soup by hand, one rank: same decisions and content.
find "$w/inbox" -maxdepth 1 -name '*.bd.h5' | sort >list.txt
"$DELTASOUP" soup --base base.h5 --candidates list.txt --method mean --eval-task "ppl:$w/valid.txt" --min-ratio 0.5 \
    --seq-len 128 --gate-task "ppl:$w/valid.txt" -o plain.bd.h5 --report plain.json --quiet >/dev/null ||
    ds_cluster_fail "plain soup"
hash_of() { "$DELTASOUP" inspect "$1" --json | sed -n 's/.*"computed": *"\([0-9a-f]*\)".*/\1/p' | head -n 1; }
[ "$(hash_of soup/latest)" = "$(hash_of plain.bd.h5)" ] || ds_cluster_fail "the night's soup differs from a plain soup run"
"$PYTHON3" - soup/reference-$day.json plain.json <<'PYEOF' || ds_cluster_fail "the published record does not match"
import json, sys
rec, plain = (json.load(open(p)) for p in sys.argv[1:])
assert rec["recipe"] == "greedy" and rec["method"] == "mean", rec["recipe"]
soup = rec["soup_report"]
strip = lambda r: [{k: c[k] for k in ("file", "score", "soup_score", "kept", "reason")} for c in r["candidates"]]
assert strip(soup) == strip(plain), "decisions differ"
assert not any(f.endswith("mallory.bd.h5") for f in soup["kept"]) and len(soup["kept"]) >= 1, soup["kept"]
print("greedy night: kept %d of %d" % (len(soup["kept"]), len(soup["candidates"])))
PYEOF
echo "test_nightly_greedy: OK"
