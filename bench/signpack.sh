#!/bin/sh
# Compress/apply kernels vs PyTorch (BitDelta's own method) and vs memcpy,
# one core, one 11008 x 4096 bf16 pair. Run from a build directory, or set
# BENCH_SIGNPACK (the bench_signpack program) and PYTHON3.
# Usage: bench/signpack.sh [REPS]   (the best of REPS runs of each)
set -eu
reps=${1:-5}
src=$(cd "$(dirname "$0")" && pwd)
prog=${BENCH_SIGNPACK:-./bench/bench_signpack}
py=${PYTHON3:-/usr/bin/python3}
[ -x "$prog" ] || { echo "signpack.sh: $prog not found: run from the build directory (make bench/bench_signpack) or set BENCH_SIGNPACK" >&2; exit 2; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT INT TERM
# One core for both sides: the kernels are single-threaded, torch gets 1 thread.
taskset -c 0 "$prog" --reps "$reps" > "$tmp"
if "$py" -c 'import torch' 2>/dev/null; then
    taskset -c 0 "$py" "$src/bench_signpack.py" --reps 3 --threads 1 >> "$tmp"
else
    echo "signpack.sh: $py has no torch: no PyTorch comparison" >&2
fi
cat "$tmp"
awk '
    { v[$1] = $2 }
    END {
        best = v["best_variant"]
        c = v["compress_" best "_gbps"]; a = v["apply_" best "_gbps"]
        printf "\ncompress (%s): %.2f GB/s = %.1f%% of memcpy (%.2f GB/s)", best, c, 100 * c / v["memcpy_input_gbps"], v["memcpy_input_gbps"]
        if ("torch_compress_gbps" in v) printf ", %.1fx PyTorch (%.3f GB/s)", c / v["torch_compress_gbps"], v["torch_compress_gbps"]
        printf "\napply (%s):    %.2f GB/s = %.1f%% of memcpy (%.2f GB/s)\n", best, a, 100 * a / v["memcpy_w_gbps"], v["memcpy_w_gbps"]
        if ("torch_mean_abs_delta" in v)
            printf "mean |delta|: kernels %s, PyTorch %s (different random data; same scale expected)\n", v["mean_abs_delta"], v["torch_mean_abs_delta"]
    }' "$tmp"
