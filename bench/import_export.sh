#!/bin/sh
# Import and export of a ~1 GB synthetic bf16 safetensors model against `cp`
# of the same file (the floor: read + write every byte once), in one run.
# usage: bench/import_export.sh [DELTASOUP] [GB]   (BENCH_DIR: scratch folder,
# default a new one under /tmp; removed afterwards). Page cache is warm for
# all three (the generator just wrote the input); peak RSS from /usr/bin/time.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
DS=${1:-${DELTASOUP:-./deltasoup}}
GB=${2:-1}
PY=${PYTHON3:-/usr/bin/python3}
W=$(mktemp -d "${BENCH_DIR:-/tmp}/ds-bench-ie-XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir "$W/in" "$W/out"
$PY "$top/bench/import_export_gen.py" "$W/in" "$GB"
bytes=$(wc -c < "$W/in/model.safetensors")
cat "$W/in/model.safetensors" > /dev/null

# run NAME cmd...: wall seconds and peak RSS (MB) of one command, file synced.
run() {
    name=$1; shift
    t0=$(date +%s.%N)
    /usr/bin/time -f %M -o "$W/rss" "$@" > /dev/null
    sync
    t1=$(date +%s.%N)
    eval "t_$name=$(echo "$t1 - $t0" | bc)"
    eval "m_$name=$(( $(cat "$W/rss") / 1024 ))"
}
run cp cp "$W/in/model.safetensors" "$W/cp.safetensors"
rm "$W/cp.safetensors"
run import "$DS" import --from safetensors "$W/in/model.safetensors" -o "$W/m.h5" --quiet
run export "$DS" export --to safetensors "$W/m.h5" -o "$W/out/model.safetensors" --quiet
cmp "$W/in/model.safetensors" "$W/out/model.safetensors" || { echo "export differs from the input"; exit 1; }
printf 'file: %s bytes (bf16, %s GB requested)\n' "$bytes" "$GB"
for s in cp import export; do
    eval "t=\$t_$s m=\$m_$s"
    printf '%-7s %7.2f s  %7.0f MB/s  peak RSS %5d MB  %5.2fx cp\n' "$s" "$t" \
        "$(echo "$bytes / $t / 1000000" | bc -l)" "$m" "$(echo "$t / $t_cp" | bc -l)"
done
