#!/bin/sh
# The comm interface (MPI backend) and --device parsing at 1, 2 and 4 ranks.
. "$(dirname "$0")/../defaults.sh"
exec "$top_builddir/tests/run_mpi.sh" "1 2 4" "$top_builddir/tests/unit/test_comm"
