#!/bin/sh
# The 8 inputs on which libhdf5 1.10.8 itself reads out of bounds
# (tests/fuzz/hdf5_crashes, found by the fuzz campaigns; the fault is inside
# the library's attribute decoder, docs/reliability.md "Fuzzing"): in a
# normal build each is refused with exit 3 and one error line of deltasoup
# naming the file (Open MPI's I/O layer may print a line of its own), at 1 and 2 ranks, by inspect and by a job that reads it as its
# input (compress for a checkpoint, apply for a delta), and no output is
# written. Under ASan the library's own out-of-bounds read is reported
# instead (what the campaigns found), so sanitizer builds skip this test.
set -u
. "$(dirname "$0")/../defaults.sh"
ds_skip_sanitized "ASan reports libhdf5's own out-of-bounds reads on these files"
crashes=$top_srcdir/tests/fuzz/hdf5_crashes
w=$(mktemp -d "${TMPDIR:-/tmp}/ds-h5crash.XXXXXX")
trap 'rm -rf "$w"' EXIT
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; export ASAN_OPTIONS
S=$top_srcdir/data/models/stories260K
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null ||
    { echo "FAIL: import"; exit 1; }
bad=0
n=0
check() { # RANKS FILE OUT ARGS...: exit 3, one error line naming FILE, no OUT
    r=$1 f=$2 out=$3
    shift 3
    rc=0
    if [ "$r" = 1 ]; then "$DELTASOUP" "$@" >"$w/out" 2>"$w/err" || rc=$?
    else $MPIEXEC -n "$r" "$DELTASOUP" "$@" >"$w/out" 2>"$w/err" </dev/null || rc=$?; fi
    errs=$(grep -c '^deltasoup.*error: ' "$w/err") # (Open MPI's I/O layer may add its own line)
    name=$(basename "$f")
    n=$((n + 1))
    if [ "$rc" != 3 ] || [ "$errs" != 1 ] || ! grep '^deltasoup.*error: ' "$w/err" | grep -qF "$name" || [ -e "$out" ]; then
        echo "FAIL: $* at $r rank(s): exit $rc (want 3), $errs error line(s), output $( [ -e "$out" ] && echo written || echo absent)"
        cat "$w/err"
        bad=$((bad + 1))
    else
        echo "ok: $name, $1 at $r rank(s): $(grep -m1 '^deltasoup.*error: ' "$w/err" | cut -c1-160)"
    fi
}
for f in "$crashes"/*.h5; do
    for r in 1 2; do
        case $f in
        *.bd.h5)
            check $r "$f" "$w/x" inspect "$f" --quiet
            check $r "$f" "$w/a.h5" apply --base "$w/b.h5" --delta "$f" -o "$w/a.h5" --quiet ;;
        *)
            check $r "$f" "$w/x" inspect "$f" --quiet
            check $r "$f" "$w/d.bd.h5" compress --base "$f" --finetuned "$w/b.h5" -o "$w/d.bd.h5" --quiet ;;
        esac
    done
done
[ "$n" -ge 32 ] || { echo "FAIL: only $n runs (the crash files are missing?)"; exit 1; }
[ "$bad" = 0 ] || exit 1
echo "hdf5_crashes: $n runs, each exit 3 with one line naming the file"
