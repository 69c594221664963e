#!/bin/sh
# Fuzz the readers with libFuzzer (clang, ASan + UBSan).
# usage: scripts/fuzz.sh TARGET [SECONDS]   (default 60 s; the old order
#        scripts/fuzz.sh SECONDS [TARGET] still works)
#        scripts/fuzz.sh all [SECONDS]      every target in turn, SECONDS each
#        scripts/fuzz.sh list               the targets
# FUZZ_DIR: work folder (default /tmp/ds-fuzz-TARGET); FUZZ_BUILD: the
# instrumented build of libdeltasoup.a the reader targets link (default
# /tmp/ds-fuzz/build: configured here once with CC=mpicc OMPI_CC=clang and
# -fsanitize=fuzzer-no-link,address,undefined, then `make libdeltasoup.a`).
# A crash, leak, timeout or out-of-memory input is copied into the target's
# committed corpus as fuzz-crash-... (a regression seed make check replays).
#
# TARGET safetensors: the safetensors header parser, seeded with
#   tests/data/safetensors_bad/; a crashing input is copied there as a
#   regression test (tests/unit/test_safetensors parses every file there).
# TARGET hf_tokenizer: the tokenizer.json reader and encoder
#   (tests/fuzz/fuzz_hf_tokenizer.c), seeded with tests/fuzz/hf_tokenizer_corpus/;
#   a crashing input is copied there (tests/unit/test_hf_tokenizer replays
#   every file there through the target's checks).
# The reader targets (tests/fuzz/fuzz_NAME.c, corpus tests/fuzz/NAME_corpus/,
#   replayed by make check through tests/fuzz/replay.sh):
#   h5_model      io/h5_model.c   HDF5 model checkpoint (a tmpfs file, MPI_COMM_SELF)
#   h5_delta      io/h5_delta.c   HDF5 delta file (the same way)
#   llama2c       io/llama2c.c    llama2.c legacy checkpoint
#   tokenizer     io/tokenizer.c  llama2.c tokenizer.bin, encode/decode
#   csv           io/csv.c        CSV (memory and file)
#   text          io/text.c       text corpora (<|endoftext|> documents)
#   datasets      eval/datasets.c TruthfulQA JSON/CSV, HarmBench, AdvBench, XSTest, MT-Bench JSONL
#   checkpoint    src/checkpoint.c resumable-job checkpoints
#   gate_results  io/gate_results.c eval --json results read by the gate
#   trusted_keys  src/sign.c      --trusted-keys file and secret key file
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
readers="h5_model h5_delta llama2c tokenizer csv text datasets checkpoint gate_results trusted_keys"
case ${1:-} in
'' | *[!0-9]*) target=${1:-safetensors}; secs=${2:-60} ;;
*) secs=$1; target=${2:-safetensors} ;;
esac
case $target in
list) echo safetensors hf_tokenizer $readers; exit 0 ;;
all)
    rc=0
    for t in safetensors hf_tokenizer $readers; do
        echo "fuzz.sh: == $t ($secs s)" >&2
        "$0" "$t" "$secs" || rc=1
    done
    exit $rc
    ;;
esac
case $secs in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number: $secs" >&2; exit 2 ;; esac
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
    case " $readers " in *" $target "*) ;; *)
        echo "fuzz.sh: unknown target $target ($(echo safetensors hf_tokenizer $readers | tr ' ' ,))" >&2
        exit 2 ;;
    esac
    bad=$top/tests/fuzz/${target}_corpus
    build=${FUZZ_BUILD:-/tmp/ds-fuzz/build}
    export OMPI_CC=clang
    if [ ! -f "$build/Makefile" ]; then
        mkdir -p "$build"
        (cd "$build" && "$top/configure" -q CC=mpicc \
            CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined")
    fi
    make -s -C "$build" -j2 libdeltasoup.a
    libs=$(printf 'fuzz-print-libs:\n\t@echo $(DS_LIBS)\n' | make -s -C "$build" -f Makefile -f - fuzz-print-libs)
    mpicc -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -I"$build" -I"$top" $(pkg-config --cflags jansson) \
        "$top/tests/fuzz/fuzz_$target.c" "$build/libdeltasoup.a" $libs -o "$work/fuzz"
    : > "$work/fuzz.dict"
    [ -f "$top/tests/fuzz/$target.dict" ] && cp "$top/tests/fuzz/$target.dict" "$work/fuzz.dict"
    max_len=16384
    case $target in h5_*) max_len=65536 ;; esac
    ;;
esac
# The HDF5 targets: MPI's own allocations are reported as leaks at exit, so
# no leak checking (as the MPI tests do); HDF5 sizes its buffers from the
# file's (corrupt) metadata and copes with a failed malloc, so allocations over
# 1 GiB fail instead of aborting; and since HDF5 itself (not instrumented, not
# ours) has memory errors on corrupt files (docs/robustness.md "Fuzzing"),
# they run in fork mode and go on after a crash: every crash is kept.
extra=
case $target in h5_*)
    export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024${ASAN_OPTIONS:+:$ASAN_OPTIONS}
    extra="-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -rss_limit_mb=4096 -malloc_limit_mb=2048"
    ;;
esac
dict=
[ -s "$work/fuzz.dict" ] && dict=-dict=$work/fuzz.dict

rc=0
rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* # kept by an earlier run
"$work/fuzz" -max_total_time="$secs" -max_len=$max_len -timeout=20 $dict $extra \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$work/seed" "$bad" || rc=$?
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -f "$f" ] || continue
    cp "$f" "$bad/fuzz-$(basename "$f")"
    echo "fuzz.sh: kept $f as $bad/fuzz-$(basename "$f")" >&2
done
exit $rc
