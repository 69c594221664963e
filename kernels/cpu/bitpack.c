/* Public entry points of the packing kernels: dispatch to the active variant. */
#include "kernels/cpu/bitpack_impl.h"

void ds_bitpack_compress(ds_kdtype dt, const void *wf, const void *wb, size_t rows, size_t cols,
                         uint64_t *bits, double *row_abs, double *col_abs)
{
    ds_kernels()->compress(dt, wf, wb, rows, cols, bits, row_abs, col_abs);
}

void ds_bitpack_apply(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb,
                      const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                      const float *scale)
{
    ds_kernels()->apply(out_dt, out, in_dt, wb, bits, rows, cols, kind, scale);
}

void ds_bitpack_expand(float *dst, const uint64_t *bits, size_t rows, size_t cols,
                       ds_scale_kind kind, const float *scale)
{
    ds_kernels()->expand(dst, bits, rows, cols, kind, scale);
}
