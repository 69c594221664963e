#!/bin/sh
# compress end to end on synthetic 7B-shaped decoder blocks (bf16 HDF5 files
# of ~1.6 GB each, 4 layers by default; generated into BENCH_DIR, deleted
# after) at 1 and 2 ranks: seconds, GB/s read (base + fine-tune), speedup,
# peak RSS per rank. Run once by hand (not part of make check):
#   DELTASOUP=build/deltasoup sh bench/compress_bench.sh
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
DELTASOUP=${DELTASOUP:-$top/build/deltasoup}
PY=${PYTHON3:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
LAYERS=${LAYERS:-4}
dir=${BENCH_DIR:-/tmp}/ds-compress-bench.$$
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$DELTASOUP" import --from llama2c "$top/data/models/stories260K/stories260K.bin" --dtype bf16 -o "$dir/template.h5" --quiet >/dev/null
t0=$(date +%s)
$PY "$top/bench/compress_gen.py" "$dir/template.h5" "$dir/base.h5" "$dir/ft.h5" "$LAYERS"
echo "generated $LAYERS 7B-shaped layers in $(( $(date +%s) - t0 )) s: $(du -h "$dir/base.h5" | cut -f1) + $(du -h "$dir/ft.h5" | cut -f1)"
sync
echo "ranks seconds GB/s speedup peak_rss_MB_per_rank ratio"
t1=
for n in 1 2; do
    # a warm page cache for both runs: read the inputs once first
    cat "$dir/base.h5" "$dir/ft.h5" >/dev/null
    $MPIEXEC -n "$n" "$DELTASOUP" compress --base "$dir/base.h5" --finetuned "$dir/ft.h5" -o "$dir/d$n.bd.h5" \
        --json --quiet --overwrite >"$dir/r$n.json"
    $PY - "$dir/r$n.json" "$n" "${t1:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t1 = float(sys.argv[3]) if sys.argv[3] else r["seconds"]
print("%d %.2f %.2f %.2f %.0f %.3f" % (int(sys.argv[2]), r["seconds"], r["input_gb_per_s"], t1 / r["seconds"],
      r["peak_rss_bytes_max_rank"] / 1e6, r["ratio"]))
PY
    [ -n "$t1" ] || t1=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$dir/r$n.json")
done
[ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["content_sha256"])' "$dir/r1.json")" = \
  "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["content_sha256"])' "$dir/r2.json")" ] &&
    echo "content hash identical at 1 and 2 ranks"
