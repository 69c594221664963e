#!/bin/sh
# docs/cli.md must be what scripts/gen-cli-doc.sh makes from the built program.
. "$(dirname "$0")/../defaults.sh"
OMPI_MCA_ess_singleton_isolated=1; export OMPI_MCA_ess_singleton_isolated
bash "$top_srcdir/scripts/gen-cli-doc.sh" "$DELTASOUP" > cli_doc.out || exit 1
if ! diff -u "$top_srcdir/docs/cli.md" cli_doc.out; then
    echo "cli_doc.sh: docs/cli.md is stale: run scripts/gen-cli-doc.sh build/deltasoup > docs/cli.md" >&2
    exit 1
fi
rm -f cli_doc.out
