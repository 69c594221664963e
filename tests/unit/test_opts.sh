#!/bin/sh
# The option layer (src/opts.h) at 1 and 2 ranks.
. "$(dirname "$0")/../defaults.sh"
exec "$top_builddir/tests/run_mpi.sh" "1 2" "$top_builddir/tests/unit/test_opts"
