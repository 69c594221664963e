#!/bin/bash
# Every GPU check and figure in one run, on a GPU machine that has CUDA (nvcc)
# and Python with numpy/h5py but not the MPI/HDF5 stack, from the source
# tree's root, with the bundle of bench/gpu/bundle.sh beside it:
#   sh bench/gpu/bundle.sh                  # here: build/ -> .gpu.tar.xz
#   bash bench/gpu/device.sh [LOG_DIR]      # there
# Sections (each under its own time limit, log LOG_DIR/NN-name.log, a summary
# line each in LOG_DIR/summary.txt):
#   kernels  bench/gpu/run.sh: nvcc build, test_kernels, test_nccl, bench_gpu
#   jobs     tests/gpu/test_jobs.sh: compress/apply --device cuda = cpu = numpy
#            (1 and 2 ranks), aggregate --comm nccl = mpi
#   comm     tests/unit/test_comm at 1 rank (the NCCL backend through MPI)
#   speed    compress and apply of LAYERS 7B-shaped bf16 blocks, --device cpu
#            vs cuda, 1 rank, same content hash
#   stream   bench/stream_bench.sh (CPU jobs vs cat, 2 ranks vs 1)
# SECTIONS="kernels jobs" runs some only.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
log=${1:-/tmp/ds-device-logs}
mkdir -p "$log"
cd "$root" || exit 1
sum=$log/summary.txt
: >"$sum"
t00=$(date +%s)
note() { echo "$*" | tee -a "$sum"; }
# section NAME LIMIT_S CMD...: run with a time limit, log, one summary line
n=0
section() {
    name=$1 lim=$2; shift 2
    case " ${SECTIONS:-kernels jobs comm speed stream} " in *" $name "*) ;; *) return 0 ;; esac
    n=$((n + 1))
    f=$log/$(printf %02d $n)-$name.log
    t0=$(date +%s)
    echo "==== $name (limit ${lim}s)"
    timeout -k 5 "$lim" "$@" >"$f" 2>&1
    rc=$?
    tail -n 40 "$f"
    note "$name: exit $rc in $(($(date +%s) - t0)) s"
}

{
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    echo "cores $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    free -g | sed -n 2p
    uname -r
} 2>&1 | tee "$log/00-machine.txt"

# the bundle and CUDA's and NCCL's places
bun=/tmp/ds-bundle
rm -rf "$bun" && mkdir -p "$bun" && tar -C "$bun" -xJf "$root/.gpu.tar.xz" || { note "no bundle"; exit 1; }
# shellcheck disable=SC1091
. "$bun/.gpu/env.sh"
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
export CUDA_HOME
nccl=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
if [ -n "$nccl" ] && [ ! -f "$CUDA_HOME/include/nccl.h" ]; then
    mkdir -p /tmp/nccl/lib && ln -sfn "$nccl/include" /tmp/nccl/include &&
        ln -sf "$nccl/lib/libnccl.so.2" /tmp/nccl/lib/libnccl.so.2 &&
        ln -sf libnccl.so.2 /tmp/nccl/lib/libnccl.so
    export NCCL_HOME=/tmp/nccl
    LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/tmp/nccl/lib
fi
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$CUDA_HOME/lib64"
# stream_bench.sh calls /usr/bin/time and bc
[ -x /usr/bin/time ] || cp "$bun/.gpu/libexec/time" /usr/bin/time
if ! command -v bc >/dev/null; then printf '#!/bin/sh\nexec %s "$@"\n' "$bun/.gpu/bin/bc" >/usr/bin/bc; chmod +x /usr/bin/bc; fi
export PYTHON3=python3 top_srcdir=$root top_builddir=$bun/.gpu/bin
echo "CUDA_HOME=$CUDA_HOME NCCL_HOME=${NCCL_HOME:-} $(nvcc --version | tail -1)"
deltasoup --version || { note "bundled deltasoup does not start"; ldd "$DELTASOUP" | grep 'not found'; exit 1; }
mpiexec -n 2 deltasoup compress --dry-run --shapes llama-7b --device cuda --quiet >/dev/null ||
    note "mpiexec -n 2 deltasoup --device cuda does not run"

section kernels 200 bash bench/gpu/run.sh /tmp/ds-gpu-build
section jobs 200 sh tests/gpu/test_jobs.sh
section comm 40 env CK_FORK=no mpiexec -n 1 "$bun/.gpu/bin/test_comm"

speed() {
    set -e
    d=/tmp/ds-speed
    rm -rf "$d" && mkdir -p "$d"
    deltasoup import --from llama2c data/models/stories260K/stories260K.bin --dtype bf16 -o "$d/t.h5" --quiet >/dev/null
    python3 bench/compress_gen.py "$d/t.h5" "$d/b.h5" "$d/f.h5" "${LAYERS:-4}"
    ls -l "$d"
    # the generator's checkpoints carry no content hash: apply needs --force
    for dev in cpu cuda cpu cuda; do
        cat "$d/b.h5" "$d/f.h5" >/dev/null
        deltasoup compress --base "$d/b.h5" --finetuned "$d/f.h5" -o "$d/$dev.bd.h5" --device $dev --json --quiet \
            --overwrite >"$d/c-$dev.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("compress --device", r.get("device"),
            "%.2f s" % r["seconds"], "%.2f GB/s" % r["input_gb_per_s"], r["content_sha256"])' "$d/c-$dev.json"
        cat "$d/b.h5" "$d/cpu.bd.h5" >/dev/null
        t0=$(date +%s.%N)
        deltasoup apply --base "$d/b.h5" --delta "$d/cpu.bd.h5" -o "$d/a-$dev.h5" --device $dev --quiet \
            --overwrite --force >"$d/a.out" 2>/dev/null
        echo "apply --device $dev $(echo "$(date +%s.%N) - $t0" | bc) s $(sed -n 's/^content_sha256: //p' "$d/a.out")"
    done
    for dev in cpu cuda; do
        deltasoup compress --base "$d/b.h5" --finetuned "$d/f.h5" -o "$d/nv.bd.h5" --device $dev --json --quiet \
            --overwrite --no-verify >"$d/c-nv.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("compress --no-verify --device", r.get("device"),
            "%.2f s" % r["seconds"], "%.2f GB/s" % r["input_gb_per_s"], r["content_sha256"])' "$d/c-nv.json"
    done
    for n in 2 4 8; do
        mpiexec -n $n deltasoup compress --base "$d/b.h5" --finetuned "$d/f.h5" -o "$d/n.bd.h5" --device cuda --json \
            --quiet --overwrite >"$d/c-n.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("compress --device cuda, '$n' ranks",
            "%.2f s" % r["seconds"], "%.2f GB/s" % r["input_gb_per_s"], r["content_sha256"])' "$d/c-n.json"
        mpiexec -n $n deltasoup compress --base "$d/b.h5" --finetuned "$d/f.h5" -o "$d/n.bd.h5" --device cpu --json \
            --quiet --overwrite >"$d/c-n.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("compress --device cpu, '$n' ranks",
            "%.2f s" % r["seconds"], "%.2f GB/s" % r["input_gb_per_s"], r["content_sha256"])' "$d/c-n.json"
    done
    rm -rf "$d"
}
export -f speed 2>/dev/null
section speed 150 bash -c speed
section stream 170 env LAYERS=${LAYERS:-4} REPS=2 sh bench/stream_bench.sh
note "device.sh: $(($(date +%s) - t00)) s in all"
