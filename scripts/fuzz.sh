#!/bin/sh
# Fuzz with libFuzzer (clang, ASan + UBSan).
# usage: scripts/fuzz.sh [SECONDS] [TARGET]   (default 60 s; FUZZ_DIR: work folder)
# TARGET safetensors (the default): the safetensors header parser, seeded with
#   tests/data/safetensors_bad/; a crashing input is copied there as a
#   regression test (tests/unit/test_safetensors parses every file there).
# TARGET hf_tokenizer: the tokenizer.json reader and encoder
#   (tests/fuzz/fuzz_hf_tokenizer.c), seeded with tests/fuzz/hf_tokenizer_corpus/;
#   a crashing input is copied there (tests/unit/test_hf_tokenizer replays
#   every file there through the target's checks).
# Builds the sources directly (no configure needed).
set -eu
secs=${1:-60}
target=${2:-safetensors}
top=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_DIR:-/tmp/ds-fuzz-$target}
mkdir -p "$work/corpus" "$work/inc" "$work/seed"
: > "$work/inc/config.h" # the sources need no configure results
cc="clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -I$work/inc -I$top $(mpicc -showme:compile) $(pkg-config --cflags jansson)"

case $target in
safetensors)
    bad=$top/tests/data/safetensors_bad
    # A valid seed, so mutations start from a well-formed header.
    hdr='{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,3],"data_offsets":[0,6]},"b":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}}'
    len=$(printf '%s' "$hdr" | wc -c)
    printf "$(printf '\\%03o' "$len")\\000\\000\\000\\000\\000\\000\\000%s" "$hdr" > "$work/seed/good.safetensors"
    head -c 14 /dev/zero >> "$work/seed/good.safetensors"
    cat > "$work/fuzz.dict" <<'DICT'
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
    $cc "$top/tests/fuzz/fuzz_safetensors.c" "$top/io/safetensors.c" "$top/src/common.c" \
        $(mpicc -showme:link) $(pkg-config --libs jansson) -lm -o "$work/fuzz"
    max_len=4096
    ;;
hf_tokenizer)
    bad=$top/tests/fuzz/hf_tokenizer_corpus
    cat > "$work/fuzz.dict" <<'DICT'
"\"type\""
"\"BPE\""
"\"vocab\""
"\"merges\""
"\"model\""
"\"added_tokens\""
"\"normalizer\""
"\"pre_tokenizer\""
"\"post_processor\""
"\"decoder\""
"\"Sequence\""
"\"Prepend\""
"\"Replace\""
"\"Split\""
"\"ByteLevel\""
"\"ByteFallback\""
"\"Fuse\""
"\"Strip\""
"\"TemplateProcessing\""
"\"SpecialToken\""
"\"Regex\""
"\"String\""
"\"Isolated\""
"\"byte_fallback\":true"
"\"fuse_unk\":true"
"\"ignore_merges\":true"
"\"unk_token\""
"\"special\":true"
"\"lstrip\":true"
"\"rstrip\":true"
"\\u2581"
"<0x0A>"
"\x00"
DICT
    $cc "$top/tests/fuzz/fuzz_hf_tokenizer.c" "$top/io/hf_tokenizer.c" "$top/src/bpe.c" "$top/src/common.c" \
        $(mpicc -showme:link) $(pkg-config --libs jansson libpcre2-8) -lm -o "$work/fuzz"
    max_len=16384
    ;;
*)
    echo "fuzz.sh: unknown target $target (safetensors, hf_tokenizer)" >&2
    exit 2
    ;;
esac

rc=0
"$work/fuzz" -max_total_time="$secs" -max_len=$max_len -timeout=20 -dict="$work/fuzz.dict" \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$work/seed" "$bad" || rc=$?
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -f "$f" ] || continue
    cp "$f" "$bad/fuzz-$(basename "$f")"
    echo "fuzz.sh: kept $f as $bad/fuzz-$(basename "$f")" >&2
done
exit $rc
