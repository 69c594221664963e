#!/bin/sh
# The include order of the source tree: kernels <- src <- io <- eval <- jobs
# (scripts/check-layers.sh, docs/DEVELOPING.md).
: "${top_srcdir:=.}"
exec sh "$top_srcdir/scripts/check-layers.sh" "$top_srcdir"
