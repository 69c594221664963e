/* Tests of kernels/cpu/gemm_bf16: every SIMD variant this CPU runs (direct
 * kernel, panel + sgemm path, backward product, matvec, conversion) against
 * the _ref twins and against a double-precision product of the same
 * rounded weights, for f32, f16 and bf16 weights, odd sizes included (tails
 * of 1..15 columns, rows not a multiple of 4 or of the one-token path's 8,
 * panels that do not divide out). The bound: |y - exact| <= 2 * in * 2^-24 * sum_k |x_k w_k| + tiny
 * (gemm_bf16.h); the conversion is exact (bit for bit). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm_bf16.h"
#include "src/gemm_w.h"
#include "kernels/half.h"
#include "tests/unit/check_main.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53 * 2 - 1;
}

static const ds_kdtype dtypes[3] = {DS_KDT_F32, DS_KDT_F16, DS_KDT_BF16};

/* W [out, in] in dt and its exact f32 values wf. */
static void *make_w(ds_kdtype dt, size_t n, float *wf)
{
    void *w = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        float v = (float)rnd();
        if (dt == DS_KDT_F32) ((float *)w)[i] = wf[i] = v;
        else if (dt == DS_KDT_F16) wf[i] = ds_f16_to_f32(((uint16_t *)w)[i] = ds_f32_to_f16(v));
        else wf[i] = ds_bf16_to_f32(((uint16_t *)w)[i] = ds_f32_to_bf16(v));
    }
    return w;
}

static float *make_x(size_t n)
{
    float *x = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) x[i] = (float)rnd();
    return x;
}

/* y (computed with beta, y0 the values before) against the exact sum. */
static void check_xwt(const float *y, const float *y0, float beta, const float *x, const float *wf, size_t N,
                      size_t in, size_t out, const char *what)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            double s = 0, a = 0;
            for (size_t k = 0; k < in; k++) {
                s += (double)x[n * in + k] * wf[o * in + k];
                a += fabs((double)x[n * in + k] * wf[o * in + k]);
            }
            const double b0 = beta != 0 ? y0[n * out + o] : 0;
            const double bound = 2.0 * (double)(in + 1) * 0x1p-24 * (a + fabs(b0)) + 1e-30;
            const double got = y[n * out + o];
            ck_assert_msg(fabs(got - (b0 + s)) <= bound, "%s: N=%zu in=%zu out=%zu y[%zu,%zu]=%.9g want %.9g (bound %g)",
                          what, N, in, out, n, o, got, b0 + s, bound);
        }
}

static const size_t sizes[][3] = {{1, 1, 1},    {1, 17, 5},   {1, 40, 19},  {1, 100, 8},  {3, 16, 4},
                                  {5, 33, 7},    {8, 64, 9},   {9, 100, 13}, {13, 255, 6}, {20, 31, 70},
                                  {33, 129, 17}};
#define NSIZES (sizeof sizes / sizeof sizes[0])

START_TEST(test_conv_exact)
{
    for (int d = 0; d < 3; d++)
        for (size_t n = 0; n < 70; n += 7) {
            float *wf = malloc(n * 4 + 4), *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
            void *w = make_w(dtypes[d], n, wf);
            ds_wconv_f32_ref(dtypes[d], w, a, n);
            ck_assert_mem_eq(a, wf, n * 4);
            for (int v = 0; v < DS_SIMD_COUNT; v++) {
                if (ds_simd_force((ds_simd)v)) continue;
                memset(b, 0xff, n * 4);
                ds_wconv_f32(dtypes[d], w, b, n);
                ck_assert_mem_eq(a, b, n * 4);
            }
            free(wf), free(a), free(b), free(w);
        }
    ds_simd_force(ds_simd_best());
}
END_TEST

START_TEST(test_xwt_variants)
{
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < NSIZES; s++) {
            const size_t N = sizes[s][0], in = sizes[s][1], out = sizes[s][2];
            float *wf = malloc(out * in * 4);
            void *w = make_w(dtypes[d], out * in, wf);
            float *x = make_x(N * in), *y0 = make_x(N * out), *y = malloc(N * out * 4), *yr = malloc(N * out * 4);
            /* panels of 3 rows: a scratch that does not divide out */
            float *scratch = malloc(in * 3 * 4);
            for (int beta = 0; beta <= 1; beta++) {
                memcpy(yr, y0, N * out * 4);
                ds_gemm_xwt_ref(dtypes[d], N, in, out, x, w, (float)beta, yr);
                check_xwt(yr, y0, (float)beta, x, wf, N, in, out, "ref");
                for (int v = 0; v < DS_SIMD_COUNT; v++) {
                    if (ds_simd_force((ds_simd)v)) continue;
                    memcpy(y, y0, N * out * 4);
                    ds_gemm_xwt_direct(dtypes[d], N, in, out, x, w, (float)beta, y);
                    check_xwt(y, y0, (float)beta, x, wf, N, in, out, ds_simd_name((ds_simd)v));
                    memcpy(y, y0, N * out * 4);
                    ds_gemm_xwt(dtypes[d], N, in, out, x, w, (float)beta, y, scratch, in * 3);
                    check_xwt(y, y0, (float)beta, x, wf, N, in, out, "xwt");
                    if (N == 1) { /* the one-token path */
                        memcpy(y, y0, out * 4);
                        ds_gemv_w(dtypes[d], in, out, w, x, (float)beta, y);
                        check_xwt(y, y0, (float)beta, x, wf, 1, in, out, "gemv");
                    }
                }
            }
            free(wf), free(w), free(x), free(y0), free(y), free(yr), free(scratch);
        }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* Never reads y when beta is 0: a NaN there must not come through. */
START_TEST(test_beta0_nan)
{
    const size_t N = 9, in = 19, out = 6;
    float *wf = malloc(out * in * 4), *x = make_x(N * in), *y = malloc(N * out * 4), scratch[19 * 4];
    void *w = make_w(DS_KDT_BF16, out * in, wf);
    for (int v = 0; v < DS_SIMD_COUNT; v++) {
        if (ds_simd_force((ds_simd)v)) continue;
        for (int path = 0; path < 3; path++) {
            for (size_t i = 0; i < N * out; i++) y[i] = NAN;
            if (path == 0) ds_gemm_xwt(DS_KDT_BF16, N, in, out, x, w, 0, y, scratch, in * 4);
            else if (path == 1) ds_gemm_xwt_direct(DS_KDT_BF16, N, in, out, x, w, 0, y);
            else ds_gemm_xw(DS_KDT_BF16, N, out, in, x, w, 0, y, NULL, 0); /* dy [N, in] -> dx [N, out] */
            for (size_t i = 0; i < N * out; i++) ck_assert(isfinite(y[i]));
        }
    }
    ds_simd_force(ds_simd_best());
    free(wf), free(x), free(y), free(w);
}
END_TEST

START_TEST(test_xw_variants)
{
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < NSIZES; s++) {
            const size_t N = sizes[s][0], in = sizes[s][1], out = sizes[s][2];
            float *wf = malloc(out * in * 4);
            void *w = make_w(dtypes[d], out * in, wf);
            /* dx[N, in] = dy[N, out] W: the product with W^T [in, out] */
            float *wt = malloc(out * in * 4);
            for (size_t o = 0; o < out; o++)
                for (size_t k = 0; k < in; k++) wt[k * out + o] = wf[o * in + k];
            float *dy = make_x(N * out), *d0 = make_x(N * in), *dx = malloc(N * in * 4);
            float *scratch = malloc(in * 2 * 4);
            for (int beta = 0; beta <= 1; beta++) {
                memcpy(dx, d0, N * in * 4);
                ds_gemm_xw_ref(dtypes[d], N, in, out, dy, w, (float)beta, dx);
                check_xwt(dx, d0, (float)beta, dy, wt, N, out, in, "xw ref");
                for (int v = 0; v < DS_SIMD_COUNT; v++) {
                    if (ds_simd_force((ds_simd)v)) continue;
                    memcpy(dx, d0, N * in * 4);
                    ds_gemm_xw(dtypes[d], N, in, out, dy, w, (float)beta, dx, scratch, in * 2);
                    /* panels add their partial sums: one more rounding per panel */
                    check_xwt(dx, d0, (float)beta, dy, wt, N, out, in, "xw");
                }
            }
            free(wf), free(w), free(wt), free(dy), free(d0), free(dx), free(scratch);
        }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* The vdpbf16ps product of the benchmark: bf16 x bf16 products, within the
 * same bound of the product of the rounded x (where the CPU has it). */
START_TEST(test_dpbf16)
{
    const size_t N = 6, in = 77, out = 9;
    float *wf = malloc(out * in * 4), *x = make_x(N * in), *xr = malloc(N * in * 4), *y = malloc(N * out * 4);
    uint16_t *xb = malloc(N * in * 2);
    void *w = make_w(DS_KDT_BF16, out * in, wf);
    for (size_t i = 0; i < N * in; i++) xr[i] = ds_bf16_to_f32(xb[i] = ds_f32_to_bf16(x[i]));
    if (ds_gemm_xwt_dpbf16(N, in, out, xb, w, y) == 0) check_xwt(y, y, 0, xr, wf, N, in, out, "dpbf16");
    free(wf), free(x), free(xr), free(y), free(xb), free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gemm_bf16");
    tcase_add_test(ds_check_case(s, "conv", 60), test_conv_exact);
    tcase_add_test(ds_check_case(s, "xwt", 60), test_xwt_variants);
    tcase_add_test(ds_check_case(s, "beta0", 60), test_beta0_nan);
    tcase_add_test(ds_check_case(s, "xw", 60), test_xw_variants);
    tcase_add_test(ds_check_case(s, "dpbf16", 60), test_dpbf16);
    return ds_check_run(s);
}
