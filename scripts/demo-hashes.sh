#!/usr/bin/env bash
# The content hashes of a demo run's outputs (scripts/demo.sh), one line a
# file: HDF5 checkpoints and deltas by their recorded content_sha256 (checked
# by inspect), reports by the sha256 of their bytes. Two runs of the same tree
# (or a tree before and after a refactoring) must print the same lines.
# usage: scripts/demo-hashes.sh [DEMO_OUT] [DELTASOUP]
set -euo pipefail
out=${1:-demo-out}
ds=${2:-build/deltasoup}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ds=$(cd "$(dirname "$ds")" && pwd)/$(basename "$ds")
cd "$out"
for f in $(find . -name '*.h5' | sort); do
    h=$("$ds" inspect --json "$f" | /usr/bin/python3 -c 'import json,sys; c=json.load(sys.stdin)["content_sha256"]; print(c["recorded"] if c["match"] else "MISMATCH")')
    printf '%s  %s\n' "$h" "${f#./}"
done
# Reports: eval tables, the soup and gate reports, the export. Paths name the
# demo's folder (replaced by OUT) and the gate reports carry the run time
# ("seconds", dropped), so two runs in different folders compare equal.
here=$(pwd)
for f in eval.csv soup.json gate_base.json gate_soup.json base.safetensors config.json; do
    [ -f "$f" ] || continue
    h=$(sed "s#$here#OUT#g; s#\"seconds\":[-+.0-9eE]*#\"seconds\":T#g" "$f" | sha256sum | cut -c1-64)
    printf '%s  %s\n' "$h" "$f"
done
