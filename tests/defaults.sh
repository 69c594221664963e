# The environment of a shell test, sourced first by every tests/*/*.sh:
#     . "$(dirname "$0")/../defaults.sh"
# Under make check each variable below is already set by AM_TESTS_ENVIRONMENT
# (Makefile.am) and is left alone. A test run by hand from a build directory,
#     cd build && sh ../tests/aggregate/methods.sh     (or scripts/run-test.sh)
# gets the same values: the build directory is the current one, the source
# tree is the one this test lives in, MPIEXEC and PYTHON3 are what configure
# chose (read from the build's Makefile), and Open MPI may run as root and
# oversubscribe the cores. Paths are absolute, as make check's are, so tests
# that cd elsewhere (tests/slurm, tests/fitscales) keep working.
: "${top_srcdir:=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)}"
: "${top_builddir:=$(pwd)}"
: "${DELTASOUP:=$top_builddir/deltasoup}"
if [ -z "${MPIEXEC:-}" ] && [ -f "$top_builddir/Makefile" ]; then
    MPIEXEC=$(sed -n 's/^MPIEXEC = //p' "$top_builddir/Makefile")
fi
if [ -z "${PYTHON3:-}" ] && [ -f "$top_builddir/Makefile" ]; then
    PYTHON3=$(sed -n 's/^PYTHON3 = //p' "$top_builddir/Makefile")
fi
: "${MPIEXEC:=mpiexec}" "${PYTHON3:=/usr/bin/python3}"
: "${OMPI_ALLOW_RUN_AS_ROOT:=1}" "${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:=1}"
: "${OMPI_MCA_rmaps_base_oversubscribe:=1}" "${OMPI_MCA_btl:=self,vader}" "${OMPI_MCA_pml:=ob1}"
: "${OMPI_MCA_btl_vader_single_copy_mechanism:=none}"
: "${CK_FORK:=no}" "${PYTHONDONTWRITEBYTECODE:=1}"
export top_srcdir top_builddir DELTASOUP MPIEXEC PYTHON3 OMPI_ALLOW_RUN_AS_ROOT \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_rmaps_base_oversubscribe OMPI_MCA_btl \
    OMPI_MCA_pml OMPI_MCA_btl_vader_single_copy_mechanism CK_FORK PYTHONDONTWRITEBYTECODE
# The product mode is the default (exact) one: an exported DS_GEMM_BF16=dp
# (docs/model.md "Mode dp") would move the numbers tests compare.
unset DS_GEMM_BF16
# A sanitizer build's make check also sets UBSAN_OPTIONS (Makefile.am: if SANITIZERS).
if [ -z "${UBSAN_OPTIONS:-}" ] && [ -f "$top_builddir/Makefile" ] &&
    grep -Eq '^[A-Za-z0-9_]+ \+?= *UBSAN_OPTIONS=' "$top_builddir/Makefile"; then
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 DS_SANITIZED=1
    export UBSAN_OPTIONS DS_SANITIZED
fi
# ds_skip_sanitized WHY: a test that measures a numeric claim over long runs
# (its code runs under the sanitizers in other tests) skips in a sanitizer
# build, where it would take minutes of CI time.
ds_skip_sanitized() { [ -z "${DS_SANITIZED:-}" ] || { echo "skip: sanitizer build ($1)"; exit 77; }; }
