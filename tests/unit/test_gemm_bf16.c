/* Tests of kernels/cpu/gemm_bf16: every SIMD variant this CPU runs (direct
 * kernel, panel + sgemm path, backward product, matvec, conversion) against
 * the _ref twins and against a double-precision product of the same
 * rounded weights, for f32, f16 and bf16 weights, odd sizes included (tails
 * of 1..15 columns, rows not a multiple of 4 or of the one-token path's 8,
 * panels that do not divide out). The bound: |y - exact| <= 2 * in * 2^-24 * sum_k |x_k w_k| + tiny
 * (gemm_bf16.h); the conversion is exact (bit for bit). The bf16 x bf16
 * product of mode DS_GEMM_DP (vdpbf16ps, where the CPU has it) and its
 * twin: within that bound of the product of the rounded x and within the
 * documented bound of the f32 product, the same bits for any threads,
 * chunks of rows and neighbouring rows, x rounded as ds_f32_to_bf16. */
#include "config.h"
#include <cblas.h>
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

/* The exact (double) sum of x[k] w[k] over k < in, and of its terms' |.|. */
static void exact_dot(const float *x, const float *w, size_t in, double *s, double *a)
{
    *s = *a = 0;
    for (size_t k = 0; k < in; k++) {
        *s += (double)x[k] * w[k];
        *a += fabs((double)x[k] * w[k]);
    }
}

/* y (computed with beta, y0 the values before) against the exact sum. */
static void check_xwt(const float *y, const float *y0, float beta, const float *x, const float *wf, size_t N,
                      size_t in, size_t out, const char *what)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            double s, a;
            exact_dot(x + n * in, wf + o * in, in, &s, &a);
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

/* ---- coded weights (ds_gemm_xwt_coded, ds_gemm_xw_coded): W = W_b +
 * g (2b - 1) built panel by panel. Reference: W rebuilt whole by the
 * portable ds_bitpack_apply_ref (the f32 values the panels must hold), then
 * the exact (double) products; the same bound as the plain products. For
 * every dtype of W_b, scale kind, SIMD variant, with a scratch of 2 rows
 * (many panels), of whole W, and none (allocated for the call). */
START_TEST(test_coded)
{
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < NSIZES; s++) {
            const size_t N = sizes[s][0], in = sizes[s][1], out = sizes[s][2], words = ds_bitpack_words(in);
            float *wb = malloc(out * in * 4), *wf = malloc(out * in * 4), *wt = malloc(out * in * 4);
            void *w = make_w(dtypes[d], out * in, wb);
            uint64_t *bits = malloc(out * words * 8);
            for (size_t i = 0; i < out * words; i++) bits[i] = (uint64_t)((rnd() + 1) * 0x1p62) * 3u;
            for (size_t o = 0; o < out; o++) /* padding bits 0 */
                if (in % 64) bits[o * words + words - 1] &= (1ull << (in % 64)) - 1;
            float *sc = malloc((in > out ? in : out) * 4);
            float *x = make_x(N * in), *y0 = make_x(N * out), *y = malloc(N * out * 4);
            float *dy = make_x(N * out), *d0 = make_x(N * in), *dx = malloc(N * in * 4);
            float *scratch = malloc(out * in * 4 + 4);
            for (int kind = DS_SCALE_TENSOR; kind <= DS_SCALE_COL; kind++) {
                for (size_t i = 0; i < (in > out ? in : out); i++) sc[i] = (float)(0.05 + 0.1 * fabs(rnd()));
                ds_bitpack_apply_ref(DS_KDT_F32, wf, dtypes[d], w, bits, out, in, (ds_scale_kind)kind, sc);
                for (size_t o = 0; o < out; o++)
                    for (size_t k = 0; k < in; k++) wt[k * out + o] = wf[o * in + k];
                const ds_wcode c = {bits, (ds_scale_kind)kind, sc};
                const size_t scr[3] = {2 * in, out * in, 0};
                for (int v = 0; v < DS_SIMD_COUNT; v++) {
                    if (ds_simd_force((ds_simd)v)) continue;
                    for (int k = 0; k < 3; k++)
                        for (int beta = 0; beta <= 1; beta++) {
                            memcpy(y, y0, N * out * 4);
                            ds_gemm_xwt_coded(dtypes[d], N, in, out, x, w, &c, (float)beta, y,
                                              scr[k] ? scratch : NULL, scr[k]);
                            check_xwt(y, y0, (float)beta, x, wf, N, in, out, "xwt coded");
                            memcpy(dx, d0, N * in * 4);
                            ds_gemm_xw_coded(dtypes[d], N, in, out, dy, w, &c, (float)beta, dx,
                                             scr[k] ? scratch : NULL, scr[k]);
                            check_xwt(dx, d0, (float)beta, dy, wt, N, out, in, "xw coded");
                        }
                }
                /* a whole-W scratch: one panel, the same sgemm as an f32 W */
                float *yf = malloc(N * out * 4);
                memcpy(y, y0, N * out * 4);
                memcpy(yf, y0, N * out * 4);
                ds_gemm_xwt_coded(dtypes[d], N, in, out, x, w, &c, 1.0f, y, scratch, out * in);
                ds_gemm_xwt(DS_KDT_F32, N, in, out, x, wf, 1.0f, yf, NULL, 0);
                ck_assert_mem_eq(y, yf, N * out * 4);
                free(yf);
            }
            ds_simd_force(ds_simd_best());
            free(wb), free(wf), free(wt), free(w), free(bits), free(sc), free(x), free(y0), free(y), free(dy),
                free(d0), free(dx), free(scratch);
        }
}
END_TEST

/* ---- the bf16 x bf16 product (mode DS_GEMM_DP, gemm_bf16.h ds_gemm_dp_*) */

/* y against the f32 product of the unrounded x: the documented bound
 * (2^-8 + 2 (in + 1) 2^-24 (1 + 2^-8)) sum|x w| + 2 (in + 1) 2^-24 |beta y0|. */
static void check_dp_f32(const float *y, const float *y0, float beta, const float *x, const float *wf, size_t N,
                         size_t in, size_t out, const char *what)
{
    const double g = 2.0 * (double)(in + 1) * 0x1p-24;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            double s, a;
            exact_dot(x + n * in, wf + o * in, in, &s, &a);
            const double b0 = beta != 0 ? y0[n * out + o] : 0;
            const double bound = (0x1p-8 + g * (1 + 0x1p-8)) * a + g * fabs(b0) + (double)in * 0x1p-125;
            ck_assert_msg(fabs(y[n * out + o] - (b0 + s)) <= bound, "%s: N=%zu in=%zu out=%zu y[%zu,%zu]=%.9g want %.9g",
                          what, N, in, out, n, o, y[n * out + o], b0 + s);
        }
}

/* Odd shapes: rows not a multiple of the 16-row panels or of the 32-row
 * micro-kernel, out not a multiple of its 12 rows of W or of the 48-row
 * blocks, in odd (a pair with one column) and past one block of 1024 pairs. */
static const size_t dp_sizes[][3] = {{8, 1, 1},    {9, 77, 13},   {16, 32, 12},  {17, 33, 25},
                                     {31, 64, 49}, {33, 255, 50}, {47, 2051, 29}, {70, 130, 97}};
#define NDP (sizeof dp_sizes / sizeof dp_sizes[0])

/* y = beta*y0 + x . W^T through ds_gemm_xwt in mode dp with a scratch of
 * scratch_n floats, on T OpenBLAS threads. */
static void run_dp(size_t N, size_t in, size_t out, const float *x, const uint16_t *w, float beta, const float *y0,
                   float *y, size_t scratch_n, int T)
{
    float *scratch = scratch_n ? malloc(scratch_n * 4) : NULL;
    openblas_set_num_threads(T);
    memcpy(y, y0, N * out * 4);
    ck_assert_int_eq(ds_gemm_set_mode(DS_GEMM_DP), 0);
    ds_gemm_xwt(DS_KDT_BF16, N, in, out, x, w, beta, y, scratch, scratch_n);
    ds_gemm_set_mode(DS_GEMM_EXACT);
    openblas_set_num_threads(1);
    free(scratch);
}

START_TEST(test_dp)
{
    for (size_t s = 0; s < NDP; s++) {
        const size_t N = dp_sizes[s][0], in = dp_sizes[s][1], out = dp_sizes[s][2];
        float *wf = malloc(out * in * 4);
        uint16_t *w = make_w(DS_KDT_BF16, out * in, wf);
        float *x = make_x(N * in), *xr = malloc(N * in * 4), *y0 = make_x(N * out);
        float *y = malloc(N * out * 4), *yr = malloc(N * out * 4), *y2 = malloc(N * out * 4);
        for (size_t i = 0; i < N * in; i++) xr[i] = ds_bf16_to_f32(ds_f32_to_bf16(x[i]));
        for (int beta = 0; beta <= 1; beta++) {
            /* the twin: within the f32 bound of the product of the rounded x */
            memcpy(yr, y0, N * out * 4);
            ds_gemm_xwt_dp_ref(N, in, out, x, w, (float)beta, yr);
            check_xwt(yr, y0, (float)beta, xr, wf, N, in, out, "dp ref");
            check_dp_f32(yr, y0, (float)beta, x, wf, N, in, out, "dp ref vs f32");
            if (!ds_gemm_dp_available()) continue;
            /* the kernel: the same bounds, so within twice the f32 one of the twin */
            run_dp(N, in, out, x, w, (float)beta, y0, y, DS_GEMM_SCRATCH_FLOATS, 1);
            check_xwt(y, y0, (float)beta, xr, wf, N, in, out, "dp");
            check_dp_f32(y, y0, (float)beta, x, wf, N, in, out, "dp vs f32");
            /* 2 threads, no scratch (own buffer), a scratch of 16 rows (chunks): same bits */
            run_dp(N, in, out, x, w, (float)beta, y0, y2, 0, 2);
            ck_assert_mem_eq(y, y2, N * out * 4);
            const size_t row = ds_gemm_dp_xbytes(16, in) / 16;
            const size_t small = (2 * ((ds_gemm_dp_wbytes() + 63) / 64 * 64) + 64 + 16 * row + 3) / 4;
            run_dp(N, in, out, x, w, (float)beta, y0, y2, small, 2);
            ck_assert_mem_eq(y, y2, N * out * 4);
            /* a row's result does not depend on the rows beside it */
            if (N > 8) {
                run_dp(8, in, out, x + (N - 8) * in, w, (float)beta, y0 + (N - 8) * out, y2, DS_GEMM_SCRATCH_FLOATS, 1);
                ck_assert_mem_eq(y + (N - 8) * out, y2, 8 * out * 4);
            }
        }
        free(wf), free(w), free(x), free(xr), free(y0), free(y), free(yr), free(y2);
    }
}
END_TEST

/* Several threads on a product large enough to use them (2^24
 * multiply-adds): the same bits as one thread, within the bound of the twin. */
START_TEST(test_dp_threads)
{
    if (!ds_gemm_dp_available()) return;
    const size_t N = 40, in = 2051, out = 205;
    float *wf = malloc(out * in * 4);
    uint16_t *w = make_w(DS_KDT_BF16, out * in, wf);
    float *x = make_x(N * in), *xr = malloc(N * in * 4), *y0 = make_x(N * out);
    float *y = malloc(N * out * 4), *y2 = malloc(N * out * 4);
    for (size_t i = 0; i < N * in; i++) xr[i] = ds_bf16_to_f32(ds_f32_to_bf16(x[i]));
    run_dp(N, in, out, x, w, 1, y0, y, DS_GEMM_SCRATCH_FLOATS, 1);
    check_xwt(y, y0, 1, xr, wf, N, in, out, "dp 1 thread");
    for (int T = 2; T <= 3; T++) {
        run_dp(N, in, out, x, w, 1, y0, y2, DS_GEMM_SCRATCH_FLOATS, T);
        ck_assert_mem_eq(y, y2, N * out * 4);
    }
    free(wf), free(w), free(x), free(xr), free(y0), free(y), free(y2);
}
END_TEST

/* The rounding of x: with W one 1 per row (y[n][o] = xb[n][o] exactly), y
 * is ds_f32_to_bf16(x) bit for bit: ties to even, carries into the
 * exponent, large values (no infinity: inf * 0 would spoil the row); and
 * beta 0 never reads y (NaN there). */
START_TEST(test_dp_rounding)
{
    if (!ds_gemm_dp_available()) return;
    const size_t N = 19, in = 37, out = 37;
    uint16_t *w = calloc(out * in, 2);
    for (size_t o = 0; o < out; o++) w[o * in + o] = 0x3f80; /* 1.0 */
    float *x = malloc(N * in * 4), *y0 = malloc(N * out * 4), *y = malloc(N * out * 4);
    for (size_t i = 0; i < N * in; i++) {
        uint32_t u = 0x3f800000u + (uint32_t)(i * 0x8000u % 0x20000u); /* ties, odd and even, and between */
        if (i % 5 == 1) u = 0x3f7fffffu + (uint32_t)(i & 1) * 0x8000u;   /* carry into the exponent */
        if (i % 7 == 3) u = 0x7f7e8000u + (uint32_t)(i & 2) * 0x4000u;  /* large ties */
        if (i % 2) u |= 0x80000000u;
        memcpy(&x[i], &u, 4);
        y0[i % (N * out)] = NAN;
    }
    run_dp(N, in, out, x, w, 0, y0, y, DS_GEMM_SCRATCH_FLOATS, 1);
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            const float want = ds_bf16_to_f32(ds_f32_to_bf16(x[n * in + o]));
            ck_assert_msg(memcmp(&y[n * out + o], &want, 4) == 0, "y[%zu,%zu]=%a want %a (x %a)", n, o,
                          y[n * out + o], want, x[n * in + o]);
        }
    free(w), free(x), free(y0), free(y);
}
END_TEST

/* The mode: DS_GEMM_DP only where available; the default is exact. */
START_TEST(test_dp_mode)
{
    ck_assert_int_eq(ds_gemm_set_mode(DS_GEMM_EXACT), 0);
    ck_assert_int_eq(ds_gemm_get_mode(), DS_GEMM_EXACT);
    ck_assert_int_eq(ds_gemm_set_mode(DS_GEMM_DP), ds_gemm_dp_available() ? 0 : -1);
    ck_assert_int_eq(ds_gemm_get_mode(), ds_gemm_dp_available() ? DS_GEMM_DP : DS_GEMM_EXACT);
    ck_assert_int_eq(ds_simd_force(DS_SIMD_REF), 0); /* DS_SIMD=ref: no vdpbf16ps */
    ck_assert_int_eq(ds_gemm_dp_available(), 0);
    ck_assert_int_eq(ds_gemm_set_mode(DS_GEMM_DP), -1);
    ds_simd_force(ds_simd_best());
    ds_gemm_set_mode(DS_GEMM_EXACT);
}
END_TEST

int main(void)
{
    ds_gemm_set_mode(DS_GEMM_EXACT); /* the exact paths' bounds, whatever DS_GEMM_BF16 says */
    Suite *s = suite_create("gemm_bf16");
    tcase_add_test(ds_check_case(s, "conv", 60), test_conv_exact);
    tcase_add_test(ds_check_case(s, "xwt", 60), test_xwt_variants);
    tcase_add_test(ds_check_case(s, "beta0", 60), test_beta0_nan);
    tcase_add_test(ds_check_case(s, "xw", 60), test_xw_variants);
    tcase_add_test(ds_check_case(s, "coded", 60), test_coded);
    TCase *dp = ds_check_case(s, "dp", 60);
    tcase_add_test(dp, test_dp);
    tcase_add_test(dp, test_dp_threads);
    tcase_add_test(dp, test_dp_rounding);
    tcase_add_test(dp, test_dp_mode);
    return ds_check_run(s);
}
