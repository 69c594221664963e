#!/bin/sh
# Refusals of `deltasoup aggregate`: each is one clear line naming the file
# (and tensor), a non-zero exit code of the documented kind, and no output
# left behind (neither OUT nor OUT.tmp).
set -u
. "$(dirname "$0")/../defaults.sh"
d=tests/aggregate/errors.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "errors.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
for s in 1 2 3 4 5; do "$MK" "$d/s$s.bd.h5" --owner "u$s" --seed $s || fail mkdelta; done
"$MK" "$d/rows.bd.h5" --owner x --seed 7 --shape-rows 38 || fail mkdelta
"$MK" "$d/mode.bd.h5" --owner x --seed 7 --mode row || fail mkdelta
"$MK" "$d/base.bd.h5" --owner x --seed 7 --base 2222222222222222222222222222222222222222222222222222222222222222 || fail mkdelta
echo "not hdf5" > "$d/text.bd.h5"
out="$d/out.bd.h5"

# expect CODE "message part" aggregate-args...
expect() {
    want=$1 msg=$2
    shift 2
    "$DELTASOUP" aggregate -o "$out" --quiet "$@" > "$d/stdout" 2> "$d/stderr"
    rc=$?
    [ $rc -eq "$want" ] || fail "exit $rc, wanted $want: $*: $(cat "$d/stderr")"
    grep -qF -- "$msg" "$d/stderr" || fail "no '$msg' in: $(cat "$d/stderr")"
    [ "$(grep -c . "$d/stderr")" -eq 1 ] || fail "more than one line: $(cat "$d/stderr")"
    [ ! -e "$out" ] && [ ! -e "$out.tmp" ] || fail "partial output left by: $*"
}
S="$d/s1.bd.h5 $d/s2.bd.h5 $d/s3.bd.h5"
expect 2 "krum with --byzantine 1 needs at least 5 deltas (2F + 3), got 3" --method krum --byzantine 1 $S
expect 2 "multi-krum with --byzantine 2 needs at least 7 deltas" --method multi-krum --byzantine 2 $S "$d/s4.bd.h5" "$d/s5.bd.h5"
expect 2 "--select 4: only 3 deltas" --method multi-krum --select 4 $S
expect 2 "--trim 0.5: must be below 0.5" --method trimmed-mean --trim 0.5 $S
expect 2 "--trim 0.1 drops no values with 3 deltas (floor(0.1 x 3) = 0): needs at least 10" --method trimmed-mean --trim 0.1 $S
expect 2 "--trim 0.25 drops no scales with 3 deltas (floor(0.25 x 3) = 0): needs at least 4" --method majority --trim 0.25 $S
expect 2 "--method: expected mean, median, trimmed-mean, krum, multi-krum, majority, task-arithmetic, ties, dare-ties, dare-linear, geometric-median, centered-clipping or bulyan, got 'avg'" --method avg $S
expect 2 "--method is required" $S
# --requantize codes each chunk as it is reduced (io/agg_stream.c): an
# overflowing result is refused, naming the output and tensor, with nothing written
expect 1 "out.bd.h5: tensor a.weight: aggregated value 0 is not finite" --method task-arithmetic --lambda 1e300 --requantize --chunk-mb 0.004 $S
expect 2 "unknown option '--bogus'" --method mean --bogus $S
expect 2 "no input deltas" --method mean
expect 2 "--byzantine applies to krum, multi-krum, bulyan and --pre nnm, not mean" --method mean --byzantine 1 $S
expect 2 "--requantize: majority already gives 1-bit tensors" --method majority --requantize $S
expect 3 "$d/rows.bd.h5: tensor a.weight: shape [38, 150], but [37, 150] in $d/s1.bd.h5" --method mean $S "$d/rows.bd.h5"
expect 3 "$d/mode.bd.h5: tensor a.weight: scale mode row, but tensor in $d/s1.bd.h5" --method median $S "$d/mode.bd.h5"
expect 3 "$d/base.bd.h5: base_sha256 2222222222222222... differs" --method mean $S "$d/base.bd.h5"
expect 3 "$d/missing.bd.h5" --method mean $S "$d/missing.bd.h5"
expect 3 "$d/text.bd.h5" --method mean $S "$d/text.bd.h5"
expect 3 "$d/k.txt" --method mean --trusted-keys "$d/k.txt" $S

# --force aggregates across bases, with one warning naming the file.
"$DELTASOUP" aggregate --method mean --force -o "$out" --quiet $S "$d/base.bd.h5" > /dev/null 2> "$d/stderr" \
    || fail "--force: $(cat "$d/stderr")"
grep -q "warning: $d/base.bd.h5: base_sha256 differs" "$d/stderr" || fail "--force warning: $(cat "$d/stderr")"
# An existing output needs --overwrite (and stays as it was).
cp "$out" "$d/before"
"$DELTASOUP" aggregate -o "$out" --method median $S > /dev/null 2> "$d/stderr"
[ $? -eq 4 ] && grep -q "$out: output exists (use --overwrite" "$d/stderr" || fail "existing output: $(cat "$d/stderr")"
cmp -s "$out" "$d/before" || fail "the existing output changed"
rm -f "$out"
# So does an existing --report: refused before anything is written.
echo '{"kept": true}' > "$d/report.json"
"$DELTASOUP" aggregate -o "$out" --report "$d/report.json" --method median $S > /dev/null 2> "$d/stderr"
[ $? -eq 4 ] && grep -q "$d/report.json: output exists (use --overwrite" "$d/stderr" || fail "existing report: $(cat "$d/stderr")"
[ "$(cat "$d/report.json")" = '{"kept": true}' ] || fail "the existing report changed"
[ ! -e "$out" ] && [ ! -e "$out.tmp" ] || fail "output written although the report exists"
"$DELTASOUP" aggregate -o "$out" --report "$d/report.json" --overwrite --method median --quiet $S > /dev/null 2> "$d/stderr" \
    || fail "--overwrite of a report: $(cat "$d/stderr")"
grep -q '"method": "median"' "$d/report.json" || fail "report not replaced: $(head -c 300 "$d/report.json")"
rm -f "$out"

# --list adds inputs: the same result as naming them.
printf '# inputs\n%s\n\n%s\n' "$d/s2.bd.h5" "$d/s3.bd.h5" > "$d/list"
"$DELTASOUP" aggregate --method median -o "$d/a.bd.h5" "$d/s1.bd.h5" --list "$d/list" | grep content_sha256 > "$d/h1" || fail "--list"
"$DELTASOUP" aggregate --method median -o "$d/b.bd.h5" $S | grep content_sha256 > "$d/h2" || fail "positional"
cmp -s "$d/h1" "$d/h2" || fail "--list gave another result"

# A non-finite scale or dense value is bad input naming file and tensor (the
# edited dataset's digest is recomputed, as a hostile writer would: the
# value check, not the digest check, is what is tested here).
if "$PYTHON3" -c 'import h5py' 2>/dev/null; then
    cp "$d/s2.bd.h5" "$d/nan.bd.h5"
    "$PYTHON3" -c "
import h5py, numpy as np
with h5py.File('$d/nan.bd.h5', 'r+') as f:
    s = f['bits/b.weight/scale']; v = s[()]; v[0] = np.nan; s[...] = v
    f.attrs['content_sha256'] = b'1' * 64  # another delta than s2 (else: a duplicate of s2)
" && "$PYTHON3" "$top_srcdir/tests/python/h5_redigest.py" "$d/nan.bd.h5" bits/b.weight/scale || fail "h5py"
    expect 3 "$d/nan.bd.h5: tensor b.weight: scale value 0 is not finite" --method median $S "$d/nan.bd.h5"
    cp "$d/s2.bd.h5" "$d/inf.bd.h5"
    "$PYTHON3" -c "
import h5py, numpy as np
with h5py.File('$d/inf.bd.h5', 'r+') as f:
    s = f['dense/c.dense']; v = s[()]; v[3, 4] = np.inf; s[...] = v
    f.attrs['content_sha256'] = b'2' * 64  # another delta than s2 (else: a duplicate of s2)
" && "$PYTHON3" "$top_srcdir/tests/python/h5_redigest.py" "$d/inf.bd.h5" dense/c.dense || fail "h5py"
    expect 3 "$d/inf.bd.h5: tensor c.dense: delta value 25 is not finite" --method krum "$d/inf.bd.h5" $S
    # verification beside the work (io/agg_stream.c): chunks of 1 MiB or
    # more are digested on a second thread while they are reduced; a flipped
    # sign bit in the last row of the largest tensor is still refused, with
    # no output, at 1 rank (3 deltas of 400k rows: a chunk of about 3 MiB)
    for s in 1 2 3; do "$MK" "$d/big$s.bd.h5" --owner "b$s" --seed $s --shape-rows 400000 || fail mkdelta; done
    "$PYTHON3" -c "
import h5py, numpy as np
with h5py.File('$d/big2.bd.h5', 'r+') as f:
    d = f['bits/a.weight/signs']
    v = d[d.shape[0] - 1]
    v[0] ^= np.array(1, dtype=v.dtype)
    d[d.shape[0] - 1] = v
" || fail "h5py flip"
    expect 3 "$d/big2.bd.h5: tensor a.weight: signs data does not match its recorded sha256" --method median \
        "$d/big1.bd.h5" "$d/big2.bd.h5" "$d/big3.bd.h5"
fi
rm -rf "$d"
