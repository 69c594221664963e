#!/bin/sh
# Run tests one by one outside make check, from a build directory:
#     cd build && ../scripts/run-test.sh tests/aggregate/methods.sh tests/unit/test_core
#     scripts/run-test.sh -C build tests/eval/gate.sh
#     CK_RUN_CASE=hash scripts/run-test.sh -C build tests/unit/test_core
# A TEST is named as in TESTS (Makefile.am, mk/*.am): a shell test by its path
# in the source tree (tests/DIR/NAME.sh; ../tests/DIR/NAME.sh works too), a
# Check program by its path in the build tree (tests/unit/test_core). Build
# the programs first: make && make check TESTS=
# Shell tests run with the shell make check uses and nothing set: they take
# their defaults from tests/defaults.sh, as they do alone. Programs get the
# same environment (this script sources tests/defaults.sh for them).
# Prints PASS / FAIL / SKIP / ERROR per test, as automake reads exit codes
# (0, 77 skipped, 99 hard error, anything else failed); the output goes to
# TEST.run.log in the build directory (-v: to the terminal as well). Exits 1
# when a test failed or erred, 0 otherwise.
usage() { echo "usage: $0 [-C BUILDDIR] [-v] TEST..." >&2; exit 2; }
src=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
build=. verbose=0
while [ $# -gt 0 ]; do
    case $1 in
    -C) [ $# -ge 2 ] || usage; build=$2; shift 2 ;;
    -v) verbose=1; shift ;;
    -h | --help) sed -n '2,/^usage()/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || usage
cd "$build" 2>/dev/null || { echo "run-test.sh: no build directory '$build'" >&2; exit 2; }
[ -f Makefile ] && [ -x deltasoup ] || {
    echo "run-test.sh: $(pwd) is not a built build directory (configure; make; make check TESTS=)" >&2
    exit 2
}
sh_=$(sed -n 's/^SHELL = //p' Makefile)
: "${sh_:=/bin/sh}"

fails=0 n=0
for t in "$@"; do
    n=$((n + 1))
    # The name as in TESTS: the path below the source or build tree.
    case $t in
    /*) abs=$t ;;
    *) abs=$(pwd)/$t ;;
    esac
    name=$t
    case $abs in
    "$src"/tests/*) name=${abs#"$src"/} ;;
    "$(pwd)"/tests/*) name=${abs#"$(pwd)"/} ;;
    esac
    while :; do case $name in ./*) name=${name#./} ;; ../*) name=${name#../} ;; *) break ;; esac; done
    log=$name.run.log
    case $name in
    *.sh)
        if [ -f "$t" ]; then path=$t; else path=$src/$name; fi
        [ -f "$path" ] || { echo "ERROR: $name (no such test: $path)"; fails=$((fails + 1)); continue; }
        set -- "$sh_" "$path"
        ;;
    *)
        [ -x "$name" ] || { echo "ERROR: $name (not built here: make check TESTS=)"; fails=$((fails + 1)); continue; }
        set -- sh -c ': "${top_srcdir:=$1}"; . "$1/tests/defaults.sh"; shift; exec "$@"' sh "$src" "./$name"
        ;;
    esac
    mkdir -p "$(dirname "$log")"
    t0=$(date +%s)
    if [ $verbose = 1 ]; then
        { "$@" 2>&1; echo $? > "$log.rc"; } | tee "$log"
        rc=$(cat "$log.rc"); rm -f "$log.rc"
    else
        "$@" > "$log" 2>&1
        rc=$?
    fi
    s=$(($(date +%s) - t0))
    case $rc in
    0) echo "PASS: $name (${s}s)" ;;
    77) echo "SKIP: $name (${s}s): $(tail -n 1 "$log")" ;;
    *)
        if [ "$rc" = 99 ]; then echo "ERROR: $name (exit 99, ${s}s)"; else echo "FAIL: $name (exit $rc, ${s}s)"; fi
        fails=$((fails + 1))
        [ $verbose = 1 ] || { tail -n 20 "$log" | sed 's/^/    /'; echo "    (all of it: $(pwd)/$log)"; }
        ;;
    esac
done
[ $n -gt 1 ] && echo "run-test.sh: $n tests, $fails failed"
[ $fails -eq 0 ]
