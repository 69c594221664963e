# Sourced by the bench scripts (after `set -eu`): where the build and the
# tools are, overridable from the environment, and Open MPI's settings for
# runs as root and with more ranks than cores.
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$top/build}
DELTASOUP=${DELTASOUP:-$BUILD/deltasoup}
PY=${PYTHON3:-/usr/bin/python3}
MPIEXEC=${MPIEXEC:-mpiexec}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
