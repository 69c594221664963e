#!/bin/bash
# The fuzz campaign on a many-core machine (run there, e.g. the GPU machine
# of bench/gpu/device.sh; no GPU needed): every libFuzzer target packed by
# `FUZZ=DIR sh bench/gpu/bundle.sh` runs at once, one process each (the
# HDF5 targets in fork mode, going on after a crash, as scripts/fuzz.sh
# runs them), for SECONDS. Under OUT/TARGET: the log's last 200 lines
# (final stats, any sanitizer report), every crash/leak/timeout/oom input,
# and the inputs the run added to the corpus (new.tar.gz).
#   bash bench/gpu/fuzz_device.sh BUNDLE_DIR SECONDS OUT
set -u
b=$(cd "$1" && pwd) secs=$2 out=$3
. "$b/env.sh"
cd "$out" || exit 2
for d in "$b"/fuzz/*/; do
    t=$(basename "$d")
    mkdir -p "$out/$t/new"
    max_len=16384 opts= extra=
    case $t in
    safetensors) max_len=4096 ;;
    h5_*)
        max_len=65536 opts=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024
        extra="-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -rss_limit_mb=4096 -malloc_limit_mb=2048"
        ;;
    esac
    dict=
    [ -s "$d/dict" ] && dict=-dict=$d/dict
    (
        cd "$out/$t" || exit 1
        # shellcheck disable=SC2086
        ASAN_OPTIONS=$opts "$b/bin/fuzz_$t" -max_total_time="$secs" -max_len=$max_len -timeout=20 $dict $extra \
            -artifact_prefix="$out/$t/" -print_final_stats=1 "$out/$t/new" "$d/corpus" > "$out/$t/full.log" 2>&1
        echo "exit $?" >> "$out/$t/full.log"
        tail -n 200 "$out/$t/full.log" > "$out/$t/log"
        grep -c 'ERROR: AddressSanitizer\|runtime error:\|ERROR: libFuzzer' "$out/$t/full.log" > "$out/$t/reports" || true
        # every report's first frames, for triage (the full log can be large)
        grep -A12 'ERROR: AddressSanitizer\|runtime error:' "$out/$t/full.log" | head -n 2000 > "$out/$t/reports.txt" || true
        rm -f "$out/$t/full.log"
        tar -C "$out/$t" -czf "$out/$t/new.tar.gz" new && rm -rf "$out/$t/new"
    ) &
done
wait
for d in "$out"/*/; do
    t=$(basename "$d")
    echo "== $t: $(grep -h -E '^#[0-9]+' "$d/log" | tail -n 1 | cut -c1-160) | reports $(cat "$d/reports" 2>/dev/null) artifacts $(ls "$d" | grep -c -E '^(crash|leak|timeout|oom)-')"
done
