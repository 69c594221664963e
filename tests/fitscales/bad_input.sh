#!/bin/sh
# fit-scales refuses bad input with one clear line naming the file, the
# documented exit code, and no output (OUT, nor its staging OUT.tmp): a delta made
# for another base (unless --force), a fine-tuned model with another config,
# an empty or too short calibration text, an existing output, bad options,
# missing files, a checkpoint folder that is a file.
. "$(dirname "$0")/../defaults.sh"
. "$top_srcdir/tests/fitscales/common.sh"
fs_setup bad
$PY -c 'import h5py' 2>/dev/null || { echo "skip: no h5py"; exit 77; }
fs_inputs 3
cd "$tmp" || exit 99
ok="--base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt --steps 2 --seq-len 16 --quiet"

# expect CODE PATTERN ARGS...: exit code CODE, stderr matching PATTERN (one
# line), no output.
expect()
{
    code=$1 pat=$2; shift 2
    rc=0; "$DELTASOUP" fit-scales "$@" -o out.bd.h5 >out.log 2>err || rc=$?
    [ $rc = "$code" ] || { cat err; fs_fail "exit $rc, expected $code: $*"; }
    grep -q -- "$pat" err || { cat err; fs_fail "message does not match '$pat': $*"; }
    [ "$(wc -l <err)" -le 2 ] || { cat err; fs_fail "more than one error line: $*"; }
    for f in out.bd.h5*; do
        [ -e "$f" ] && fs_fail "$f left behind: $*"
    done
    return 0
}

# the delta was made for base.h5; ft.h5 as the base is another model
expect 3 "d.bd.h5.*base.h5\|ft.h5.*d.bd.h5\|d.bd.h5.*ft.h5" \
    --base ft.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt --steps 2 --seq-len 16
"$DELTASOUP" fit-scales --base ft.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt --steps 2 --seq-len 16 \
    -o forced.bd.h5 --force --quiet >/dev/null 2>err || fs_fail "--force refused"
grep -q "warning" err || fs_fail "--force without a warning"
# a fine-tuned model with another config: ft.h5 without its last layer
$PY - ft.h5 small.h5 <<'PYEOF'
import h5py, sys
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "w") as b:
    for k, v in a.attrs.items():
        b.attrs[k] = v
    L = int(a.attrs["n_layers"]) - 1
    b.attrs["n_layers"] = L
    for k in a:
        if k != "tensors":
            a.copy(k, b)
    t = b.create_group("tensors")
    for k in a["tensors"]:
        if not k.startswith("model.layers.%d." % L):
            a.copy("tensors/" + k, t, name=k)
PYEOF
expect 3 "small.h5: made for a model with dim 64, hidden 172, [0-9]* layers.*; base.h5 has dim 64" \
    --base base.h5 --finetuned small.h5 --delta d.bd.h5 --calib train.txt
printf '\n  \n\n<|endoftext|>\n' >empty.txt
expect 3 "empty.txt: no documents" --base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib empty.txt
echo "Just a few words." >short.txt
expect 3 "short.txt: .* tokens make 0 window" --base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib short.txt
expect 3 "missing.txt" --base base.h5 --finetuned ft.h5 --delta d.bd.h5 --calib missing.txt
expect 3 "nobase.h5" --base nobase.h5 --finetuned ft.h5 --delta d.bd.h5 --calib train.txt
expect 3 "base.h5" --base base.h5 --finetuned ft.h5 --delta base.h5 --calib train.txt
# options
expect 2 "objective" $ok --objective ce
expect 2 "steps" $ok --steps -1
expect 2 "lr" $ok --lr 0
expect 2 "holdout" $ok --holdout 1.5
expect 2 "batch" $ok --batch 0
expect 2 "seq-len" $ok --seq-len 100000
expect 2 "required" --base base.h5 --finetuned ft.h5 --delta d.bd.h5
expect 2 "unknown option" $ok --bogus
expect 2 "unexpected argument" $ok extra
touch afile
expect 4 "afile" $ok --checkpoint afile
# an existing output is refused before any work, --overwrite replaces it
echo keep >out.bd.h5
rc=0; "$DELTASOUP" fit-scales $ok -o out.bd.h5 2>err || rc=$?
[ $rc = 4 ] && grep -q "out.bd.h5" err && [ "$(cat out.bd.h5)" = keep ] || fs_fail "existing output: exit $rc"
"$DELTASOUP" fit-scales $ok -o out.bd.h5 --overwrite >/dev/null || fs_fail "--overwrite"
"$DELTASOUP" inspect out.bd.h5 >/dev/null || fs_fail "overwritten output unreadable"
echo "bad_input: ok"
