#!/bin/sh
# The pipeline plan and GPipe drivers (src/pipeline.h) at 1, 2, 3 and 4 ranks.
. "$(dirname "$0")/../defaults.sh"
exec "$top_builddir/tests/run_mpi.sh" "1 2 3 4" "$top_builddir/tests/unit/test_pipeline"
