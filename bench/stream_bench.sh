#!/bin/sh
# Streaming jobs against the memory-speed floor (issue 16 "Streaming I/O"):
# on LAYERS (default 8) decoder blocks of Llama 2 7B shapes with a 256-token
# vocabulary (bf16; 8 layers: two ~3.2 GB checkpoints), page cache warm, each
# figure the best of REPS (default 3) runs, MPI start-up subtracted (the time
# of a trivial job, `compress --dry-run --shapes llama-7b`, at the same rank
# count). Prints, in one run:
#   compress at 1 rank vs `cat` of the same two input files (goal >= 0.40),
#   import (safetensors -> h5) and export (h5 -> safetensors) vs `cp` of the
#   same bytes (goal <= 2x), compress and apply at 2 ranks vs 1 (goal >= 1.5x),
#   and each job's user+sys CPU seconds and peak RSS (max over ranks);
#   export also against `cp` then `sync FILE` (export fsyncs its files
#   before renaming them into place; cp does not).
# Inputs are written by deltasoup itself (per-tensor sha256, content_sha256),
# so the default verification on read runs; compress --no-verify is shown too.
# OLD=path/to/an/older/deltasoup times the same jobs with that build too, on
# the same inputs, in the same run (its figures under "old").
#   DELTASOUP=build/deltasoup LAYERS=2 sh bench/stream_bench.sh
# BENCH_DIR: scratch folder (default /tmp), removed afterwards; needs about
# 5 x 0.4 GB x LAYERS of disk. Run by hand, not part of make check.
set -eu
. "$(dirname "$0")/env.sh"
LAYERS=${LAYERS:-8} REPS=${REPS:-3}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-stream-bench-XXXXXX")
trap 'rm -rf "$dir"' EXIT
q=--quiet
mkdir "$dir/ox"

"$DELTASOUP" import --from llama2c "$top/data/models/stories260K/stories260K.bin" --dtype bf16 -o "$dir/t.h5" $q >/dev/null
$PY "$top/bench/compress_gen.py" "$dir/t.h5" "$dir/b0.h5" "$dir/f0.h5" "$LAYERS"
# checkpoints written by deltasoup (with digests): b = b0 + d0, f = f0 + d0
"$DELTASOUP" compress --base "$dir/b0.h5" --finetuned "$dir/f0.h5" -o "$dir/d0.bd.h5" $q >/dev/null
"$DELTASOUP" apply --base "$dir/b0.h5" --delta "$dir/d0.bd.h5" -o "$dir/b.h5" --force $q >/dev/null 2>&1
"$DELTASOUP" apply --base "$dir/f0.h5" --delta "$dir/d0.bd.h5" -o "$dir/f.h5" --force $q >/dev/null 2>&1
rm -f "$dir/b0.h5" "$dir/f0.h5" "$dir/d0.bd.h5"
"$DELTASOUP" compress --base "$dir/b.h5" --finetuned "$dir/f.h5" -o "$dir/d.bd.h5" $q >/dev/null
mkdir "$dir/st"
"$DELTASOUP" export --to safetensors "$dir/b.h5" -o "$dir/st/model.safetensors" $q >/dev/null
in_bytes=$(($(wc -c <"$dir/b.h5") + $(wc -c <"$dir/f.h5")))
st_bytes=$(wc -c <"$dir/st/model.safetensors")
echo "$LAYERS layers: base $(wc -c <"$dir/b.h5") B + fine-tuned $(wc -c <"$dir/f.h5") B; safetensors $st_bytes B;" \
    "best of $REPS; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# best NAME CMD...: the best wall time of REPS runs (after a warm-up read of
# the inputs and a sync) into w_NAME, its user+sys CPU seconds into c_NAME
# and peak RSS in MB into m_NAME; outputs removed after each run.
best() {
    name=$1; shift
    b= bc_=0 bm=0
    for i in $(seq "$REPS"); do
        cat "$dir/b.h5" "$dir/f.h5" "$dir/d.bd.h5" "$dir/st/model.safetensors" >/dev/null
        sync
        /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }
        read -r e u s m <"$dir/time"
        rm -rf "$dir/o.h5" "$dir/o.bd.h5" "$dir/cp" "$dir/ox"/*
        if [ -z "$b" ] || [ "$(echo "$e < $b" | bc)" = 1 ]; then b=$e bc_=$(echo "$u + $s" | bc) bm=$((m / 1024)); fi
    done
    eval "w_$name=$b c_$name=$bc_ m_$name=$bm"
}
best cat cat "$dir/b.h5" "$dir/f.h5"
best cp cp "$dir/b.h5" "$dir/cp"
best cpst cp "$dir/st/model.safetensors" "$dir/cp"
# export makes its files durable before renaming them into place (fsync of
# the staged set, io/hf_config.c); cp does not: the same copy then `sync FILE`
best cpsync sh -c 'cp "$1" "$2" && sync "$2"' - "$dir/b.h5" "$dir/cp"
# jobs PREFIX DELTASOUP: every job with that build, figures under PREFIX
jobs() {
    p=$1 n1="$MPIEXEC -n 1 $2" n2="$MPIEXEC -n 2 $2"
    best ${p}t1 $n1 compress --dry-run --shapes llama-7b $q
    best ${p}t2 $n2 compress --dry-run --shapes llama-7b $q
    best ${p}c1 $n1 compress --base "$dir/b.h5" --finetuned "$dir/f.h5" -o "$dir/o.bd.h5" $q
    best ${p}cnv $n1 compress --base "$dir/b.h5" --finetuned "$dir/f.h5" -o "$dir/o.bd.h5" $q --no-verify
    best ${p}c2 $n2 compress --base "$dir/b.h5" --finetuned "$dir/f.h5" -o "$dir/o.bd.h5" $q
    best ${p}a1 $n1 apply --base "$dir/b.h5" --delta "$dir/d.bd.h5" -o "$dir/o.h5" $q
    best ${p}a2 $n2 apply --base "$dir/b.h5" --delta "$dir/d.bd.h5" -o "$dir/o.h5" $q
    best ${p}ex $n1 export --to safetensors "$dir/b.h5" -o "$dir/ox/model.safetensors" $q
    best ${p}exnv $n1 export --to safetensors "$dir/b.h5" -o "$dir/ox/model.safetensors" $q --no-verify
    best ${p}im $n1 import --from safetensors "$dir/st/model.safetensors" -o "$dir/o.h5" $q
}
builds=new
[ -z "${OLD:-}" ] || { jobs old_ "$OLD"; builds="old new"; }
jobs "" "$DELTASOUP"

net() { echo "$1 - $2" | bc -l; } # a job's seconds less MPI start-up
r() { printf '%.3f' "$(echo "$1" | bc -l)"; }
gbs() { printf '%.2f' "$(echo "$1 / $2 / 1000000000" | bc -l)"; }
printf '%-4s %-22s %8s %8s %8s %7s\n' build step wall_s net_s cpu_s rss_MB
for s in cat cp cpst cpsync; do
    eval "w=\$w_$s c=\$c_$s m=\$m_$s"
    case $s in
    cat) l="cat base+ft" ;; cp) l="cp base.h5" ;; cpst) l="cp model.safetensors" ;;
    cpsync) l="cp + sync base.h5" ;;
    esac
    printf '%-4s %-22s %8.2f %8.2f %8.2f %7d\n' - "$l" "$w" "$w" "$c" "$m"
done
for b in $builds; do
    p=; [ "$b" = new ] || p=${b}_
    for s in t1 t2 c1 cnv c2 a1 a2 ex exnv im; do
        eval "w=\$w_$p$s c=\$c_$p$s m=\$m_$p$s t1=\$w_${p}t1 t2=\$w_${p}t2"
        case $s in c1 | cnv | a1 | ex | exnv | im) nt=$(net "$w" "$t1") ;; c2 | a2) nt=$(net "$w" "$t2") ;; *) nt=$w ;; esac
        case $s in
        t1) l="trivial job, 1 rank" ;; t2) l="trivial job, 2 ranks" ;; c1) l="compress, 1 rank" ;;
        cnv) l="compress --no-verify" ;; c2) l="compress, 2 ranks" ;; a1) l="apply, 1 rank" ;;
        a2) l="apply, 2 ranks" ;; ex) l="export, 1 rank" ;; exnv) l="export --no-verify" ;; im) l="import, 1 rank" ;;
        esac
        printf '%-4s %-22s %8.2f %8.2f %8.2f %7d\n' "$b" "$l" "$w" "$nt" "$c" "$m"
    done
done
for b in $builds; do
    p=; [ "$b" = new ] || p=${b}_
    eval "t1=\$w_${p}t1 t2=\$w_${p}t2"
    eval "c1=\$(net \$w_${p}c1 $t1) cnv=\$(net \$w_${p}cnv $t1) c2=\$(net \$w_${p}c2 $t2)"
    eval "a1=\$(net \$w_${p}a1 $t1) a2=\$(net \$w_${p}a2 $t2) ex=\$(net \$w_${p}ex $t1) im=\$(net \$w_${p}im $t1)"
    eval "exnv=\$(net \$w_${p}exnv $t1)"
    echo "[$b] cat: $(gbs "$in_bytes" "$w_cat") GB/s; compress 1 rank: $(gbs "$in_bytes" "$c1") GB/s, --no-verify $(gbs "$in_bytes" "$cnv") GB/s"
    echo "[$b] compress 1 rank / cat throughput: $(r "$w_cat / $c1") (goal >= 0.40); --no-verify: $(r "$w_cat / $cnv")"
    echo "[$b] import / cp: $(r "$im / $w_cpst") (goal <= 2); export / cp: $(r "$ex / $w_cp") (goal <= 2)"
    echo "[$b] export --no-verify / cp: $(r "$exnv / $w_cp"); against cp + sync FILE (durable, as export is): export $(r "$ex / $w_cpsync"), --no-verify $(r "$exnv / $w_cpsync")"
    echo "[$b] 2 ranks vs 1: compress $(r "$c1 / $c2")x, apply $(r "$a1 / $a2")x (goal >= 1.5 with 2 free cores)"
done
