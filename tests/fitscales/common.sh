# Sourced by the fit-scales tests: a temporary folder and small real inputs.
#   fs_setup NAME           $tmp (removed on exit), $PY, OpenBLAS core type
#   fs_inputs FT_STEPS      in $tmp: base.h5 (stories260K), train.txt /
#                           held.txt (MT-Bench questions: every 4th held out,
#                           a text unlike TinyStories), ft.h5 (fine-tuned on
#                           train.txt for FT_STEPS AdamW steps), d.bd.h5 and
#                           drow.bd.h5 (compress, per-tensor / per-row scales)
#   fs_fail MSG             print and exit 1
fs_fail()
{
    echo "FAIL: $*" >&2
    exit 1
}

fs_setup()
{
    PY=$PYTHON3
    # OpenBLAS 0.3.21 falls back to slow kernels on CPUs it does not know
    # (docs/model.md).
    if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
    fi
    tmp=$(mktemp -d "/tmp/ds-fit-$1.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
}

fs_inputs()
{
    _S=$top_srcdir/data/models/stories260K
    "$PY" "$top_srcdir/tests/python/mt_bench_split.py" "$top_srcdir/data/benchmarks/mt_bench/question.jsonl" \
        "$tmp" || fs_fail "MT-Bench split"
    "$DELTASOUP" import --from llama2c "$_S/stories260K.bin" --tokenizer "$_S/tok512.bin" -o "$tmp/base.h5" \
        --quiet >/dev/null || fs_fail "import"
    "$DELTASOUP" finetune --base "$tmp/base.h5" --data "$tmp/train.txt" -o "$tmp/ft.h5" --steps "$1" \
        --batch 8 --seq-len 64 --lr 1e-3 --seed 3 --quiet >/dev/null || fs_fail "finetune"
    "$DELTASOUP" compress --base "$tmp/base.h5" --finetuned "$tmp/ft.h5" -o "$tmp/d.bd.h5" --quiet >/dev/null ||
        fs_fail "compress"
    "$DELTASOUP" compress --base "$tmp/base.h5" --finetuned "$tmp/ft.h5" -o "$tmp/drow.bd.h5" --scale row \
        --quiet >/dev/null || fs_fail "compress --scale row"
}

# fs_usr1_when PATTERN LOG PID: SIGUSR1 to PID (an mpiexec, which forwards
# it) once LOG has a line matching PATTERN (or after 30 s, or when PID has
# ended).
fs_usr1_when()
{
    _n=0
    until grep -q "$1" "$2" 2>/dev/null; do
        _n=$((_n + 1))
        [ $_n -lt 3000 ] && kill -0 "$3" 2>/dev/null || break
        sleep 0.01
    done
    kill -USR1 "$3" 2>/dev/null || true
}

# fs_same REF B...: B.bd.h5 has every scale of REF.bd.h5 bit for bit (h5py)
# and the same content hash, B.json the same report as REF.json (all but
# seconds, peak RSS, output, ranks and pipeline; with RESUMED set, all but
# the first step's batch objective, that of the run that resumed).
fs_same()
{
    $PY - "$@" <<'PYEOF' || fs_fail "$* differ"
import json, os, sys
import h5py
def load(name):
    with h5py.File(name + ".bd.h5", "r") as f:
        sc = {k: f["bits"][k]["scale"][()].tobytes() for k in f["bits"]}
        r = json.load(open(name + ".json"))
        for k in ("seconds", "peak_rss_bytes", "output", "ranks", "pipeline"):
            r.pop(k)
        if os.environ.get("RESUMED"):
            r["train"].pop("batch_objective_first_step")
        return sc, f.attrs["content_sha256"], r
ref = load(sys.argv[1])
assert len(ref[0]) == 35
for name in sys.argv[2:]:
    got = load(name)
    for k in ref[0]:
        assert got[0][k] == ref[0][k], "%s: scales of %s differ from %s's" % (name, k, sys.argv[1])
    assert got[1] == ref[1], (name, "content_sha256")
    assert got[2] == ref[2], (name, got[2], ref[2])
    print("%s: the scales and report of %s, bit for bit" % (name, sys.argv[1]))
PYEOF
}
