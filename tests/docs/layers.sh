#!/bin/sh
# The include order of the source tree: kernels <- src <- io <- eval <- jobs
# (scripts/check-layers.sh, docs/DEVELOPING.md).
. "$(dirname "$0")/../defaults.sh"
exec sh "$top_srcdir/scripts/check-layers.sh" "$top_srcdir"
