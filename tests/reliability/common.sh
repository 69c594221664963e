# Shared by tests/reliability/*.sh (sourced after tests/defaults.sh):
# a work folder $w removed at exit, a failure count, and
#   [np=2] expect CODE OUTPUT PATTERN... -- ARGS
# which runs deltasoup ARGS (at $np ranks, then np=1 again) and checks the
# exit code, exactly one "deltasoup ..." line on stderr holding every
# PATTERN, and that OUTPUT (unless "-") and OUTPUT.tmp do not exist; each
# run is killed after $limit seconds (300 unless set).
limit=${limit:-300}
w=${TMPDIR:-/tmp}/ds-reliability-$(basename "$0" .sh).$$
rm -rf "$w" && mkdir -p "$w" || exit 1
trap 'rm -rf "$w"' EXIT
fails=0
np=1
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {
    code=$1 out=$2
    shift 2
    pats=
    while [ "$1" != -- ]; do
        pats="$pats
$1"
        shift
    done
    shift
    if [ "$np" = 1 ]; then timeout -k 5 "$limit" "$DELTASOUP" "$@"; else timeout -k 5 "$limit" $MPIEXEC -n "$np" "$DELTASOUP" "$@"; fi \
        > "$w/stdout" 2> "$w/stderr"
    rc=$?
    np=1
    lines=$(grep -c '^deltasoup' "$w/stderr")
    ok=1
    [ "$rc" -eq "$code" ] || { echo "FAIL: exit $rc, expected $code: $*"; ok=0; }
    [ "$lines" -eq 1 ] || { echo "FAIL: $lines error lines, expected 1: $*"; ok=0; }
    echo "$pats" | while IFS= read -r p; do
        [ -z "$p" ] || grep -qF -- "$p" "$w/stderr" || { echo "FAIL: stderr lacks '$p': $*"; exit 1; }
    done || ok=0
    if [ "$out" != - ]; then
        [ ! -e "$out" ] || { echo "FAIL: output $out was written: $*"; ok=0; }
        [ ! -e "$out.tmp" ] || { echo "FAIL: $out.tmp left behind: $*"; ok=0; }
    fi
    if [ $ok = 1 ]; then echo "ok: $(grep '^deltasoup' "$w/stderr")"; else cat "$w/stderr"; fails=$((fails + 1)); fi
}
# same FILE SUM: FILE still has the cksum SUM
same() { [ "$(cksum < "$1")" = "$2" ] || fail "$1 was modified"; }
# need_numpy: skip (exit 77) unless $PYTHON3 has numpy and h5py
need_numpy() { $PYTHON3 -c 'import numpy, h5py' 2> /dev/null || { echo "skip: $PYTHON3 lacks numpy/h5py"; exit 77; }; }
# $MK NAME --owner O --seed S [--shape-rows R]: a synthetic delta
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
# users N [ARGS...]: $w/u1.bd.h5 .. $w/uN.bd.h5, owner and seed i
users() {
    _n=$1
    shift
    for s in $(seq "$_n"); do "$MK" "$w/u$s.bd.h5" --owner "u$s" --seed "$s" "$@" > /dev/null || exit 1; done
}
# models: a stories260K base b.h5, a perturbed f.h5, the delta d.bd.h5, a text
models() {
    model=$top_srcdir/data/models/stories260K
    "$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" -o "$w/b.h5" --quiet > /dev/null &&
        $PYTHON3 "$top_srcdir/tests/python/bitdelta_ref.py" perturb "$w/b.h5" "$w/f.h5" 3 &&
        "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/d.bd.h5" --quiet > /dev/null &&
        head -c 20000 "$top_srcdir/data/lm_corpus/tinystories_sample.txt" > "$w/text.txt" || exit 1
}
