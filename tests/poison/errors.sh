#!/bin/sh
# Refusals of `deltasoup poison`: each is one clear line (naming the file and
# tensor where there is one), a non-zero exit code of the documented kind,
# and no output left behind (the output folder is not even created).
set -u
. "$(dirname "$0")/../defaults.sh"
name=errors
. "$top_srcdir/tests/poison/common.sh"
for s in 1 2 3; do "$MK" "$d/h$s.bd.h5" --owner "u$s" --seed $s || fail mkdelta; done
"$MK" "$d/rows.bd.h5" --owner x --seed 7 --shape-rows 38 || fail mkdelta
"$MK" "$d/mode.bd.h5" --owner x --seed 7 --mode col || fail mkdelta
"$MK" "$d/base.bd.h5" --owner x --seed 7 --base 2222222222222222222222222222222222222222222222222222222222222222 || fail mkdelta
cp "$d/h3.bd.h5" "$d/nan.bd.h5"
"$PYTHON3" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f['dense/c.dense'][0,3]=float('nan'); f.close()" "$d/nan.bd.h5" &&
    "$PYTHON3" "$top_srcdir/tests/python/h5_redigest.py" "$d/nan.bd.h5" dense/c.dense || fail "writing a NaN"
echo "not hdf5" > "$d/text.bd.h5"
out="$d/out"
H="$d/h1.bd.h5 $d/h2.bd.h5"

# expect NP CODE "message part" poison-args...
expect() {
    np=$1 want=$2 msg=$3
    shift 3
    if [ "$np" = 1 ]; then
        timeout 60 "$DELTASOUP" poison -o "$out" --quiet "$@" > "$d/stdout" 2> "$d/stderr"
    else
        timeout 60 ${MPIEXEC:-mpiexec} -n "$np" "$DELTASOUP" poison -o "$out" --quiet "$@" > "$d/stdout" 2> "$d/all"
    fi
    rc=$?
    # under mpiexec: our lines only (mpiexec adds its own report of the exit code)
    [ "$np" = 1 ] || grep '^deltasoup' "$d/all" > "$d/stderr"
    [ $rc -eq "$want" ] || fail "exit $rc, wanted $want at $np ranks: $*: $(cat "$d/stderr")"
    grep -qF -- "$msg" "$d/stderr" || fail "no '$msg' in: $(cat "$d/stderr")"
    [ "$(grep -c . "$d/stderr")" -eq 1 ] || fail "more than one line: $(cat "$d/stderr")"
    [ ! -e "$out" ] || fail "output left by: $* ($(ls -A "$out"))"
}
expect 1 2 "--count: expected an integer in [1," --attack ipm --count 0 $H
expect 1 2 "--count K is required" --attack ipm $H
expect 1 2 "deltasoup poison: error: unknown option '--bogus' (see --help)" --attack ipm --count 1 --bogus $H
expect 1 2 "--seed: expected an integer in [0," --attack gaussian --count 1 --seed -1 $H
expect 1 2 "--attack: expected sign-flip, scale, gaussian, alie or ipm, got 'flip'" --attack flip --count 1 $H
expect 1 2 "--attack is required" --count 1 $H
expect 1 2 "--strength: expected a number" --attack scale --count 1 --strength nan $H
expect 1 2 "--strength inf: must be a finite number" --attack scale --count 1 --strength inf $H
expect 1 2 "--strength -1: gaussian needs a scale >= 0" --attack gaussian --count 1 --strength -1 $H
expect 1 2 "no honest deltas" --attack sign-flip --count 1
expect 2 2 "alie needs at least 2 honest deltas (a per-coordinate std), got 1" --attack alie --count 1 "$d/h1.bd.h5"
expect 1 2 "alie: K = 3 of 5 deltas are a majority, z_max is unbounded (give --strength z)" --attack alie --count 3 $H
expect 2 3 "$d/rows.bd.h5: tensor a.weight: shape [38, 150], but [37, 150] in $d/h1.bd.h5" --attack ipm --count 2 $H "$d/rows.bd.h5"
expect 1 3 "$d/mode.bd.h5: tensor a.weight: scale mode col, but tensor in $d/h1.bd.h5" --attack alie --count 1 $H "$d/mode.bd.h5"
expect 1 3 "$d/base.bd.h5: base_sha256 2222222222222222... differs from $d/h1.bd.h5's" --attack scale --count 1 $H "$d/base.bd.h5"
expect 1 3 "$d/missing.bd.h5" --attack scale --count 1 $H "$d/missing.bd.h5"
expect 1 3 "$d/text.bd.h5" --attack scale --count 1 $H "$d/text.bd.h5"
expect 2 3 "$d/nan.bd.h5: tensor c.dense: element 3 is not finite" --attack sign-flip --count 2 $H "$d/nan.bd.h5"
# 1e6 times a dense F16 value overflows F16 (65504); the error names the output being made
expect 1 3 "$out/scale-0.bd.h5: tensor e.half: element" --attack scale --count 2 --strength 1e6 $H
expect 2 3 "overflows F16 (--strength too large?)" --attack scale --count 2 --strength 1e6 $H

# An existing output needs --overwrite (and stays as it was); with it, it is replaced.
"$DELTASOUP" poison -o "$out" --quiet --attack ipm --count 2 $H > /dev/null 2> "$d/stderr" || fail "ipm: $(cat "$d/stderr")"
cp "$out/ipm-1.bd.h5" "$d/before"
rm "$out/ipm-0.bd.h5"
"$DELTASOUP" poison -o "$out" --quiet --attack ipm --count 2 --strength 5 $H > /dev/null 2> "$d/stderr"
[ $? -eq 4 ] && grep -q "$out/ipm-1.bd.h5: output exists (use --overwrite" "$d/stderr" || fail "existing output: $(cat "$d/stderr")"
[ "$(ls -A "$out")" = "ipm-1.bd.h5" ] || fail "refused run wrote something: $(ls -A "$out")"
cmp -s "$out/ipm-1.bd.h5" "$d/before" || fail "the existing output changed"
"$DELTASOUP" poison -o "$out" --quiet --overwrite --attack ipm --count 2 --strength 5 $H > /dev/null 2> "$d/stderr" \
    || fail "--overwrite: $(cat "$d/stderr")"
[ "$(ls -A "$out" | tr '\n' ' ')" = "ipm-0.bd.h5 ipm-1.bd.h5 " ] || fail "--overwrite left: $(ls -A "$out")"
cmp -s "$out/ipm-1.bd.h5" "$d/before" && fail "--overwrite did not replace the output"
rm -rf "$d"
