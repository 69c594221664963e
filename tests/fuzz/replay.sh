#!/bin/sh
# Every reader's fuzz target (tests/fuzz/fuzz_NAME.c, linked with
# tests/fuzz/replay.c by make check) on every file of its committed corpus
# tests/fuzz/NAME_corpus: real files of the project, their truncations and
# the inputs that once crashed a reader (kept by scripts/fuzz.sh). A target
# aborts on a wrong verdict (an error other than exit 3, a file that opened
# but does not read); the build's sanitizers catch memory errors. With
# FUZZ_SECONDS=N and clang's libFuzzer at hand, scripts/fuzz.sh also runs
# each target N seconds (not by default: make check stays short).
. "$(dirname "$0")/../defaults.sh"
fail=0
for t in h5_model h5_delta llama2c tokenizer csv text datasets checkpoint gate_results trusted_keys; do
    prog=$top_builddir/tests/fuzz/replay_$t
    [ -x "$prog" ] || { echo "FAIL: $prog not built"; fail=1; continue; }
    # MPI's own allocations are reported as leaks at exit (as for tests/run_mpi.sh);
    # HDF5 sizes buffers from corrupt metadata and copes with a failed malloc.
    case $t in h5_*) opts=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=1024 ;; *) opts= ;; esac
    if ASAN_OPTIONS="$opts${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$prog" "$top_srcdir/tests/fuzz/${t}_corpus" > "replay_$t.out" 2>&1; then
        echo "ok: $t: $(tail -1 "replay_$t.out")"
    else
        echo "FAIL: $t:"; tail -20 "replay_$t.out"; fail=1
    fi
    rm -f "replay_$t.out"
done
if [ "${FUZZ_SECONDS:-0}" -gt 0 ] 2>/dev/null && command -v clang > /dev/null; then
    for t in h5_model h5_delta llama2c tokenizer csv text datasets checkpoint gate_results trusted_keys; do
        sh "$top_srcdir/scripts/fuzz.sh" "$t" "$FUZZ_SECONDS" > "fuzz_$t.out" 2>&1 || { tail -30 "fuzz_$t.out"; fail=1; }
        rm -f "fuzz_$t.out"
    done
fi
exit $fail
