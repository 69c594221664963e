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
