#!/bin/sh
# The packing convention, checked against an independent numpy reading of it
# (bitpack_ref.py) for every kernel variant this CPU runs, and DS_SIMD
# handling. Needs the built tests/unit/test_bitpack.
set -eu
. "$(dirname "$0")/../defaults.sh"
prog="$top_builddir/tests/unit/test_bitpack"
py="$PYTHON3"
here="$top_srcdir/tests/python"
"$py" -c 'import numpy' 2>/dev/null || { echo "SKIP: $py has no numpy"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

best=$("$prog" --simd)
for v in ref avx2 avx512; do
    got=$(DS_SIMD=$v "$prog" --simd 2>"$tmp/err")
    if [ "$got" != "$v" ]; then
        # only acceptable when this CPU cannot run it: then a warning, and the best
        grep -q "DS_SIMD=$v: this CPU cannot run it" "$tmp/err"
        [ "$got" = "$best" ]
        echo "variant $v: not supported here"
        continue
    fi
    DS_SIMD=$v "$prog" --dump "$tmp/$v.bin"
    "$py" "$here/bitpack_ref.py" "$tmp/$v.bin"
done

# An unknown name: one warning line, and the best variant.
got=$(DS_SIMD=sse9 "$prog" --simd 2>"$tmp/err")
[ "$got" = "$best" ]
grep -q "DS_SIMD=sse9 is not ref, avx2 or avx512" "$tmp/err"
echo "ok"
