#!/bin/sh
# Every shell test runs alone from a build directory (docs/TESTING.md): each
# tests/DIR/NAME.sh that is run (it starts with #!) sources tests/defaults.sh
# first thing, with the line below. Helpers sourced by tests have no #!;
# tests/gpu/build.sh builds, it is no test.
. "$(dirname "$0")/../defaults.sh"
line='. "$(dirname "$0")/../defaults.sh"'
bad=0
for f in "$top_srcdir"/tests/*/*.sh; do
    case $f in */tests/gpu/build.sh) continue ;; esac
    head -n 1 "$f" | grep -q '^#!' || continue
    # the first line that is not a comment or a `set` line
    first=$(grep -v -e '^#' -e '^set -[eu]*$' "$f" | head -n 1)
    [ "$first" = "$line" ] || {
        echo "alone.sh: ${f#"$top_srcdir"/} does not start with: $line" >&2
        bad=1
    }
done
exit $bad
