#!/bin/sh
# DP-SGD's math (src/dp_sgd.h) against the independent reference: per-example
# clipping and the noise-free sum on stories260K against PyTorch float64 (to
# 1e-5), the counter-based generator and the Poisson sample re-implemented,
# the noise's statistics over 1e6 draws (tests/python/dpsgd_ref.py).
. "$(dirname "$0")/../defaults.sh"
if [ -z "$OPENBLAS_CORETYPE" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=Haswell; export OPENBLAS_CORETYPE
fi
exec "$PYTHON3" "$top_srcdir/tests/python/dpsgd_ref.py" \
    "$top_builddir/tests/privacy/dpsgd_probe" "$top_srcdir/data/models/stories260K/stories260K.bin"
