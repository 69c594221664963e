/* Statistics of stored tensors (src/tensor_stats.h). */
#include "src/tensor_stats.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/popcount.h"

static double elem(ds_dtype t, const void *p, size_t i)
{
    switch (t) {
    case DS_DTYPE_F32: return ((const float *)p)[i];
    case DS_DTYPE_F16: return ds_f16_to_f32(((const uint16_t *)p)[i]);
    case DS_DTYPE_BF16: return ds_bf16_to_f32(((const uint16_t *)p)[i]);
    case DS_DTYPE_F64: return ((const double *)p)[i];
    case DS_DTYPE_U64: return (double)((const uint64_t *)p)[i];
    case DS_DTYPE_I32: return ((const int32_t *)p)[i];
    case DS_DTYPE_U8: return ((const uint8_t *)p)[i];
    default: ds_die("inspect: unknown dtype %d", (int)t);
    }
}

void ds_tensor_stats_compute(const ds_tinfo *t, const void *data, ds_tensor_stats *s)
{
    size_t n = (size_t)ds_tinfo_numel(t), nf = 0;
    double lo = INFINITY, hi = -INFINITY, sum = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double v = elem(t->dtype, data, i);
        if (!isfinite(v)) continue;
        nf++;
        sum += v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    double mean = nf ? sum / (double)nf : NAN;
    for (size_t i = 0; i < n; i++) {
        double v = elem(t->dtype, data, i);
        if (isfinite(v)) ss += (v - mean) * (v - mean);
    }
    memset(s, 0, sizeof *s);
    s->info = *t;
    s->min = nf ? lo : NAN;
    s->max = nf ? hi : NAN;
    s->mean = mean;
    s->std = nf ? sqrt(ss / (double)nf) : NAN;
    s->nonfinite = (int64_t)(n - nf);
    ds_entry_digest(t, data, &s->digest);
}

/* From the count of one bits in each scale group j: group j holds +g_j
 * ones_j times and -g_j n_j - ones_j times. */
void ds_delta_value_stats(const ds_delta_entry *e, const uint64_t *bits, const float *sc, double out[4])
{
    const int64_t rows = e->rows, cols = e->cols, wpr = e->words_per_row;
    const int64_t ng = e->mode == DS_SCALE_ROW ? rows : e->mode == DS_SCALE_COL ? cols : 1;
    const int64_t per = rows * cols / ng; /* elements in each group */
    int64_t *ones = ds_calloc((size_t)ng, sizeof(int64_t));
    if (e->mode == DS_SCALE_COL) {
        /* the majority vote's column count, each row a "user" (padding columns ignored) */
        const uint64_t **rowp = ds_malloc(sizeof(uint64_t *) * (size_t)rows + 1);
        uint32_t *cnt = ds_calloc((size_t)wpr * 64, sizeof(uint32_t));
        for (int64_t r = 0; r < rows; r++) rowp[r] = bits + r * wpr;
        ds_count_ones((size_t)rows, rowp, 0, (size_t)wpr, cnt);
        for (int64_t c = 0; c < cols; c++) ones[c] = cnt[c];
        free(rowp);
        free(cnt);
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t w = 0; w < wpr; w++) {
                uint64_t x = bits[r * wpr + w];
                if (w == wpr - 1 && cols % 64) x &= (UINT64_C(1) << (cols % 64)) - 1; /* padding */
                ones[e->mode == DS_SCALE_ROW ? r : 0] += __builtin_popcountll(x);
            }
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0, n = 0, ss = 0;
    for (int64_t j = 0; j < ng; j++) {
        const double g = sc[j];
        if (!isfinite(g)) continue;
        const double plus = (double)ones[j], minus = (double)(per - ones[j]);
        if (plus > 0) lo = fmin(lo, g), hi = fmax(hi, g);
        if (minus > 0) lo = fmin(lo, -g), hi = fmax(hi, -g);
        sum += g * (plus - minus);
        n += (double)per;
    }
    const double mean = n > 0 ? sum / n : NAN;
    for (int64_t j = 0; j < ng; j++) {
        const double g = sc[j];
        if (!isfinite(g)) continue;
        ss += (double)ones[j] * (g - mean) * (g - mean) + (double)(per - ones[j]) * (g + mean) * (g + mean);
    }
    out[0] = n > 0 ? lo : NAN;
    out[1] = n > 0 ? hi : NAN;
    out[2] = mean;
    out[3] = n > 0 ? sqrt(ss / n) : NAN;
    free(ones);
}
