/* Portable reference kernels: the definition every SIMD variant must match
 * bit for bit (bitpack.h states the layout and the summation order). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/half.h"

static inline float load_f32(ds_kdtype dt, const void *p, size_t i)
{
    switch (dt) {
    case DS_KDT_F16: return ds_f16_to_f32(((const uint16_t *)p)[i]);
    case DS_KDT_BF16: return ds_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void store_f32(ds_kdtype dt, void *p, size_t i, float x)
{
    switch (dt) {
    case DS_KDT_F16: ((uint16_t *)p)[i] = ds_f32_to_f16(x); break;
    case DS_KDT_BF16: ((uint16_t *)p)[i] = ds_f32_to_bf16(x); break;
    default: ((float *)p)[i] = x; break;
    }
}

static inline float scale_at(ds_scale_kind kind, const float *scale, size_t r, size_t j)
{
    return kind == DS_SCALE_TENSOR ? scale[0] : kind == DS_SCALE_ROW ? scale[r] : scale[j];
}

void ds_bitpack_compress_ref(ds_kdtype dt, const void *wf, const void *wb, size_t rows,
                             size_t cols, uint64_t *bits, double *row_abs, double *col_abs)
{
    size_t wpr = ds_bitpack_words(cols);
    for (size_t r = 0; r < rows; r++) {
        uint64_t *out = bits + r * wpr;
        double lane[16] = {0};
        uint64_t word = 0;
        for (size_t j = 0; j < cols; j++) {
            size_t i = r * cols + j;
            float d = load_f32(dt, wf, i) - load_f32(dt, wb, i);
            float a = fabsf(d);
            word |= (uint64_t)(d >= 0.0f) << (j & 63);
            lane[j & 15] += (double)a;
            if (col_abs) col_abs[j] += (double)a;
            if ((j & 63) == 63 || j + 1 == cols) {
                out[j >> 6] = word;
                word = 0;
            }
        }
        if (row_abs) row_abs[r] = ds_lanes_reduce16(lane);
    }
}

void ds_bitpack_apply_ref(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb,
                          const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                          const float *scale)
{
    size_t wpr = ds_bitpack_words(cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++) {
            size_t i = r * cols + j;
            float g = scale_at(kind, scale, r, j);
            int b = (int)((bits[r * wpr + (j >> 6)] >> (j & 63)) & 1);
            store_f32(out_dt, out, i, load_f32(in_dt, wb, i) + (b ? g : -g));
        }
}

void ds_bitpack_expand_ref(float *dst, const uint64_t *bits, size_t rows, size_t cols,
                           ds_scale_kind kind, const float *scale)
{
    size_t wpr = ds_bitpack_words(cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++) {
            float g = scale_at(kind, scale, r, j);
            int b = (int)((bits[r * wpr + (j >> 6)] >> (j & 63)) & 1);
            dst[r * cols + j] = b ? g : -g;
        }
}
