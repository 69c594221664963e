#!/bin/sh
# compress codes each 1-bit tensor in pieces of rows as it reads them
# (jobs/compress.c compress_stream, issue 16 "Streaming I/O"). Pieces of a
# few rows that do not divide the tensors' rows (DS_COMPRESS_PIECE_KB=1 or 5:
# 1 to 40 rows; a knob for the tests only) must give the same delta file
# (content hash) as every tensor read whole (DS_COMPRESS_PIECE_KB=0: the
# path a GPU takes) and as the default pieces, for each scale mode, f32 and
# bf16, with and without --no-verify, at 1 and 2 ranks, and pass the numpy
# reference; a non-finite delta in a late piece gives the same message
# (element index, both values) as the whole read; a flipped byte in a late
# row of a coded tensor of a fine-tuned checkpoint that records digests (or
# of the base) is still exit 3 naming the file and the tensor, nothing
# written; --no-verify proceeds.
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/../reliability/common.sh"
PY=$PYTHON3
$PY -c 'import numpy, h5py' 2> /dev/null || { echo "skip: $PY lacks numpy/h5py"; exit 77; }
ref=$top_srcdir/tests/python/bitdelta_ref.py
model=$top_srcdir/data/models/stories260K
q=--quiet
"$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b.h5" $q > /dev/null &&
    "$DELTASOUP" import --from llama2c "$model/stories260K.bin" -o "$w/b16.h5" --dtype bf16 $q > /dev/null &&
    $PY "$ref" perturb "$w/b.h5" "$w/f.h5" 3 &&
    $PY "$ref" perturb "$w/b16.h5" "$w/f16.h5" 4 --zero-frac 0.05 || exit 1
hash() { $PY -c 'import h5py,sys; print(h5py.File(sys.argv[1]).attrs["content_sha256"].decode())' "$1"; }
run() { if [ "$n" = 1 ]; then "$DELTASOUP" "$@"; else $MPIEXEC -n "$n" "$DELTASOUP" "$@"; fi; }

# same output whatever the pieces (0: whole tensors; "": the default)
for dt in "" 16; do
    for sc in tensor row col; do
        for n in 1 2; do
            for nv in "" --no-verify; do
                [ "$n" = 2 ] && [ -n "$nv" ] && continue
                want= f0=$fails v=${nv:+nv}
                for kb in 0 1 5 ""; do
                    o=$w/d$dt-$sc-$n$v-$kb.bd.h5
                    export DS_COMPRESS_PIECE_KB=$kb
                    run compress --base "$w/b$dt.h5" --finetuned "$w/f$dt.h5" -o "$o" \
                        --scale "$sc" $nv $q > /dev/null 2> "$w/err" || { cat "$w/err"; fail "compress ${dt:-f32} $sc np=$n kb=$kb $nv"; continue; }
                    h=$(hash "$o")
                    if [ -z "$want" ]; then want=$h; else [ "$h" = "$want" ] || fail "${dt:-f32} $sc np=$n $nv: pieces of ${kb:-default} KB give $h, whole tensors $want"; fi
                done
                [ $fails = "$f0" ] && echo "ok: ${dt:-f32} --scale $sc at $n rank(s) $nv: $want with every piece size"
            done
        done
        # the 1-row-or-so pieces against the independent reference
        o=$w/d$dt-$sc-1-1.bd.h5
        "$DELTASOUP" apply --base "$w/b$dt.h5" --delta "$o" -o "$w/a.h5" --overwrite $q > /dev/null &&
            $PY "$ref" check "$w/b$dt.h5" "$w/f$dt.h5" "$o" "$w/a.h5" --scale "$sc" > /dev/null || fail "reference check ${dt:-f32} $sc"
    done
done

# a NaN in row 45 of 64 (a late piece): the same message as the whole read
T=model.layers.1.self_attn.q_proj.weight
$PY - "$w/f.h5" "$w/nan.h5" "$T" << 'PY' || exit 1
import shutil, sys, h5py, numpy as np
shutil.copyfile(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    w = f["tensors"][sys.argv[3]]; a = w[...]; a[45, 7] = np.nan; w[...] = a
PY
for kb in 0 1 5; do
    export DS_COMPRESS_PIECE_KB=$kb
    expect 3 "$w/o.bd.h5" "nan.h5" "tensor $T: non-finite delta at element 2887 (fine-tuned nan, base" -- \
        compress --base "$w/b.h5" --finetuned "$w/nan.h5" -o "$w/o.bd.h5"
    cp "$w/stderr" "$w/nan$kb.err"
done
cmp -s "$w/nan0.err" "$w/nan1.err" && cmp -s "$w/nan0.err" "$w/nan5.err" || fail "non-finite: the messages differ with the pieces"

# a fine-tuned checkpoint with per-tensor digests (written by deltasoup), a
# byte flipped near the end of a coded tensor's data; the base likewise
"$DELTASOUP" apply --base "$w/b.h5" --delta "$w/d-row-1-.bd.h5" -o "$w/fa.h5" $q > /dev/null || exit 1
D=model.layers.2.mlp.down_proj.weight
$PY - "$w" "$D" << 'PY' || exit 1
import shutil, sys, h5py
w, name = sys.argv[1], sys.argv[2]
for src, dst in (("fa.h5", "fax.h5"), ("b.h5", "bx.h5")):
    shutil.copyfile(w + "/" + src, w + "/" + dst)
    with h5py.File(w + "/" + dst, "r") as f:
        d = f["tensors/" + name]
        off = d.id.get_offset() + d.id.get_storage_size() - 100
    with open(w + "/" + dst, "r+b") as g:
        g.seek(off); b = g.read(1); g.seek(off); g.write(bytes([b[0] ^ 0x10]))
PY
mf="tensor $D: data does not match its recorded sha256"
for kb in 0 1 ""; do
    export DS_COMPRESS_PIECE_KB=$kb
    expect 3 "$w/o.bd.h5" "fax.h5" "$mf" -- compress --base "$w/b.h5" --finetuned "$w/fax.h5" -o "$w/o.bd.h5"
    np=2 expect 3 "$w/o.bd.h5" "fax.h5" "$mf" -- compress --base "$w/b.h5" --finetuned "$w/fax.h5" -o "$w/o.bd.h5"
    expect 3 "$w/o.bd.h5" "bx.h5" "$mf" -- compress --base "$w/bx.h5" --finetuned "$w/fa.h5" -o "$w/o.bd.h5"
done
# the intact pair (both files hashed while read) the same with any pieces;
# --no-verify proceeds past the flip
want=
for kb in 0 1 5 ""; do
    export DS_COMPRESS_PIECE_KB=$kb
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/fa.h5" -o "$w/o$kb.bd.h5" $q > /dev/null || fail "compress of fa.h5 (kb=$kb)"
    h=$(hash "$w/o$kb.bd.h5")
    if [ -z "$want" ]; then want=$h; else [ "$h" = "$want" ] || fail "fa.h5: pieces of ${kb:-default} KB give another delta"; fi
    "$DELTASOUP" compress --base "$w/b.h5" --finetuned "$w/fax.h5" -o "$w/nv.bd.h5" --overwrite --no-verify $q \
        > /dev/null 2> "$w/err" || { cat "$w/err"; fail "--no-verify of a flipped fine-tune (kb=$kb)"; }
done
[ $fails = 0 ] || { echo "pieces.sh: $fails failure(s)"; exit 1; }
echo "pieces: ok"
