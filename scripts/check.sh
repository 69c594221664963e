#!/usr/bin/env bash
# Install, build and run every test: make check in a normal build and in an
# ASan+UBSan build, then make distcheck. Exits non-zero on the first failure.
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
        find "$dir/tests" -name '*.log' -newer "$dir/Makefile" -exec grep -l -E '^(FAIL|ERROR)' {} + 2>/dev/null |
            while read -r f; do echo "---- $f"; tail -n 40 "$f"; done
        return 1
    fi
}

step "normal build + make check"
run_build "$top/build"
step "sanitizer build (ASan + UBSan) + make check"
run_build "$top/build-san" --enable-sanitizers
step "make distcheck"
(cd "$top/build" && make -j"$jobs" distcheck >/dev/null) || { echo "make distcheck failed"; exit 1; }
step "all checks passed"
