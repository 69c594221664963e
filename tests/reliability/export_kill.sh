#!/bin/sh
# export leaves the old set or the new set (issue 15 item 9; docs/robustness.md
# "export: the set of files"): export is killed (SIGKILL, by the fault
# injection DS_TEST_FAIL_AT=POINT of io/hf_config.c) at each point of its
# commit, over an existing set (--overwrite) and into an empty folder; then
#  - killed before the commit marker is written: the folder's files are the
#    old set, byte for byte (or none), and only the staging folder
#    .NAME.export.tmp/ is new;
#  - killed after it: the marker names the files to rename;
# and a rerun of the same command (with or without --overwrite as the first
# run) succeeds, leaving the new set byte-identical to an uninterrupted
# export and no staging folder. At 1 and 2 ranks.
set -u
. "$(dirname "$0")/../defaults.sh"
. "$(dirname "$0")/common.sh"
need_numpy
model=$top_srcdir/data/models/stories260K
# the old set: b.h5 (f32) exported; the new set: f.h5 (f16: other tensors, another config.json)
for t in b:f32 f:f16; do
    "$DELTASOUP" import --from llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.bin" --dtype ${t#*:} \
        -o "$w/${t%:*}.h5" --quiet > /dev/null || exit 1
done
mkdir "$w/old" "$w/new" || exit 1
"$DELTASOUP" export --to safetensors "$w/b.h5" -o "$w/old/model.safetensors" --quiet > /dev/null || exit 1
"$DELTASOUP" export --to safetensors "$w/f.h5" -o "$w/new/model.safetensors" --quiet > /dev/null || exit 1
[ ! -e "$w/old/.model.safetensors.export.tmp" ] || fail "a plain export left its staging folder"
cmp -s "$w/old/model.safetensors" "$w/new/model.safetensors" && fail "old and new tensors are the same"
cmp -s "$w/old/config.json" "$w/new/config.json" && fail "old and new config.json are the same"
sums() { (cd "$1" && cksum model.safetensors config.json 2> /dev/null); }
OLD=$(sums "$w/old") NEW=$(sums "$w/new")
S=.model.safetensors.export.tmp

# run NP POINT FLAGS...: export f.h5 into $w/o, killed at POINT; the exit code in $rc
run() {
    _np=$1 _at=$2
    shift 2
    if [ "$_np" = 1 ]; then
        DS_TEST_FAIL_AT=$_at timeout -k 5 "$limit" "$DELTASOUP" export --to safetensors "$w/f.h5" \
            -o "$w/o/model.safetensors" --quiet "$@" > "$w/stdout" 2> "$w/stderr"
    else
        DS_TEST_FAIL_AT=$_at timeout -k 5 "$limit" $MPIEXEC -x DS_TEST_FAIL_AT -n "$_np" "$DELTASOUP" export \
            --to safetensors "$w/f.h5" -o "$w/o/model.safetensors" --quiet "$@" > "$w/stdout" 2> "$w/stderr"
    fi
    rc=$?
}
# At 2 ranks every rank writes its tensors and rank 0 commits the set: one
# point before the marker and two after it, over an existing set.
for np in 1 2; do
    starts="old empty" points="export:tensors export:staged export:marked export:renamed:1 export:renamed:2"
    [ $np = 2 ] && starts=old points="export:tensors export:marked export:renamed:1"
    for start in $starts; do
        if [ $start = old ]; then flags=--overwrite; else flags=; fi
        for at in $points; do
            case=" np=$np start=$start at=$at:"
            rm -rf "$w/o" && mkdir "$w/o" || exit 1
            [ $start = old ] && cp "$w/old/model.safetensors" "$w/old/config.json" "$w/o/"
            run $np $at $flags
            [ $rc -ne 0 ] || fail "$case not killed (exit 0)"
            [ -d "$w/o/$S" ] || fail "$case no staging folder left"
            now=$(sums "$w/o")
            case $at in
            export:tensors | export:staged)
                # before the marker: the folder holds exactly the old set (or nothing)
                [ ! -e "$w/o/$S/.deltasoup-commit" ] || fail "$case marker written too early"
                if [ $start = old ]; then [ "$now" = "$OLD" ] || fail "$case the old set changed"
                else [ -z "$now" ] || fail "$case files appeared: $now"; fi ;;
            *)
                # after it: the marker lists every file of the set, config.json last
                [ "$(sed -n 's/^file //p' "$w/o/$S/.deltasoup-commit" | tr '\n' ' ')" = "model.safetensors config.json " ] ||
                    fail "$case marker: $(cat "$w/o/$S/.deltasoup-commit")" ;;
            esac
            ls -A "$w/o" | grep -v -e '^model.safetensors$' -e '^config.json$' -e "^$S\$" > "$w/extra" &&
                fail "$case stray files: $(cat "$w/extra")"
            # the rerun: the same command, no fault
            run $np none $flags
            [ $rc -eq 0 ] || { fail "$case rerun exit $rc"; cat "$w/stderr"; }
            [ "$(sums "$w/o")" = "$NEW" ] || fail "$case after the rerun: not the new set"
            [ ! -e "$w/o/$S" ] || fail "$case after the rerun: staging folder left"
            case $at in
            export:tensors | export:staged) grep -q "removed the staging folder" "$w/stderr" ;;
            *) grep -q "finished an interrupted export" "$w/stderr" ;;
            esac || fail "$case the rerun did not say what it did: $(cat "$w/stderr")"
            echo "ok:$case $(grep -o 'note: [a-z ]*' "$w/stderr")"
        done
    done
done

echo "== import --from hf refuses a folder whose export stopped while renaming (a mix of two sets)"
rm -rf "$w/o" && mkdir "$w/o" || exit 1
run 1 export:renamed:1
cp "$top_srcdir/data/tokenizers/llama2-style-32k/tokenizer.json" "$w/o/" 2> /dev/null
expect 3 "$w/i.h5" "$w/o: an export into this folder was stopped while renaming its files ($w/o/$S/.deltasoup-commit): rerun that export to finish it" -- \
    import --from hf "$w/o" -o "$w/i.h5"

echo "== an interrupted export of another input is finished, then the rerun's own rule applies"
np=1
rm -rf "$w/o" && mkdir "$w/o" || exit 1
run 1 export:marked
"$DELTASOUP" export --to safetensors "$w/b.h5" -o "$w/o/model.safetensors" > "$w/stdout" 2> "$w/stderr"
rc=$?
[ $rc -eq 4 ] || fail "export of another input over a finished set: exit $rc, expected 4"
grep -q "^deltasoup export: note: finished an interrupted export" "$w/stderr" &&
    grep -q "^deltasoup export: error: .*model.safetensors: output exists (use --overwrite" "$w/stderr" ||
    fail "stderr: $(cat "$w/stderr")"
[ "$(sums "$w/o")" = "$NEW" ] || fail "the interrupted set was not finished"
[ ! -e "$w/o/$S" ] || fail "staging folder left"
echo "== a failed export (an existing output) writes and stages nothing"
rm -rf "$w/o" && mkdir "$w/o" || exit 1
cp "$w/old/model.safetensors" "$w/old/config.json" "$w/o/"
expect 4 - "output exists" -- export --to safetensors "$w/f.h5" -o "$w/o/model.safetensors"
[ "$(sums "$w/o")" = "$OLD" ] || fail "a refused export changed the old set"
[ ! -e "$w/o/$S" ] || fail "a refused export left a staging folder"
[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "all ok"
