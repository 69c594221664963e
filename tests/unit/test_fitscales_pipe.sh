#!/bin/sh
# fit-scales through a pipeline (src/fitscales_pipe.h) at 1, 2, 3 and 4 ranks:
# bit for bit the whole model's gradients, and finite differences.
. "$(dirname "$0")/../defaults.sh"
exec "$top_builddir/tests/run_mpi.sh" "1 2 3 4" "$top_builddir/tests/unit/test_fitscales_pipe"
