#!/bin/sh
# The 8 inputs on which libhdf5 1.10.8 itself reads out of bounds
# (tests/fuzz/hdf5_crashes, found by the fuzz campaigns; the fault is inside
# the library's attribute decoder, docs/reliability.md "Fuzzing"): in a
# normal build each is refused with exit 3 and one error line of deltasoup
# naming the file (Open MPI's I/O layer may print a line of its own), at 1
# and 2 ranks, by inspect and by a job that reads it as its input (compress
# for a checkpoint, apply for a delta), and no output is written. Under
# ASan the library's own out-of-bounds read is reported instead (what the
# campaigns found), so sanitizer builds skip this test.
set -u
. "$(dirname "$0")/../defaults.sh"
ds_skip_sanitized "ASan reports libhdf5's own out-of-bounds reads on these files"
. "$(dirname "$0")/common.sh"
S=$top_srcdir/data/models/stories260K
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$w/b.h5" --quiet >/dev/null ||
    { echo "FAIL: import"; exit 1; }
n=0
for f in "$top_srcdir"/tests/fuzz/hdf5_crashes/*.h5; do
    name=$(basename "$f")
    for r in 1 2; do
        np=$r expect 3 - "$name" -- inspect "$f" --quiet
        case $f in
        *.bd.h5) np=$r expect 3 "$w/a.h5" "$name" -- apply --base "$w/b.h5" --delta "$f" -o "$w/a.h5" --quiet ;;
        *) np=$r expect 3 "$w/d.bd.h5" "$name" -- compress --base "$f" --finetuned "$w/b.h5" -o "$w/d.bd.h5" --quiet ;;
        esac
        n=$((n + 2))
    done
done
[ "$n" -ge 32 ] || { echo "FAIL: only $n runs (the crash files are missing?)"; exit 1; }
[ "$fails" = 0 ] || { echo "hdf5_crashes.sh: $fails failure(s)"; exit 1; }
echo "hdf5_crashes: $n runs, each exit 3 with one line naming the file"
