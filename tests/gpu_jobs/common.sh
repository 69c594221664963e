# Sourced by tests/gpu_jobs/*.sh after tests/defaults.sh: a work dir $w, fail, and refused.
set -eu
PY=$PYTHON3
w=${TMPDIR:-/tmp}/ds-gpu-jobs-$(basename "$0" .sh).$$
mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# refused N-RANKS TEXT JOB ARGS...: exit 2, one error line from JOB that
# contains TEXT (at 1 rank nothing else on stderr), nothing on stdout
refused() {
    n=$1 want=$2
    shift 2
    set +e
    if [ "$n" = 1 ]; then "$DELTASOUP" "$@" >"$w/out" 2>"$w/err"; else $MPIEXEC -n "$n" "$DELTASOUP" "$@" >"$w/out" 2>"$w/err"; fi
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "$* at $n rank(s): exit $rc, want 2: $(cat "$w/err")"
    lines=$(grep -c "deltasoup $1: error:" "$w/err" || true)
    [ "$lines" -eq 1 ] || fail "$* at $n rank(s): $lines error lines: $(cat "$w/err")"
    grep "deltasoup $1: error:" "$w/err" | grep -qF -- "$want" || fail "$*: message '$(cat "$w/err")' lacks '$want'"
    [ "$n" != 1 ] || [ "$(wc -l <"$w/err")" -eq 1 ] || fail "$*: more than one line on stderr: $(cat "$w/err")"
    [ ! -s "$w/out" ] || fail "$*: wrote to stdout: $(cat "$w/out")"
}

# have_gpu=1 when this program finds a GPU it can use (the check the jobs make)
probe_gpu() {
    have_gpu=1
    "$DELTASOUP" compress --dry-run --shapes llama-7b --device cuda >/dev/null 2>"$w/probe" && return 0
    have_gpu=0
    grep -Eq 'no GPU found|no CUDA support' "$w/probe" || fail "--device cuda probe: $(cat "$w/probe")"
}
