#!/bin/sh
# finetune --dp end to end (docs/privacy.md "DP-SGD in finetune"): stories260K
# on TruthfulQA text; the record (dp_* root attributes, docs/formats.md) with
# the epsilon `deltasoup privacy` gives for the recorded sample rate, noise
# multiplier and steps; the same checkpoint bits at 1 and 2 ranks; compress
# copies the record onto the delta, fit-scales keeps it; aggregate --max-dp-epsilon keeps the
# delta under the bound and drops the one over it by its computed epsilon
# (--target-epsilon 30); the refusals: one line naming the option, exit 2,
# nothing written. The math: tests/privacy/dpsgd_ref.sh.
set -u
. "$(dirname "$0")/../defaults.sh"
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
fi
name=dpsgd
d=tests/privacy/$name.d
rm -rf "$d" && mkdir -p "$d" || exit 1
fail() { echo "$name.sh: FAIL: $*" >&2; exit 1; }
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export ASAN_OPTIONS
"$PYTHON3" -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
S=$top_srcdir/data/models/stories260K
head -c 30000 "$top_srcdir/data/benchmarks/truthfulqa/TruthfulQA.csv" > "$d/train.txt"
"$DELTASOUP" import --from llama2c "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -o "$d/base.h5" --quiet ||
    fail "import"
FT="finetune --base $d/base.h5 --data $d/train.txt --steps 6 --batch 12 --seq-len 32 --seed 5 --dp --max-grad-norm 1"
# shellcheck disable=SC2086
"$DELTASOUP" $FT --noise-multiplier 1.1 -o "$d/a.h5" > "$d/a.out" || fail "finetune --dp"
# shellcheck disable=SC2086
$MPIEXEC -n 2 "$DELTASOUP" $FT --noise-multiplier 1.1 -o "$d/b.h5" --quiet || fail "finetune --dp at 2 ranks"
# shellcheck disable=SC2086
"$DELTASOUP" $FT --target-epsilon 30 --dp-delta 1e-6 -o "$d/e.h5" --quiet || fail "finetune --target-epsilon"
grep -q "DP-SGD: epsilon" "$d/a.out" || fail "no DP line in the report: $(cat "$d/a.out")"
q=$("$PYTHON3" -c 'import h5py,sys; print(repr(float(h5py.File(sys.argv[1],"r").attrs["dp_sample_rate"])))' "$d/a.h5")
"$DELTASOUP" privacy --sample-rate "$q" --noise-multiplier 1.1 --steps 6 --delta 1e-5 --json > "$d/p.json" ||
    fail "privacy"
for x in a e; do
    "$DELTASOUP" compress --base "$d/base.h5" --finetuned "$d/$x.h5" -o "$d/$x.bd.h5" > /dev/null || fail "compress $x"
done
"$DELTASOUP" fit-scales --base "$d/base.h5" --finetuned "$d/a.h5" --delta "$d/a.bd.h5" --calib "$d/train.txt" \
    -o "$d/a.fit.bd.h5" --steps 2 --batch 2 --seq-len 32 --samples 8 --quiet || fail "fit-scales"
"$PYTHON3" - "$d" <<'PYEOF' || fail "records"
import h5py, json, re, sys
d = sys.argv[1]
a, b, e, base = (h5py.File("%s/%s.h5" % (d, n), "r") for n in ("a", "b", "e", "base"))
A = dict(a.attrs)
assert A["content_sha256"] == b.attrs["content_sha256"], "1 and 2 ranks differ"
assert A["content_sha256"] != base.attrs["content_sha256"], "DP fine-tuning changed nothing"
p = json.load(open(d + "/p.json"))
n_ex = int(re.search(r"sample rate \S+ of (\d+) examples", open(d + "/a.out").read()).group(1))
want = {"dp_noise_multiplier": 1.1, "dp_max_grad_norm": 1.0, "dp_sample_rate": 12 / n_ex, "dp_steps": 6,
        "dp_delta": 1e-5, "dp_accountant": "rdp", "dp_epsilon": p["epsilon"]}
for k, v in want.items():
    got = A[k].decode() if isinstance(A[k], bytes) else A[k]
    assert (got == v) if isinstance(v, str) else abs(float(got) - v) <= 1e-12 * abs(v), (k, got, v)
E = dict(e.attrs)
assert 29.99 <= E["dp_epsilon"] <= 30 and E["dp_delta"] == 1e-6 and E["dp_noise_multiplier"] > 0, E
for x, X in (("a", A), ("e", E), ("a.fit", A)):
    D = dict(h5py.File("%s/%s.bd.h5" % (d, x), "r").attrs)
    for k in want:
        assert k in D and str(D[k]) == str(X[k]), ("delta", x, k, D.get(k), X[k])
print("record ok: epsilon %.6f (privacy: %.6f), q %.6f; target 30: epsilon %.6f, sigma %.6f" %
      (A["dp_epsilon"], p["epsilon"], A["dp_sample_rate"], E["dp_epsilon"], E["dp_noise_multiplier"]))
PYEOF
eps_a=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["epsilon"])' "$d/p.json")
bound=$("$PYTHON3" -c "print($eps_a + 1)")
"$DELTASOUP" aggregate --method mean --max-dp-epsilon "$bound" -o "$d/agg.bd.h5" --report "$d/agg.json" \
    "$d/a.bd.h5" "$d/e.bd.h5" > /dev/null 2>&1 || fail "aggregate --max-dp-epsilon"
"$PYTHON3" - "$d/agg.json" <<'PYEOF' || fail "aggregate's filter: $(cat "$d/agg.json")"
import json, sys
c = json.load(open(sys.argv[1]))["contributors"]
assert [x["status"] for x in c] == ["used", "dropped"], c
assert c[1]["reason"].startswith("dp_epsilon 29.9"), c[1]["reason"]
PYEOF
# refusals: exit 2, one line naming the option, no output
refuse() { # WHAT ARGS...: exit 2, one line containing WHAT
    what=$1; shift
    rc=0; "$DELTASOUP" finetune --base "$d/base.h5" --data "$d/train.txt" -o "$d/x.h5" --steps 2 "$@" \
        > /dev/null 2> "$d/err" || rc=$?
    [ $rc -eq 2 ] || fail "$* : exit $rc, expected 2"
    [ "$(wc -l < "$d/err")" -eq 1 ] && grep -q -- "$what" "$d/err" || fail "$* : $(cat "$d/err")"
    [ ! -e "$d/x.h5" ] || fail "$* : output written"
}
refuse "--noise-multiplier S" --dp --max-grad-norm 1
refuse "--noise-multiplier must be finite and > 0" --dp --noise-multiplier 0 --max-grad-norm 1
refuse "--dp-delta must be in (0, 1)" --dp --noise-multiplier 1 --max-grad-norm 1 --dp-delta 1
refuse "--max-grad-norm must be finite and > 0" --dp --target-epsilon 8 --max-grad-norm 0
refuse "sample rate" --dp --noise-multiplier 1 --max-grad-norm 1 --batch 5000 --seq-len 32
rm -rf "$d"
echo "$name: ok"
