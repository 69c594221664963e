#!/bin/sh
# Hostile small inputs (issue 15 "Also" and item 10): a secret key that
# others can read is refused as ssh refuses one (exit 3, naming the file and
# its mode); an owner string with a control character is refused (exit 2);
# `sign a b c` checks every file before signing any (c's data no longer
# matching its content hash left a and b signed); a number with blanks
# around it (--steps " 5") and an unknown option are usage errors naming the
# option (exit 2); a delta whose dense dataset claims more than 2^40
# elements is refused naming the file and dataset (exit 3); control
# characters read from a file are escaped in the message. At 1 and 2
# ranks.
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
need_numpy
models
users 3
signed() { $PYTHON3 -c "import h5py, sys; sys.exit(0 if 'signature' in h5py.File(sys.argv[1], 'r').attrs else 1)" "$1"; }

echo "== secret key mode"
"$DELTASOUP" keygen -o "$w/k" --quiet || exit 1
for mode in 644 640 604 660; do
    chmod $mode "$w/k"
    expect 3 - "$w/k: secret key is accessible by others (mode 0$mode): not used (chmod 600 $w/k)" -- sign --key "$w/k" "$w/u1.bd.h5"
done
signed "$w/u1.bd.h5" && fail "signed with a key others can read"
chmod 400 "$w/k"
"$DELTASOUP" sign --key "$w/k" "$w/u1.bd.h5" --quiet || fail "sign with a 0400 key"
chmod 600 "$w/k"

echo "== owner with control characters"
for owner in "$(printf 'alice\tbob')" "$(printf 'eve\nu1')" "$(printf 'x\033[2Jy')"; do
    expect 2 "$w/o.bd.h5" "--owner: control character" -- compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/o.bd.h5" --owner "$owner"
done
"$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/o.bd.h5" --owner "Zoë O'Brien" --quiet > /dev/null ||
    fail "a printable UTF-8 owner refused"

echo "== sign checks every file first"
$PYTHON3 - "$w/u3.bd.h5" << 'PY' || exit 1
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:   # one sign bit flipped: the data no longer matches content_sha256
    s = f["bits/a.weight/signs"]; v = s[()]; v[0, 0] ^= np.uint64(1); s[...] = v
PY
cp "$w/u2.bd.h5" "$w/u2b.bd.h5"
for np in 1 2; do
    np=$np expect 3 - "$w/u3.bd.h5: recorded content_sha256" "does not match the data" "not signing any file" -- \
        sign --key "$w/k" "$w/u2.bd.h5" "$w/u2b.bd.h5" "$w/u3.bd.h5"
    signed "$w/u2.bd.h5" && fail "u2 signed before u3 was found bad ($np rank(s))"
    signed "$w/u2b.bd.h5" && fail "u2b signed before u3 was found bad ($np rank(s))"
done

echo "== a dataspace too large to be a tensor"
# (found by scripts/fuzz.sh h5_delta: a dense delta of [32, 7.6e18]
# overflowed the element count, then inspect died in an allocation of
# 1.3e19 bytes, MPI_Abort, exit 1; also tests/fuzz/h5_delta_corpus)
big=$top_srcdir/tests/fuzz/h5_delta_corpus/fuzz-crash-dense-numel-overflow
for np in 1 2; do
    np=$np expect 3 "$w/a.h5" "fuzz-crash-dense-numel-overflow: /dense/model.embed_tokens.weight: dataspace of more than 2^40 elements" -- \
        apply --base "$w/b.h5" --delta "$big" -o "$w/a.h5"
    np=$np expect 3 - "fuzz-crash-dense-numel-overflow: /dense/model.embed_tokens.weight: dataspace of more than 2^40 elements" -- \
        inspect "$big"
done

echo "== control characters from a file, in a message"
# (what a file holds is quoted in errors: a control character is written
# as \xNN, so the error stays one line and cannot drive the terminal)
cp "$w/u1.bd.h5" "$w/esc.bd.h5"
$PYTHON3 -c "
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], 'r+') as f:
    f.attrs['base_sha256'] = np.bytes_(b'\x1b[2J\nevil')
" "$w/esc.bd.h5" || exit 1
expect 3 - "esc.bd.h5: base_sha256 '\\x1b[2J\\x0aevil' is not a SHA-256 hex digest" -- inspect "$w/esc.bd.h5"
if grep -q "$(printf '\033')" "$w/stderr"; then echo "FAIL: an escape character reached stderr"; fails=$((fails + 1)); fi

echo "== option values"
expect 2 - "--steps: expected an integer in [0, 1073741824], got ' 5'" -- finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/ft.h5" --steps " 5"
expect 2 - "--lr: expected a number in" "got '1e-3 '" -- finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/ft.h5" --lr "1e-3 "
np=2
expect 2 - "inspect: error: unknown option '--bogus' (see --help)" -- inspect --bogus "$w/b.h5"
[ $fails = 0 ] || { echo "inputs.sh: $fails failure(s)"; exit 1; }
echo "inputs: ok"
