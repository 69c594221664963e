#!/bin/sh
# Fuzz the safetensors header parser with libFuzzer (clang, ASan + UBSan).
# usage: scripts/fuzz.sh [SECONDS]   (default 60; FUZZ_DIR: work folder)
# Builds io/safetensors.c directly (no configure needed), seeds the corpus
# with tests/data/safetensors_bad/, and copies any crashing input there as a
# regression test (tests/unit/test_safetensors parses every file there).
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_DIR:-/tmp/ds-fuzz-safetensors}
bad=$top/tests/data/safetensors_bad
mkdir -p "$work/corpus" "$work/inc" "$work/seed"
: > "$work/inc/config.h" # the parser needs no configure results

# A valid seed, so mutations start from a well-formed header.
hdr='{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,3],"data_offsets":[0,6]},"b":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}}'
len=$(printf '%s' "$hdr" | wc -c)
printf "$(printf '\\%03o' "$len")\\000\\000\\000\\000\\000\\000\\000%s" "$hdr" > "$work/seed/good.safetensors"
head -c 14 /dev/zero >> "$work/seed/good.safetensors"
cat > "$work/st.dict" <<'DICT'
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"BF16\""
"\"F16\""
"\"U8\""
"[0,"
"]}"
DICT

clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$work/inc" -I"$top" $(mpicc -showme:compile) $(pkg-config --cflags jansson) \
    "$top/tests/fuzz/fuzz_safetensors.c" "$top/io/safetensors.c" "$top/src/common.c" \
    $(mpicc -showme:link) $(pkg-config --libs jansson) -lm -o "$work/fuzz_safetensors"

rc=0
"$work/fuzz_safetensors" -max_total_time="$secs" -max_len=4096 -dict="$work/st.dict" \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$work/seed" "$bad" || rc=$?
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -f "$f" ] || continue
    cp "$f" "$bad/fuzz-$(basename "$f")"
    echo "fuzz.sh: kept $f as $bad/fuzz-$(basename "$f")" >&2
done
exit $rc
