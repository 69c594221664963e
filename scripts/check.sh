#!/usr/bin/env bash
# Install, build and run every test: make check in a normal build and in an
# ASan+UBSan build, then make distcheck (on a subset of the tests). Exits non-zero on the first failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=${JOBS:-$(nproc)}
t0=$(date +%s)
step() { echo "==== check.sh: $* ($(( $(date +%s) - t0 ))s)"; }

step "installing dependencies"
bash scripts/setup.sh

step "autoreconf"
autoreconf -fi >/dev/null

run_build() { # dir, configure args...
    local dir=$1; shift
    mkdir -p "$dir"
    (cd "$dir" && "$top/configure" -q "$@" && make -j"$jobs" >/dev/null) || return 1
    if ! (cd "$dir" && make -j"$jobs" check); then
        show_failed_logs "$dir/tests"
        return 1
    fi
}

# The last lines of the log of every test under $1 that failed (its .trs
# file records FAIL or ERROR).
show_failed_logs() {
    find "$1" -name '*.trs' -exec grep -l -E '^:test-result: (FAIL|ERROR)' {} + 2>/dev/null |
        while read -r f; do echo "---- ${f%.trs}.log"; tail -n 60 "${f%.trs}.log"; done
}

step "normal build + make check"
run_build "$top/build"
step "sanitizer build (ASan + UBSan) + make check"
run_build "$top/build-san" --enable-sanitizers
step "make distcheck"
# (a subset of the tests: mk/tests.am DISTCHECK_TESTS says which and why)
if ! (cd "$top/build" && make -j"$jobs" distcheck 'TESTS=$(DISTCHECK_TESTS)' >/dev/null); then
    echo "make distcheck failed"
    # distcheck leaves its tree (deltasoup-VERSION/_build/sub) behind on failure.
    for d in "$top"/build/deltasoup-*/_build; do
        [ -d "$d" ] && show_failed_logs "$d"
    done
    exit 1
fi
step "all checks passed"
