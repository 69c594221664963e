/* Naive CPU references for the CUDA kernels: see ref.h. */
#include "tests/gpu/ref.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/half.h"

float ref_load(ds_kdtype dt, const void *p, size_t i)
{
    if (dt == DS_KDT_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == DS_KDT_F16 ? ds_f16_to_f32(h) : ds_bf16_to_f32(h);
}

void ref_store(ds_kdtype dt, void *p, size_t i, float f)
{
    if (dt == DS_KDT_F32) ((float *)p)[i] = f;
    else ((uint16_t *)p)[i] = dt == DS_KDT_F16 ? ds_f32_to_f16(f) : ds_f32_to_bf16(f);
}

static int bit_of(const uint64_t *row, size_t j) { return (int)((row[j / 64] >> (j % 64)) & 1u); }

static float scale_of(ds_scale_kind kind, const float *s, size_t i, size_t j)
{
    return kind == DS_SCALE_TENSOR ? s[0] : kind == DS_SCALE_ROW ? s[i] : s[j];
}

void ref_compress(ds_kdtype dt, const void *wf, const void *wb, size_t rows, size_t cols,
                  uint64_t *bits, double *row_abs, double *col_abs)
{
    size_t words = (cols + 63) / 64;
    for (size_t i = 0; i < rows; i++) {
        double lane[16] = {0};
        memset(bits + i * words, 0, words * 8);
        for (size_t j = 0; j < cols; j++) {
            float d = ref_load(dt, wf, i * cols + j) - ref_load(dt, wb, i * cols + j);
            if (d >= 0.0f) bits[i * words + j / 64] |= 1ull << (j % 64);
            lane[j % 16] += (double)fabsf(d);
            if (col_abs) col_abs[j] += (double)fabsf(d);
        }
        for (int w = 8; w >= 1; w /= 2)
            for (int k = 0; k < w; k++) lane[k] += lane[k + w];
        if (row_abs) row_abs[i] = lane[0];
    }
}

void ref_apply(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb, const uint64_t *bits,
               size_t rows, size_t cols, ds_scale_kind kind, const float *scale)
{
    size_t words = (cols + 63) / 64;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            float s = bit_of(bits + i * words, j) ? 1.0f : -1.0f;
            ref_store(out_dt, out, i * cols + j, ref_load(in_dt, wb, i * cols + j) + scale_of(kind, scale, i, j) * s);
        }
}

void ref_expand(float *dst, const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                const float *scale)
{
    size_t words = (cols + 63) / 64;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            dst[i * cols + j] = scale_of(kind, scale, i, j) * (bit_of(bits + i * words, j) ? 1.0f : -1.0f);
}

void ref_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint64_t *out)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            for (size_t b = w0 * 64; b < w1 * 64; b++)
                out[i * n + j] += (uint64_t)(bit_of(v[i], b) != bit_of(v[j], b));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void ref_trimmed_mean(size_t n, const uint64_t *const *v, size_t rows, size_t cols,
                      ds_scale_kind kind, const float *scale, size_t trim, float *out)
{
    size_t words = (cols + 63) / 64;
    double *val = malloc(n * sizeof *val);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            for (size_t u = 0; u < n; u++) {
                double g = kind == DS_SCALE_ROW ? scale[u * rows + i] : scale[u];
                val[u] = g * (bit_of(v[u] + i * words, j) ? 1.0 : -1.0);
            }
            qsort(val, n, sizeof *val, cmp_double);
            double s = 0.0;
            for (size_t q = trim; q < n - trim; q++) s += val[q];
            out[i * cols + j] = (float)(s / (double)(n - 2 * trim));
        }
    free(val);
}

void ref_bitdelta_matmul(size_t U, size_t m, size_t n, size_t k, const uint16_t *x,
                         const uint16_t *wb, const uint64_t *bits, ds_scale_kind kind,
                         const float *scale, float *y)
{
    size_t words = (k + 63) / 64;
    for (size_t u = 0; u < U; u++)
        for (size_t t = 0; t < m; t++)
            for (size_t o = 0; o < n; o++) {
                const uint16_t *xr = x + (u * m + t) * k;
                const uint64_t *br = bits + (u * n + o) * words;
                double base = 0.0, delta = 0.0;
                for (size_t j = 0; j < k; j++) {
                    double xv = ds_bf16_to_f32(xr[j]);
                    base += xv * ds_bf16_to_f32(wb[o * k + j]);
                    double g = kind == DS_SCALE_TENSOR ? scale[u] : kind == DS_SCALE_ROW ? scale[u * n + o] : scale[u * k + j];
                    delta += xv * g * (bit_of(br, j) ? 1.0 : -1.0);
                }
                y[(u * m + t) * n + o] = (float)(base + delta);
            }
}

double ref_nmse(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? num / den : num;
}
