#!/bin/sh
# Outputs never replace inputs (issue 15 items 4, 7, 8, 10; docs/robustness.md
# "Outputs never replace inputs"): with or without --overwrite, an output that
# is an input (same path, another spelling of it, a link to it) or another
# output of the same job is refused before anything is written, exit 4, one
# line naming both, the input unchanged; the job's one check
# (ds_out_check_paths) at 1 and 2 ranks. A folder that takes no new files is
# named with the system's reason (run as an unprivileged user when root).
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
need_numpy
models
users 2
B=$(cksum < "$w/b.h5") D=$(cksum < "$w/d.bd.h5") U1=$(cksum < "$w/u1.bd.h5") T=$(cksum < "$w/text.txt")

echo "== apply"
np=2
expect 4 - "b.h5: output is the input $w/b.h5" -- apply --base "$w/b.h5" --delta "$w/d.bd.h5" -o "$w/b.h5" --overwrite
expect 4 - "output is the input $w/d.bd.h5" -- apply --base "$w/b.h5" --delta "$w/d.bd.h5" -o "$w/./d.bd.h5" --overwrite
ln -s b.h5 "$w/alias.h5"
expect 4 - "alias.h5: output is the input $w/b.h5" -- apply --base "$w/b.h5" --delta "$w/d.bd.h5" -o "$w/alias.h5" --overwrite
same "$w/b.h5" "$B"
same "$w/d.bd.h5" "$D"

echo "== compress"
expect 4 - "output is the input $w/f.h5" -- compress --base "$w/b.h5" --finetuned "$w/f.h5" -o "$w/../$(basename "$w")/f.h5" --overwrite
# the output's staging file NAME.tmp is an input: it would be removed as stale
cp "$w/f.h5" "$w/x.h5.tmp"
expect 4 - "x.h5: its staging file $w/x.h5.tmp is the input $w/x.h5.tmp" -- compress --base "$w/b.h5" --finetuned "$w/x.h5.tmp" -o "$w/x.h5"
[ -f "$w/x.h5.tmp" ] || fail "compress removed its input x.h5.tmp"

echo "== aggregate"
# item 4: -o R --report R exited 0 with R holding only the report
expect 4 "$w/R.bd.h5" "two outputs name the same file ($w/R.bd.h5 and $w/R.bd.h5)" -- \
    aggregate --method mean -o "$w/R.bd.h5" --report "$w/R.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5"
np=2
expect 4 - "output is the input $w/u1.bd.h5" -- aggregate --method mean -o "$w/u1.bd.h5" --overwrite "$w/u1.bd.h5" "$w/u2.bd.h5"
same "$w/u1.bd.h5" "$U1"
echo "$w/u1.bd.h5" > "$w/list"
expect 4 "$w/R.bd.h5" "list: output is the input $w/list" -- aggregate --method mean -o "$w/R.bd.h5" --report "$w/list" --list "$w/list" "$w/u2.bd.h5" --overwrite

echo "== poison"
mkdir -p "$w/p"
cp "$w/u1.bd.h5" "$w/p/scale-0.bd.h5"
P=$(cksum < "$w/p/scale-0.bd.h5")
expect 4 - "scale-0.bd.h5: output is the input $w/p/scale-0.bd.h5" -- poison --attack scale --count 1 -o "$w/p" --overwrite "$w/p/scale-0.bd.h5" "$w/u2.bd.h5"
same "$w/p/scale-0.bd.h5" "$P"

echo "== finetune, fit-scales"
expect 4 - "output is the input $w/text.txt" -- finetune --base "$w/b.h5" --data "$w/text.txt" -o "$w/text.txt" --overwrite --steps 1
same "$w/text.txt" "$T"
expect 4 "$w/fit.bd.h5" "output is the input $w/text.txt" -- fit-scales --base "$w/b.h5" --finetuned "$w/f.h5" --delta "$w/d.bd.h5" \
    --calib "$w/text.txt" -o "$w/fit.bd.h5" --report "$w/text.txt" --overwrite --steps 1
expect 4 "$w/fit.bd.h5" "two outputs name the same file ($w/fit.bd.h5 and $w/fit.bd.h5)" -- fit-scales --base "$w/b.h5" \
    --finetuned "$w/f.h5" --delta "$w/d.bd.h5" --calib "$w/text.txt" -o "$w/fit.bd.h5" --report "$w/fit.bd.h5" --steps 1
same "$w/text.txt" "$T"

echo "== eval"
np=1
# item 7: --json MODEL --overwrite turned the model into JSON
expect 4 - "b.h5: output is the input $w/b.h5" -- eval --model "$w/b.h5" --task "ppl:$w/text.txt" --json "$w/b.h5" --overwrite
same "$w/b.h5" "$B"
expect 4 - "output is the input $w/text.txt" -- eval --model "$w/b.h5" --task "ppl:$w/text.txt" --csv "$w/text.txt" --overwrite
same "$w/text.txt" "$T"
# item 8: --csv X --json X exited 4 with "cannot rename X.tmp" and X holding the CSV
expect 4 "$w/X" "two outputs name the same file ($w/X and $w/X)" -- eval --model "$w/b.h5" --task "ppl:$w/text.txt" --csv "$w/X" --json "$w/X"
np=2
expect 4 - "output is the input $w/d.bd.h5" -- eval --model "$w/b.h5" --delta "$w/d.bd.h5" --task "ppl:$w/text.txt" --items "$w/d.bd.h5" --overwrite
same "$w/d.bd.h5" "$D"

echo "== import, export"
np=1
mkdir -p "$w/st"
"$DELTASOUP" export --to safetensors "$w/b.h5" -o "$w/st/model.safetensors" --quiet > /dev/null || fail "export b.h5"
S=$(cksum < "$w/st/model.safetensors")
expect 4 - "output is the input $w/st/model.safetensors" -- import --from safetensors "$w/st/model.safetensors" -o "$w/st/model.safetensors" --overwrite
expect 4 - "output is the input $w/st/config.json" -- import --from safetensors "$w/st/model.safetensors" -o "$w/st/config.json" --overwrite
same "$w/st/model.safetensors" "$S"
expect 4 - "output is the input $w/b.h5" -- export --to safetensors "$w/b.h5" -o "$w/b.h5" --overwrite
same "$w/b.h5" "$B"

echo "== a folder that takes no new files names the reason"
if [ "$(id -u)" = 0 ]; then
    if command -v setpriv > /dev/null; then
        as_user="setpriv --reuid=65534 --regid=65534 --clear-groups"
    else
        as_user=
    fi
else
    as_user=env
fi
if [ -n "$as_user" ]; then
    chmod 755 "$w" && chmod 644 "$w/u1.bd.h5" "$w/u2.bd.h5" && mkdir -p "$w/ro" && chmod 555 "$w/ro"
    $as_user "$DELTASOUP" aggregate --method mean -o "$w/ro/R.bd.h5" "$w/u1.bd.h5" "$w/u2.bd.h5" --quiet > /dev/null 2> "$w/err"
    rc=$?
    [ $rc = 4 ] && grep -q "^deltasoup aggregate: error: $w/ro/R.bd.h5: cannot write in folder $w/ro: Permission denied$" "$w/err" &&
        [ "$(wc -l < "$w/err")" = 1 ] && echo "ok: $(cat "$w/err")" || fail "read-only folder: exit $rc: $(cat "$w/err")"
else
    echo "read-only folder: skipped (root without setpriv)"
fi
[ $fails = 0 ] || { echo "outputs.sh: $fails failure(s)"; exit 1; }
echo "outputs: ok"
