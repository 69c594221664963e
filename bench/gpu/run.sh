#!/bin/sh
# On a GPU machine with nvcc, cuBLAS and NCCL (no MPI/HDF5/OpenBLAS/Check
# needed): build the kernels, run every GPU test, then the GPU benchmarks.
#   bash bench/gpu/run.sh [BUILD_DIR]
# Exit: 0 all passed, 1 a test failed, 77 no GPU (everything built, tests
# skipped, benchmarks not run).
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/ds-gpu-build}
t0=$(date +%s)
sh "$root/tests/gpu/build.sh" "$out"
set +e
failed=0
skipped=0
ran=0
for t in test_kernels test_nccl; do
    [ -x "$out/$t" ] || continue
    echo "== $t"
    "$out/$t"
    rc=$?
    case $rc in
        0) echo "PASS $t"; ran=$((ran + 1)) ;;
        77) echo "SKIP $t"; skipped=$((skipped + 1)) ;;
        *) echo "FAIL $t (exit $rc)"; failed=$((failed + 1)) ;;
    esac
done
if [ $failed -gt 0 ]; then
    echo "run.sh: $failed test(s) failed"
    exit 1
fi
if [ $ran -eq 0 ]; then
    echo "run.sh: no GPU: tests skipped, benchmarks not run ($(( $(date +%s) - t0 ))s)"
    exit 77
fi
echo "== bench_gpu"
"$out/bench_gpu"
rc=$?
echo "run.sh: done in $(( $(date +%s) - t0 ))s"
exit $rc
