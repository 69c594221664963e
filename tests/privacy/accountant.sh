#!/bin/sh
# deltasoup privacy (docs/privacy.md): Opacus's check values (epsilon
# 7.32911117143 for q 0.04, sigma 1.5, 2250 steps, delta 1e-5; the noise
# multiplier 1.416 for epsilon 8), a three-phase case of the independent
# reference's vectors (tests/data/privacy/cases.json, tests/python/dp_rdp_ref.py)
# at 2 ranks printing once and the same as 1 rank, the table for people,
# --help, and the refusals: one line naming the option, exit 2 (3 for a
# target epsilon out of reach). The math itself is tests/unit/test_dp.
set -u
. "$(dirname "$0")/../defaults.sh"
name=accountant
d=tests/privacy/$name.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "$name.sh: FAIL: $*" >&2; exit 1; }
# mpiexec'd programs: Open MPI's allocations read as leaks under ASan (Makefile.am)
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export ASAN_OPTIONS
# field FILE KEY: a field of a JSON object
field() { "$PYTHON3" -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(repr(v) if isinstance(v, float) else v)' "$1" "$2"; }
# near A B TOL
near() { "$PYTHON3" -c 'import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t else 1)' "$1" "$2" "$3"; }

# Opacus's test_rdp_accountant
"$DELTASOUP" privacy --sample-rate 0.04 --noise-multiplier 1.5 --steps 2250 --delta 1e-5 --json > "$d/a.json" ||
    fail "check value run"
e=$(field "$d/a.json" epsilon)
near "$e" 7.32911117143 1e-6 || fail "epsilon $e, Opacus 7.32911117143"
[ "$(field "$d/a.json" best_order)" = 3.9 ] || fail "best order $(field "$d/a.json" best_order)"
[ "$(field "$d/a.json" noise_multiplier)" = 1.5 ] || fail "noise_multiplier"
grep -Eq '"epsilon": 7\.329111171[0-9]{5,}' "$d/a.json" || fail "epsilon not printed to 17 digits: $(cat "$d/a.json")"

# Opacus's test_get_noise_multiplier_rdp_epochs
"$DELTASOUP" privacy --sample-rate 0.04 --target-epsilon 8 --steps 2250 --delta 1e-5 --json > "$d/s.json" ||
    fail "target epsilon run"
s=$(field "$d/s.json" noise_multiplier)
near "$s" 1.416 5e-4 || fail "noise multiplier $s, Opacus 1.416"
near "$(field "$d/s.json" epsilon)" 7.995 0.005 || fail "epsilon at the found sigma: $(field "$d/s.json" epsilon)"

# three phases, 1 and 2 ranks, against the reference's vector
P="--phase 0.1:0.7:30 --phase 0.01:1.5:2000 --phase 1.0:20.0:5 --delta 1e-6 --json"
"$DELTASOUP" privacy $P > "$d/p1.json" || fail "phases at 1 rank"
timeout 60 ${MPIEXEC:-mpiexec} -n 2 "$DELTASOUP" privacy $P > "$d/p2.json" || fail "phases at 2 ranks"
cmp -s "$d/p1.json" "$d/p2.json" || fail "2 ranks printed something else: $(cat "$d/p2.json")"
want=$("$PYTHON3" -c 'import json,sys
for c in json.load(open(sys.argv[1]))["eps_cases"]:
    if len(c["phases"]) == 3: print(repr(c["epsilon"]))' "$top_srcdir/tests/data/privacy/cases.json")
near "$(field "$d/p1.json" epsilon)" "$want" 1e-6 || fail "3 phases: $(field "$d/p1.json" epsilon), reference $want"
[ "$(field "$d/p1.json" noise_multiplier)" = None ] || fail "noise_multiplier of phases that differ should be null"

# the table for people; --help
"$DELTASOUP" privacy --sample-rate 0.04 --noise-multiplier 1.5 --steps 2250 --delta 1e-5 > "$d/t.txt" || fail "table"
grep -q '^epsilon  *7\.329111171$' "$d/t.txt" || fail "table: $(cat "$d/t.txt")"
grep -q '^best order  *3\.9$' "$d/t.txt" || fail "table: $(cat "$d/t.txt")"
"$DELTASOUP" privacy --help > "$d/help.txt" && grep -q -- '--target-epsilon E' "$d/help.txt" || fail "--help"

# expect CODE "message part" args...
expect() {
    want=$1 msg=$2
    shift 2
    "$DELTASOUP" privacy "$@" > "$d/stdout" 2> "$d/stderr"
    rc=$?
    [ $rc -eq "$want" ] || fail "exit $rc, wanted $want: $*: $(cat "$d/stderr")"
    grep -qF -- "$msg" "$d/stderr" || fail "no '$msg' in: $(cat "$d/stderr")"
    [ "$(grep -c . "$d/stderr")" -eq 1 ] || fail "more than one line: $(cat "$d/stderr")"
    [ ! -s "$d/stdout" ] || fail "printed on stdout: $*"
}
Q="--sample-rate 0.04 --steps 100 --delta 1e-5"
expect 2 "--noise-multiplier: expected a number > 0, got '0'" $Q --noise-multiplier 0
expect 2 "--noise-multiplier: expected a number > 0, got '-1'" $Q --noise-multiplier -1
expect 2 "--delta: expected a number in (0, 1), got '1'" --sample-rate 0.04 --steps 100 --noise-multiplier 1 --delta 1
expect 2 "--sample-rate: expected a number in (0, 1], got '1.5'" --sample-rate 1.5 --steps 100 --noise-multiplier 1 --delta 1e-5
expect 2 "--steps: expected an integer in [1, " --sample-rate 0.04 --steps 0 --noise-multiplier 1 --delta 1e-5
expect 2 "--accountant prv: the PRV accountant is not implemented" $Q --noise-multiplier 1 --accountant prv
expect 2 "--phase: expected Q:S:N" --phase 0.1:1 --delta 1e-5
expect 2 "give --noise-multiplier or --target-epsilon, not both" $Q --noise-multiplier 1 --target-epsilon 3
expect 3 "--target-epsilon 0.01: not reached" $Q --target-epsilon 0.01
rm -rf "$d"
