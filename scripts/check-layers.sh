#!/bin/sh
# The dependency order of the source tree (docs/DEVELOPING.md, "Layers"):
#   kernels <- src <- io <- eval <- jobs
# A file may include headers of its own layer and of the layers to its left,
# never of a layer to its right, and nothing outside tests/ and bench/ includes
# tests/. src/ is pure (no HDF5, no file formats): <hdf5.h> only from io/ on.
# And every source file of these folders is named in Makefile.am or mk/*.am.
# usage: scripts/check-layers.sh [SRCDIR]   (exit 0 clean, 1 with one line per violation)
top=${1:-$(dirname "$0")/..}
cd "$top" || exit 2
rank() {
    case $1 in
    kernels) echo 0 ;; src) echo 1 ;; io) echo 2 ;; eval) echo 3 ;; jobs) echo 4 ;;
    tests | bench) echo 9 ;; *) echo -1 ;;
    esac
}
bad=0
for layer in kernels src io eval jobs; do
    own=$(rank "$layer")
    for f in $(find "$layer" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.def' \) | sort); do
        # '#include "dir/file.h"' lines with their line numbers
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]' "$f" | while IFS= read -r line; do
            n=${line%%:*}
            inc=$(printf '%s\n' "$line" | sed -n 's/.*include[[:space:]]*["<]\([^">]*\)[">].*/\1/p')
            case $inc in
            */*) dir=${inc%%/*} ;;
            *) dir= ;;
            esac
            if [ "$inc" = hdf5.h ] && [ "$own" -lt 2 ]; then
                echo "$f:$n: includes <hdf5.h>: $layer/ must not touch files (HDF5 belongs to io/)"
                continue
            fi
            [ -n "$dir" ] || continue
            r=$(rank "$dir")
            [ "$r" -ge 0 ] || continue # a system header such as <sys/stat.h>
            if [ "$r" -gt "$own" ]; then
                echo "$f:$n: includes \"$inc\": $layer/ may not depend on $dir/ (order: kernels <- src <- io <- eval <- jobs)"
            fi
        done
    done
done > "${TMPDIR:-/tmp}/check-layers.$$"
# Every source file of the layers is built or shipped: named in Makefile.am
# or a fragment of mk/ (one per folder; a file missing there builds here and
# fails in a tarball).
for f in $(find kernels src io eval jobs -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.def' \) | sort); do
    grep -qw -- "$f" Makefile.am mk/*.am || echo "$f: not named in Makefile.am or mk/*.am"
done >> "${TMPDIR:-/tmp}/check-layers.$$"
if [ -s "${TMPDIR:-/tmp}/check-layers.$$" ]; then
    cat "${TMPDIR:-/tmp}/check-layers.$$" >&2
    bad=1
fi
rm -f "${TMPDIR:-/tmp}/check-layers.$$"
exit $bad
