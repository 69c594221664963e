#!/usr/bin/env bash
# Install, build and run every test: make distcheck (the tarball built and
# its whole make check run in a normal build), then make check in an
# ASan+UBSan build. Exits non-zero on the first failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=${JOBS:-$(nproc)}
# One make job more than cores: several tests spend much of their time
# waiting (MPI start-up, the Slurm tests' daemons and their shared lock), and
# a waiting test would otherwise hold one of the cores' slots idle.
tjobs=${TEST_JOBS:-$((jobs + 1))}
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
    if ! (cd "$dir" && make -j"$tjobs" check); then
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

# The normal build's whole make check runs inside make distcheck: the release
# tarball configured in a fresh VPATH tree over a read-only source tree,
# built, and tested in full (then install, uninstall and dist again).
step "make distcheck (normal build + make check from the tarball)"
mkdir -p "$top/build"
(cd "$top/build" && "$top/configure" -q) || exit 1
if ! (cd "$top/build" && make -j"$tjobs" distcheck) |
    { grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS|XFAIL|# [A-Z]+:)|archives ready' || true; }; then
    echo "make distcheck failed"
    # distcheck leaves its tree (deltasoup-VERSION/_build/sub) behind on failure.
    for d in "$top"/build/deltasoup-*/_build; do
        [ -d "$d" ] && show_failed_logs "$d"
    done
    exit 1
fi
step "sanitizer build (ASan + UBSan) + make check"
run_build "$top/build-san" --enable-sanitizers
step "all checks passed"
