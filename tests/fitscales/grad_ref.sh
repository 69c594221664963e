#!/bin/sh
# dL/dg of src/fitscales.c (per tensor, row and column; KL and MSE; tied and
# untied heads) against PyTorch float64 autograd on the scales only and
# float64 central finite differences (tests/python/fitscales_ref.py).
. "$(dirname "$0")/../defaults.sh"
exec "$PYTHON3" "$top_srcdir/tests/python/fitscales_ref.py" \
    "$top_builddir/tests/unit/test_fitscales_probe"
