#!/bin/sh
# Build the CUDA kernels, the GPU tests and the GPU benchmark with nvcc and
# gcc alone (no MPI, HDF5, OpenBLAS or Check): sh tests/gpu/build.sh [DIR]
# Programs land in DIR (default /tmp/ds-gpu-build). NVCCFLAGS, CUDA_HOME and
# JOBS may be set; the NCCL test is built when nccl.h is found.
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/ds-gpu-build}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
NVCCFLAGS=${NVCCFLAGS:-"-O3 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90"}
CC=${CC:-gcc}
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Wno-unused-parameter -I$root -I$CUDA_HOME/include"
LIBS="-L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcublas -lcudart -lm"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$out"
echo "build.sh: $NVCC $NVCCFLAGS -> $out"

# nvcc objects in parallel (at most JOBS at a time), then the C programs.
pids=""
n=0
for f in common bitpack aggregate bitmatmul; do
    "$NVCC" $NVCCFLAGS -I"$root" -Xcompiler -fno-threadsafe-statics,-fno-exceptions \
        -c "$root/kernels/cuda/$f.cu" -o "$out/$f.o" &
    pids="$pids $!"
    n=$((n + 1))
    if [ $n -ge "$JOBS" ]; then
        for p in $pids; do wait "$p"; done
        pids=""; n=0
    fi
done
for p in $pids; do wait "$p"; done
kobjs="$out/common.o $out/bitpack.o $out/aggregate.o $out/bitmatmul.o"

$CC $CFLAGS "$root/tests/gpu/test_kernels.c" "$root/tests/gpu/ref.c" $kobjs $LIBS -o "$out/test_kernels"
$CC $CFLAGS "$root/bench/gpu/bench_gpu.c" $kobjs $LIBS -o "$out/bench_gpu"
if [ -f "$CUDA_HOME/include/nccl.h" ] || [ -n "$NCCL_HOME" ]; then
    nccl_inc=${NCCL_HOME:+-I$NCCL_HOME/include}
    nccl_lib=${NCCL_HOME:+-L$NCCL_HOME/lib -Wl,-rpath,$NCCL_HOME/lib}
    $CC $CFLAGS $nccl_inc "$root/tests/gpu/test_nccl.c" "$root/src/comm_nccl.c" $kobjs \
        $nccl_lib -lnccl $LIBS -o "$out/test_nccl"
else
    echo "build.sh: nccl.h not found: test_nccl not built (set NCCL_HOME)"
fi
echo "build.sh: done"
