#!/bin/sh
# compress.sbatch and eval.sbatch on the shipped stories260K model and three
# real fine-tunes, at 2 tasks under srun --mpi=pmix. References come from
# plain one-rank runs outside Slurm: the delta's content hash (it must not
# depend on the number of ranks) and each line's perplexity (eval of
# apply(base, delta)); the table must map every line to its own result.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/slurm/cluster.sh"
. "$top_srcdir/tests/slurm/fixtures.sh"
ds_need_jobs import finetune compress apply eval
ds_cluster_start
w=$DS_CLUSTER_DIR/work
ds_fixtures "$w" 3
cd "$w" || exit 99
S=$top_srcdir/slurm

ids=
for i in 1 2 3; do
    ids="$ids $(DS_BASE=base.h5 DS_FINETUNED=ft$i.h5 DS_OUT=d$i.bd.h5 DS_OWNER=user$i ds_sbatch "$S/compress.sbatch")"
done
for i in 1 2 3; do
    set -- $ids
    eval id=\${$i}
    st=$(ds_job_wait "$id" 120) || exit 99
    log=ds-compress_$id.out
    [ "$st" = COMPLETED ] || { cat "$log"; ds_cluster_fail "compress.sbatch $i ended $st"; }
    grep -q '"ranks": 2' "$log" || { cat "$log"; ds_cluster_fail "compress did not run at 2 ranks"; }
    tail -n 1 "$log" | grep -q "^ds-compress: OK job=$id out=d$i.bd.h5 ratio=" ||
        { cat "$log"; ds_cluster_fail "compress.sbatch summary line"; }
    ref=$("$DELTASOUP" compress --base base.h5 --finetuned ft$i.h5 -o ref$i.bd.h5 --owner user$i --json --quiet |
        sed -n 's/.*"content_sha256": "\([0-9a-f]*\)".*/\1/p')
    grep -q "content_sha256=$ref " "$log" ||
        { cat "$log"; ds_cluster_fail "delta $i: 2-rank Slurm hash differs from the 1-rank run ($ref)"; }
    "$DELTASOUP" inspect d$i.bd.h5 >/dev/null || ds_cluster_fail "d$i.bd.h5 does not verify (inspect)"
done

# A failing compress (missing fine-tune) fails the job with a summary line.
bad=$(DS_BASE=base.h5 DS_FINETUNED=missing.h5 DS_OUT=bad.bd.h5 ds_sbatch "$S/compress.sbatch")
st=$(ds_job_wait "$bad" 60) || exit 99
[ "$st" = FAILED ] || ds_cluster_fail "compress of a missing file ended $st"
tail -n 1 ds-compress_"$bad".out | grep -q "^ds-compress: FAILED job=$bad step=compress exit=3" ||
    { cat ds-compress_"$bad".out; ds_cluster_fail "failed compress summary line"; }
[ ! -e bad.bd.h5 ] || ds_cluster_fail "failed compress left an output"

# The array: a baseline line, three deltas and one missing delta.
printf 'none\nd1.bd.h5\nd2.bd.h5\nd3.bd.h5\nmissing.bd.h5\n' >list.txt
arr=$(DS_MODEL=base.h5 DS_LIST=list.txt DS_TEXT=valid.txt DS_RESULTS=evals DS_SEQ_LEN=128 \
    ds_sbatch --array=1-5 "$S/eval.sbatch")
st=$(ds_job_wait "$arr" 180) || exit 99
[ "$(echo "$st" | grep -c COMPLETED)" = 4 ] && [ "$(echo "$st" | grep -c FAILED)" = 1 ] ||
    { cat ds-eval_*.out; ds_cluster_fail "eval array states: $(echo $st)"; }
[ -f evals/results.tsv ] || { cat ds-eval_*.out; ds_cluster_fail "no evals/results.tsv"; }
cat evals/results.tsv
[ "$(wc -l <evals/results.tsv)" = 6 ] || ds_cluster_fail "results.tsv should have a header and 5 rows"
for i in 1 2 3 4 5; do
    line=$(sed -n "${i}p" list.txt)
    row=$(awk -F '\t' -v t=$i '$1 == t' evals/results.tsv)
    [ "$(echo "$row" | cut -f 2)" = "$line" ] || ds_cluster_fail "row $i names '$(echo "$row" | cut -f 2)', want $line"
    if [ $i = 5 ]; then
        echo "$row" | cut -f 6 | grep -q '^FAILED' || ds_cluster_fail "missing delta row not FAILED: $row"
        grep -q "^ds-eval: FAILED job=[0-9]* task=5 step=[a-z]* exit=3 delta=missing.bd.h5" ds-eval_*.out ||
            ds_cluster_fail "failed task summary line (exit 3 for a missing file)"
        continue
    fi
    m=base.h5
    if [ "$line" != none ]; then
        "$DELTASOUP" apply --base base.h5 --delta "$line" -o ref_model$i.h5 --quiet >/dev/null || ds_cluster_fail "apply $line"
        m=ref_model$i.h5
    fi
    want=$("$DELTASOUP" eval --model "$m" --ppl valid.txt --seq-len 128 --json --quiet |
        sed -n 's/.*"ppl": *\([-0-9.eE+]*\).*/\1/p')
    got=$(echo "$row" | cut -f 3)
    # float32 forward passes: the summation order (BLAS threads) differs
    # between a singleton run and a launched one by ~1e-7 relative.
    awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-5 * b) }' ||
        ds_cluster_fail "line $i ($line): ppl $got from the array, $want from a plain run"
done
# The deltas really differ, so a row mixed up with another would be caught.
[ "$(cut -f 3 evals/results.tsv | sed 1d | sort -u | wc -l)" = 5 ] || ds_cluster_fail "perplexities not distinct"
echo "PASS: compress.sbatch x3 (+1 failing), eval.sbatch array of 5 collected into one table"
