# Sourced by methods.sh and real.sh (after they set $d and fail()): the list
# of reference cases that tests/python/aggregate_ref.py checks, one line each
# in the format it reads.
cases="$d/cases"
: > "$cases"

# agg NAME METHOD "OPTIONS" "CASE KEYS" INPUTS...: run and record a reference case
agg() {
    name=$1 m=$2 opt=$3 keys=$4
    shift 4
    "$DELTASOUP" aggregate --method "$m" $opt -o "$d/$name.bd.h5" --report "$d/$name.json" --quiet "$@" \
        > "$d/$name.out" 2>&1 || fail "$name: $(cat "$d/$name.out")"
    echo "$m $d/$name.bd.h5 $d/$name.json $keys -- $*" >> "$cases"
}
