#!/bin/sh
# Pack a built deltasoup with the MPI/HDF5/OpenBLAS runtime it links, for a
# GPU machine that has CUDA (and NCCL) but none of the rest of the stack:
#   sh bench/gpu/bundle.sh [BUILD_DIR] [OUT_DIR]     (defaults: build, .gpu)
# OUT_DIR gets libexec/ (deltasoup, test programs, Open MPI's orterun as
# mpiexec, time, bc), bin/ (a wrapper of each that sets its library path),
# lib/ (every shared library they and Open MPI's plugins need, except the C
# library, the C++ runtime and CUDA's own libraries, which the GPU machine
# has) and root/ (Open MPI's and PMIx's plugin and help folders at their
# Debian paths). On the GPU machine, `. OUT_DIR/env.sh` sets PATH and Open
# MPI's plugin paths; bench/gpu/device.sh uses it.
# Also OUT_DIR.tar.xz, the same packed (about 20 MB). Debian 12 / Open MPI 4.1 layout.
# FUZZ=DIR also packs the libFuzzer targets built by scripts/fuzz.sh with
# FUZZ_DIR=DIR/TARGET (DIR/TARGET/fuzz) as libexec/fuzz_TARGET, with their
# corpora (the run's, its seeds and the committed one) under fuzz/TARGET/
# and their dictionary: bench/gpu/fuzz_device.sh runs them on the machine.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
out=${2:-$top/.gpu}
ma=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
rm -rf "$out"
mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/root"
cp "$build/deltasoup" "$out/libexec/"
for t in tests/unit/test_comm tests/gpu/test_kernels tests/gpu/test_nccl; do
    [ -x "$build/$t" ] && cp "$build/$t" "$out/libexec/"
done
if [ -n "${FUZZ:-}" ]; then
    for d in "$FUZZ"/*/; do
        t=$(basename "$d")
        [ -x "$d/fuzz" ] || continue
        cp "$d/fuzz" "$out/libexec/fuzz_$t"
        mkdir -p "$out/fuzz/$t/corpus"
        [ -s "$d/fuzz.dict" ] && cp "$d/fuzz.dict" "$out/fuzz/$t/dict"
        case $t in
        safetensors) committed=$top/tests/data/safetensors_bad ;;
        *) committed=$top/tests/fuzz/${t}_corpus ;;
        esac
        for c in "$d/corpus" "$d/seed" "$committed"; do
            [ -d "$c" ] && find "$c" -maxdepth 1 -type f -exec cp {} "$out/fuzz/$t/corpus/" \;
        done
    done
fi
cp "$(command -v orterun)" "$out/libexec/mpiexec"
cp /usr/bin/time "$(command -v bc)" "$out/libexec/"    # bench/stream_bench.sh's tools
# bin/: wrappers that put lib/ first on the library path of these programs
# alone (the machine's own programs, python3 among them, keep their libraries)
for f in "$out"/libexec/*; do
    cat >"$out/bin/${f##*/}" <<EOF
#!/bin/sh
b=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$b/lib:\$b/root/usr/lib/$ma/pmix2/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$b/libexec/${f##*/}" "\$@"
EOF
    chmod +x "$out/bin/${f##*/}"
done
for d in /usr/lib/$ma/openmpi /usr/lib/$ma/pmix2 /usr/share/openmpi /etc/openmpi; do
    [ -d "$d" ] || continue
    mkdir -p "$out/root$(dirname "$d")"
    cp -a "$d" "$out/root$d"
done
rm -rf "$out/root/usr/lib/$ma/openmpi/include"
# a program that calls MPI_Init without mpiexec (singleton: the fuzz
# targets of the HDF5 readers) starts $OPAL_PREFIX/bin/orted
mkdir -p "$out/root/usr/bin"
cp "$(command -v orted)" "$out/root/usr/bin/orted"
# the shared libraries of the programs and of every plugin, minus what the
# GPU machine brings (libc and friends, libstdc++, CUDA) and the network
# fabrics' libraries (their plugins then do not load, as on a machine
# without those fabrics; the jobs run over shared memory)
skip='^(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia|libucp|libucs|libuct|libucm|libfabric|libibverbs|librdmacm|libpsm|libpsm2|libefa|libmlx5)\.so'
find "$out/libexec" "$out/root" -type f \( -perm -u+x -o -name '*.so*' \) | while read -r f; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
    echo "$name" | grep -Eq "$skip" && continue
    [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
done
cat >"$out/env.sh" <<EOF
# sourced on the GPU machine: . $(basename "$out")/env.sh
b=\${DS_BUNDLE:-\$(cd "\$(dirname "\${BASH_SOURCE:-\$0}")" 2>/dev/null && pwd)}
[ -x "\$b/bin/deltasoup" ] || { echo "env.sh: source it from bash, or set DS_BUNDLE to the bundle's folder" >&2; return 1; }
export PATH="\$b/bin:\$PATH"
export OPAL_PREFIX="\$b/root/usr"
export OMPI_MCA_mca_base_component_path="\$b/root/usr/lib/$ma/openmpi/lib/openmpi3"
export PMIX_MCA_mca_base_component_path="\$b/root/usr/lib/$ma/pmix2/lib/pmix"
export OMPI_MCA_mca_base_component_show_load_errors=0 PMIX_MCA_pcompress_base_silence_warning=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export MPIEXEC=mpiexec DELTASOUP="\$b/bin/deltasoup"
EOF
# the carried form: one compressed file (libopenblas alone is 35 MB raw)
tar -C "$(dirname "$out")" -cJf "$out.tar.xz" "$(basename "$out")"
echo "bundle.sh: $out ($(du -sh "$out" | cut -f1)), $out.tar.xz ($(du -sh "$out.tar.xz" | cut -f1))"
