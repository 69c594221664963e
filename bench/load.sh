#!/bin/bash
# Load (issue 15, docs/reliability.md "Load"): many real stories260K deltas.
#  (a) one aggregate job over N deltas (trimmed-mean, then multi-krum) at 2
#      ranks: wall time and peak RSS per rank (/usr/bin/time around each rank),
#      with the default --chunk-mb and with --chunk-mb 16;
#  (b) a nightly-soup run (slurm/nightly-soup.sbatch, srun replaced by a shim
#      that runs mpiexec -n 2) over an inbox of NIGHTLY deltas, BAD of them
#      corrupt (one data byte flipped; truncated) or unsigned: it must publish a
#      soup of the good ones and name every rejected file with its reason.
# The deltas: one real fine-tune of stories260K (finetune, compress), then N
# distinct ones by `poison --attack gaussian` (random signs, small scales).
#   bench/load.sh                      N=1000 NIGHTLY=200 BAD=20 (by hand; minutes)
#   LOAD_N=40 LOAD_NIGHTLY=40 LOAD_BAD=8 bench/load.sh   (tests/reliability/load_small.sh)
# Prints "load: ..." result lines; exit 1 on any failed check. WORK (default a
# temporary folder) is removed unless KEEP=1.
set -eu
. "$(dirname "$0")/env.sh"
N=${LOAD_N:-1000} NIGHTLY=${LOAD_NIGHTLY:-200} BAD=${LOAD_BAD:-20}
W=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ds-load.XXXXXX")}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
mkdir -p "$W" && cd "$W"
M=$top/data/models/stories260K
die() { echo "load: FAIL $*"; exit 1; }

# One honest fine-tune, then N gaussian deltas of its layout.
"$DELTASOUP" import --from llama2c "$M/stories260K.bin" --tokenizer "$M/tok512.bin" -o base.h5 --quiet >/dev/null
head -c 30000 "$top/data/lm_corpus/tinystories_sample.txt" >text.txt
tail -c 8000 "$top/data/lm_corpus/tinystories_sample.txt" >valid.txt
"$DELTASOUP" finetune --base base.h5 --data text.txt -o ft.h5 --steps 3 --batch 4 --seq-len 64 --quiet >/dev/null
"$DELTASOUP" compress --base base.h5 --finetuned ft.h5 -o honest.bd.h5 --owner honest --quiet >/dev/null
t0=$(date +%s.%N)
"$DELTASOUP" poison --attack gaussian --strength 0.05 --count "$N" --seed 1 -o gen honest.bd.h5 --quiet >/dev/null
echo "load: made $N deltas in $(echo "$(date +%s.%N) - $t0" | bc) s ($(du -sm gen | cut -f1) MB)"
ls gen/*.bd.h5 >all.txt
[ "$(grep -c . all.txt)" = "$N" ] || die "poison wrote $(grep -c . all.txt) deltas, not $N"

# (a) one aggregate job over all N at 2 ranks, per rank: peak RSS (KB), wall.
agg() { # agg NAME ARGS...
    _name=$1
    shift
    t0=$(date +%s.%N)
    $MPIEXEC -n 2 sh -c '/usr/bin/time -o "$0.$OMPI_COMM_WORLD_RANK" -f "%M %e" "$@"' "time.$_name" \
        "$DELTASOUP" aggregate --list all.txt -o "$_name.bd.h5" --report "$_name.json" --quiet "$@" >/dev/null ||
        die "aggregate $_name"
    wall=$(echo "$(date +%s.%N) - $t0" | bc)
    echo "load: aggregate $_name over $N deltas at 2 ranks: $(printf '%.1f' "$wall") s," \
        "peak RSS rank 0 $(cut -d' ' -f1 "time.$_name.0") KB, rank 1 $(cut -d' ' -f1 "time.$_name.1") KB," \
        "used $(grep -c '"status": "used"' "$_name.json") of $N"
}
agg trimmed --method trimmed-mean
# memory follows --chunk-mb (default 256, about all of N = 1,000 stories260K deltas), not N
agg trimmed-chunk16 --method trimmed-mean --chunk-mb 16
agg krum --method multi-krum --byzantine $(((N - 3) / 4))

# (b) the nightly run: NIGHTLY - BAD good deltas signed by a trusted key, BAD
# bad ones (a third with a data byte flipped, a third truncated, the rest unsigned).
mkdir -p inbox soup bin
"$DELTASOUP" keygen -o key --quiet >/dev/null
cp key.pub trusted.txt
good=$((NIGHTLY - BAD)) flip=$((BAD / 3)) trunc=$((BAD / 3))
head -n "$NIGHTLY" all.txt | while read -r d; do cp "$d" inbox/; done
ls inbox/*.bd.h5 | head -n "$good" | xargs "$DELTASOUP" sign --key key --quiet
ls inbox/*.bd.h5 | tail -n "$BAD" >bad.txt
head -n "$flip" bad.txt | xargs "$DELTASOUP" sign --key key --quiet
sed -n "$((flip + 1)),$((flip + trunc))p" bad.txt | xargs "$DELTASOUP" sign --key key --quiet
# flip one byte of a tensor's data (h5py: the dataset's offset in the file)
head -n "$flip" bad.txt | "$PY" -c '
import sys, h5py
for p in sys.stdin.read().split():
    with h5py.File(p, "r") as f:
        off = []
        f.visititems(lambda n, o: off.append((n, o.id.get_offset())) if isinstance(o, h5py.Dataset) and o.id.get_offset() and o.nbytes > 64 else None)
    name, o = off[0]
    with open(p, "r+b") as g:
        g.seek(o + 17); b = g.read(1); g.seek(o + 17); g.write(bytes([b[0] ^ 0x10]))
'
sed -n "$((flip + 1)),$((flip + trunc))p" bad.txt | while read -r d; do truncate -s $(($(stat -c %s "$d") / 2)) "$d"; done
touch inbox/*.bd.h5
cat >bin/srun <<EOS
#!/bin/sh
# srun shim for bench/load.sh: srun --mpi=X PROG ARGS -> mpiexec -n 2 PROG ARGS
case \$1 in --mpi=*) shift ;; esac
exec $MPIEXEC -n 2 "\$@"
EOS
chmod +x bin/srun
t0=$(date +%s.%N)
PATH=$W/bin:$PATH DELTASOUP=$DELTASOUP DS_BASE=base.h5 DS_INBOX=inbox DS_PUBLISH=soup DS_EVAL_TEXT=valid.txt \
    DS_TRUSTED_KEYS=trusted.txt DS_MIN_RATIO=${LOAD_MIN_RATIO:-0.5} DS_WORK=$W SLURM_JOB_ID=load \
    /usr/bin/time -o time.nightly -f '%M %e' bash "$top/slurm/nightly-soup.sbatch" >nightly.out 2>&1 ||
    { cat nightly.out; die "nightly-soup"; }
wall=$(echo "$(date +%s.%N) - $t0" | bc)
sed 's/^/load: nightly | /' nightly.out | grep -v ': rejected ' || :
n_rej=$(grep -c ': rejected ' nightly.out || :)
echo "load: nightly over $NIGHTLY inbox deltas: $(printf '%.1f' "$wall") s, rejected $n_rej (expected $BAD)"
[ "$n_rej" = "$BAD" ] || { cat nightly.out; die "rejected $n_rej, not $BAD"; }
while read -r d; do
    grep -qF ": rejected $d	" nightly.out || die "$d is not named as rejected"
done <bad.txt
grep -E ": rejected " nightly.out | cut -f2 | sed 's/: .*//' | sort | uniq -c | sed 's/^/load: reason /'
grep -q "accepted=$((NIGHTLY - flip - trunc)) rejected=$BAD" nightly.out || die "counts: $(tail -n 1 nightly.out)"
ls soup/reference-*.bd.h5 >/dev/null 2>&1 && [ -L soup/latest ] || die "nothing published"
"$DELTASOUP" inspect soup/latest --json >soup.json || die "the published soup does not verify"
echo "load: published $(readlink soup/latest), built from $good good deltas"
echo "load: ok"
