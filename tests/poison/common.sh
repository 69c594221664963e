# Sourced by the tests/poison/*.sh tests after tests/defaults.sh and setting
# name: a fresh work folder $d, fail(), the synthetic delta writer $MK and the
# numpy reference $REF.
"$PYTHON3" -c "import h5py, numpy" 2> /dev/null || exit 77
d=tests/poison/$name.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "$name.sh: FAIL: $*" >&2; exit 1; }
MK="$top_builddir/tests/unit/test_aggregate_mkdelta"
REF="$top_srcdir/tests/python/poison_ref.py"
# mpiexec'd programs: Open MPI's allocations read as leaks under ASan (Makefile.am)
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export ASAN_OPTIONS
