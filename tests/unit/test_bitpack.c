/* Tests of kernels/cpu: the packing convention on hand-made cases, every
 * SIMD variant this CPU runs against the _ref kernels bit for bit (bits,
 * row and column sums, applied and expanded outputs, Hamming counts), and
 * the popcount kernels against per-bit loops.
 * Modes: no argument runs the Check suite; --dump FILE writes inputs and
 * outputs of the active variant for tests/python/bitpack_ref.py; --simd
 * prints the active variant (DS_SIMD is read on first use). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/popcount.h"
#include "kernels/half.h"
#include "src/ds.h"
#include "tests/unit/check_main.h"

_Static_assert((int)DS_KDT_F32 == (int)DS_DTYPE_F32 && (int)DS_KDT_F16 == (int)DS_DTYPE_F16 &&
                   (int)DS_KDT_BF16 == (int)DS_DTYPE_BF16,
               "ds_kdtype must cast from ds_dtype");

static const ds_kdtype dtypes[3] = {DS_KDT_F32, DS_KDT_F16, DS_KDT_BF16};
static const size_t test_cols[] = {1, 63, 64, 65, 127, 1000};
#define NCOLS (sizeof test_cols / sizeof test_cols[0])

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static double rng_unit(void) { return (double)(rng_u64() >> 11) * 0x1p-53; }

static size_t esz(ds_kdtype dt) { return dt == DS_KDT_F32 ? 4 : 2; }

static void put(ds_kdtype dt, void *p, size_t i, float x)
{
    if (dt == DS_KDT_F32)
        ((float *)p)[i] = x;
    else if (dt == DS_KDT_F16)
        ((uint16_t *)p)[i] = ds_f32_to_f16(x);
    else
        ((uint16_t *)p)[i] = ds_f32_to_bf16(x);
}

/* A NaN with every payload bit set: rounding it like a number would carry
 * into the sign, so it tells NaN handling apart on output. */
static void put_nan(ds_kdtype dt, void *p, size_t i)
{
    if (dt == DS_KDT_F32)
        ((uint32_t *)p)[i] = 0x7fffffffu;
    else
        ((uint16_t *)p)[i] = 0x7fff;
}

/* Weight pairs with the awkward cases mixed in: ties (delta +0.0), signed
 * zeros (delta -0.0 and +0.0), exact zeros, values that are subnormal in
 * f16, and ordinary small deltas of both signs. */
static void make_pair(ds_kdtype dt, size_t n, void *wf, void *wb)
{
    for (size_t i = 0; i < n; i++) {
        double u = rng_unit();
        float b = (float)((rng_unit() - 0.5) * 0.2), f;
        if (u < 0.10) {
            f = b;
        } else if (u < 0.15) {
            f = -0.0f;
            b = 0.0f;
        } else if (u < 0.18) {
            f = 0.0f;
            b = -0.0f;
        } else if (u < 0.22) {
            f = 0.0f;
        } else if (u < 0.26) {
            f = (float)((rng_unit() - 0.5) * 1e-5); /* f16 subnormal range */
            b = (float)((rng_unit() - 0.5) * 1e-5);
        } else {
            f = b + (float)((rng_unit() - 0.5) * 0.01);
        }
        put(dt, wf, i, f);
        put(dt, wb, i, b);
    }
}

static void fill_random(uint64_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++) w[i] = rng_u64();
}

/* The variants to check against _ref: every one this CPU runs but ref. */
static int other_variants(ds_simd *out)
{
    int k = 0;
    for (int v = DS_SIMD_REF + 1; v < DS_SIMD_COUNT; v++)
        if (ds_simd_supported((ds_simd)v)) out[k++] = (ds_simd)v;
    return k;
}

START_TEST(test_layout_known)
{
    /* delta = (1, -1, 0): bits 1, 0, 1; sum |delta| = 2. */
    float f[3] = {1.0f, -1.0f, 0.0f}, b[3] = {0};
    uint64_t bits[2];
    double ra;
    ds_bitpack_compress_ref(DS_KDT_F32, f, b, 1, 3, bits, &ra, NULL);
    ck_assert_uint_eq(bits[0], 5);
    ck_assert(ra == 2.0);
    /* -0.0 - (+0.0) = -0.0 >= 0: bit 1; NaN: bit 0; +0.0 - (-0.0) = +0.0: bit 1. */
    float f2[3] = {-0.0f, NAN, 0.0f}, b2[3] = {0.0f, 0.0f, -0.0f};
    ds_bitpack_compress_ref(DS_KDT_F32, f2, b2, 1, 3, bits, NULL, NULL);
    ck_assert_uint_eq(bits[0], 5);
    /* 65 columns of +1, -1, +1, ...: word 0 = 0x5555..., word 1 = 1 (j = 64). */
    float f3[65], b3[65] = {0};
    for (int j = 0; j < 65; j++) f3[j] = (j & 1) ? -1.0f : 1.0f;
    ds_bitpack_compress_ref(DS_KDT_F32, f3, b3, 1, 65, bits, &ra, NULL);
    ck_assert_uint_eq(bits[0], 0x5555555555555555ull);
    ck_assert_uint_eq(bits[1], 1);
    ck_assert(ra == 65.0);
}
END_TEST

START_TEST(test_summation_order)
{
    /* |delta| = 2^53, then sixteen 1s. Lane 0 gets 2^53 + 1 (j = 16) = 2^53
     * (tie to even), lanes 1..15 get 1; the tree gives 2^53 + 14. A plain
     * left-to-right sum would give 2^53: the order is observable. */
    float f[17], b[17] = {0};
    f[0] = 0x1p53f;
    for (int j = 1; j < 17; j++) f[j] = -1.0f;
    uint64_t bits[1];
    double ra, col[17] = {0};
    ds_simd vs[DS_SIMD_COUNT];
    int nv = other_variants(vs);
    ds_bitpack_compress_ref(DS_KDT_F32, f, b, 1, 17, bits, &ra, col);
    ck_assert(ra == 0x1p53 + 14.0);
    ck_assert_uint_eq(bits[0], 1);
    for (int k = 0; k < nv; k++) {
        ck_assert_int_eq(ds_simd_force(vs[k]), 0);
        ra = 0;
        ds_bitpack_compress(DS_KDT_F32, f, b, 1, 17, bits, &ra, NULL);
        ck_assert_msg(ra == 0x1p53 + 14.0, "%s: %.17g", ds_simd_name(vs[k]), ra);
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

START_TEST(test_compress_variants)
{
    ds_simd vs[DS_SIMD_COUNT];
    int nv = other_variants(vs);
    for (int t = 0; t < 3; t++)
        for (size_t c = 0; c < NCOLS; c++)
            for (size_t rows = 1; rows <= 7; rows++) {
                ds_kdtype dt = dtypes[t];
                size_t cols = test_cols[c], n = rows * cols, wpr = ds_bitpack_words(cols);
                void *wf = malloc(n * esz(dt)), *wb = malloc(n * esz(dt));
                uint64_t *bref = malloc(rows * wpr * 8), *bv = malloc(rows * wpr * 8);
                double *rref = malloc(rows * 8), *rv = malloc(rows * 8);
                double *cref = malloc(cols * 8), *cv = malloc(cols * 8), *cinit = malloc(cols * 8);
                make_pair(dt, n, wf, wb);
                for (size_t j = 0; j < cols; j++) cinit[j] = rng_unit(); /* col_abs accumulates */
                memcpy(cref, cinit, cols * 8);
                memset(bref, 0xa5, rows * wpr * 8); /* every word must be written */
                ds_bitpack_compress_ref(dt, wf, wb, rows, cols, bref, rref, cref);
                for (size_t r = 0; r < rows; r++) {
                    /* padding bits are 0 */
                    if (cols & 63) ck_assert_uint_eq(bref[r * wpr + wpr - 1] >> (cols & 63), 0);
                    /* the row sum is a sum of |delta| (loose check against long double) */
                    long double s = 0;
                    for (size_t j = 0; j < cols; j++) {
                        size_t i = r * cols + j;
                        float a = dt == DS_KDT_F32 ? ((float *)wf)[i]
                                  : dt == DS_KDT_F16 ? ds_f16_to_f32(((uint16_t *)wf)[i])
                                                     : ds_bf16_to_f32(((uint16_t *)wf)[i]);
                        float bb = dt == DS_KDT_F32 ? ((float *)wb)[i]
                                   : dt == DS_KDT_F16 ? ds_f16_to_f32(((uint16_t *)wb)[i])
                                                      : ds_bf16_to_f32(((uint16_t *)wb)[i]);
                        s += fabsl((long double)(a - bb));
                    }
                    ck_assert(fabsl(s - rref[r]) <= 1e-12L * (s + 1e-300L));
                }
                for (int k = 0; k < nv; k++) {
                    ck_assert_int_eq(ds_simd_force(vs[k]), 0);
                    memcpy(cv, cinit, cols * 8);
                    memset(bv, 0x5a, rows * wpr * 8);
                    ds_bitpack_compress(dt, wf, wb, rows, cols, bv, rv, cv);
                    ck_assert_msg(memcmp(bref, bv, rows * wpr * 8) == 0,
                                  "%s bits differ: dt %d rows %zu cols %zu",
                                  ds_simd_name(vs[k]), (int)dt, rows, cols);
                    ck_assert_msg(memcmp(rref, rv, rows * 8) == 0,
                                  "%s row sums differ: dt %d rows %zu cols %zu",
                                  ds_simd_name(vs[k]), (int)dt, rows, cols);
                    ck_assert_msg(memcmp(cref, cv, cols * 8) == 0,
                                  "%s column sums differ: dt %d rows %zu cols %zu",
                                  ds_simd_name(vs[k]), (int)dt, rows, cols);
                    /* optional outputs omitted: the bits do not change */
                    ds_bitpack_compress(dt, wf, wb, rows, cols, bv, NULL, NULL);
                    ck_assert(memcmp(bref, bv, rows * wpr * 8) == 0);
                }
                free(wf), free(wb), free(bref), free(bv), free(rref), free(rv);
                free(cref), free(cv), free(cinit);
            }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* Scales for a kind: positive, some tiny, some large enough to overflow
 * f16 when added to the largest weights. */
static float *make_scales(size_t n)
{
    float *g = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double u = rng_unit();
        g[i] = u < 0.1 ? 1e-7f : u < 0.15 ? 40.0f : (float)(rng_unit() * 0.01);
    }
    return g;
}

START_TEST(test_apply_variants)
{
    ds_simd vs[DS_SIMD_COUNT];
    int nv = other_variants(vs);
    for (int ti = 0; ti < 3; ti++)
        for (int to = 0; to < 3; to++)
            for (size_t c = 0; c < NCOLS; c++)
                for (size_t rows = 1; rows <= 7; rows += 3) {
                    ds_kdtype in = dtypes[ti], od = dtypes[to];
                    size_t cols = test_cols[c], n = rows * cols, wpr = ds_bitpack_words(cols);
                    void *wf = malloc(n * esz(in)), *wb = malloc(n * esz(in));
                    void *oref = malloc(n * esz(od)), *ov = malloc(n * esz(od));
                    uint64_t *bits = malloc(rows * wpr * 8);
                    make_pair(in, n, wf, wb);
                    put(in, wb, 0, 65504.0f); /* f16 max: + 40 overflows to Inf */
                    if (n > 2) put_nan(in, wb, 1);
                    ds_bitpack_compress_ref(in, wf, wb, rows, cols, bits, NULL, NULL);
                    float *g = make_scales(rows > cols ? rows : cols);
                    for (int kind = 0; kind < 3; kind++) {
                        ds_bitpack_apply_ref(od, oref, in, wb, bits, rows, cols,
                                             (ds_scale_kind)kind, g);
                        for (int k = 0; k < nv; k++) {
                            ck_assert_int_eq(ds_simd_force(vs[k]), 0);
                            ds_bitpack_apply(od, ov, in, wb, bits, rows, cols,
                                             (ds_scale_kind)kind, g);
                            ck_assert_msg(memcmp(oref, ov, n * esz(od)) == 0,
                                          "%s apply differs: in %d out %d kind %d rows %zu "
                                          "cols %zu",
                                          ds_simd_name(vs[k]), (int)in, (int)od, kind, rows, cols);
                            if (in == od) { /* in place gives the same */
                                void *w = malloc(n * esz(in));
                                memcpy(w, wb, n * esz(in));
                                ds_bitpack_apply(od, w, in, w, bits, rows, cols,
                                                 (ds_scale_kind)kind, g);
                                ck_assert(memcmp(oref, w, n * esz(od)) == 0);
                                free(w);
                            }
                        }
                    }
                    free(g), free(wf), free(wb), free(oref), free(ov), free(bits);
                }
    ds_simd_force(ds_simd_best());
}
END_TEST

START_TEST(test_expand_variants)
{
    ds_simd vs[DS_SIMD_COUNT];
    int nv = other_variants(vs);
    for (size_t c = 0; c < NCOLS; c++)
        for (size_t rows = 1; rows <= 7; rows++) {
            size_t cols = test_cols[c], n = rows * cols, wpr = ds_bitpack_words(cols);
            uint64_t *bits = malloc(rows * wpr * 8);
            fill_random(bits, rows * wpr);
            float *g = make_scales(rows > cols ? rows : cols);
            float *eref = malloc(n * 4), *ev = malloc(n * 4);
            for (int kind = 0; kind < 3; kind++) {
                ds_bitpack_expand_ref(eref, bits, rows, cols, (ds_scale_kind)kind, g);
                /* the definition, element by element */
                for (size_t r = 0; r < rows; r++)
                    for (size_t j = 0; j < cols; j++) {
                        float gg = kind == 0 ? g[0] : kind == 1 ? g[r] : g[j];
                        int b = (int)(bits[r * wpr + j / 64] >> (j % 64) & 1);
                        ck_assert(eref[r * cols + j] == (b ? gg : -gg));
                    }
                for (int k = 0; k < nv; k++) {
                    ck_assert_int_eq(ds_simd_force(vs[k]), 0);
                    ds_bitpack_expand(ev, bits, rows, cols, (ds_scale_kind)kind, g);
                    ck_assert_msg(memcmp(eref, ev, n * 4) == 0, "%s expand differs: kind %d",
                                  ds_simd_name(vs[k]), kind);
                }
            }
            free(bits), free(g), free(eref), free(ev);
        }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* Per-bit definitions, independent of any popcount. */
static uint64_t hamming_bits(const uint64_t *a, const uint64_t *b, size_t nw)
{
    uint64_t h = 0;
    for (size_t i = 0; i < nw; i++)
        for (int k = 0; k < 64; k++) h += ((a[i] >> k) & 1) != ((b[i] >> k) & 1);
    return h;
}

START_TEST(test_hamming)
{
    static const size_t lens[] = {0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 100, 124, 125, 1500};
    const size_t nu = 5, maxw = 1600;
    uint64_t *data = malloc(nu * maxw * 8);
    fill_random(data, nu * maxw);
    for (size_t i = 0; i < maxw; i++) data[i] = ~data[maxw + i]; /* user 0 = ~user 1 */
    const uint64_t *v[5];
    for (size_t u = 0; u < nu; u++) v[u] = data + u * maxw;
    ck_assert_uint_eq(ds_hamming_ref(v[0], v[1], 10), 640);
    for (int var = 0; var < DS_SIMD_COUNT; var++) {
        if (!ds_simd_supported((ds_simd)var)) continue;
        ds_simd_force((ds_simd)var);
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t w0 = l % 3, w1 = w0 + lens[l]; /* unaligned starts too */
            ck_assert_uint_eq(ds_hamming(v[2] + w0, v[3] + w0, lens[l]),
                              hamming_bits(v[2] + w0, v[3] + w0, lens[l]));
            uint64_t out[25], want[25];
            for (int i = 0; i < 25; i++) out[i] = want[i] = 7; /* accumulates; lower untouched */
            for (size_t i = 0; i < nu; i++)
                for (size_t j = i + 1; j < nu; j++)
                    want[i * nu + j] += hamming_bits(v[i] + w0, v[j] + w0, lens[l]);
            ds_hamming_pairs(nu, v, w0, w1, out);
            ck_assert_msg(memcmp(out, want, sizeof out) == 0, "%s pairs differ, %zu words",
                          ds_simd_name((ds_simd)var), lens[l]);
        }
    }
    ds_simd_force(ds_simd_best());
    free(data);
}
END_TEST

START_TEST(test_count_ones)
{
    const size_t nu = 7, nw = 13;
    uint64_t *data = malloc(nu * nw * 8);
    fill_random(data, nu * nw);
    data[0] = ~0ull, data[nw] = 0; /* all-ones / all-zeros words */
    const uint64_t *v[7];
    for (size_t u = 0; u < nu; u++) v[u] = data + u * nw;
    size_t w0 = 2, w1 = nw, nb = 64 * (w1 - w0);
    uint32_t *want = malloc(nb * 4), *got = malloc(nb * 4);
    for (size_t k = 0; k < nb; k++) {
        want[k] = (uint32_t)k; /* accumulates */
        for (size_t u = 0; u < nu; u++) want[k] += (v[u][w0 + k / 64] >> (k % 64)) & 1;
    }
    for (int var = 0; var < DS_SIMD_COUNT; var++) {
        if (!ds_simd_supported((ds_simd)var)) continue;
        ds_simd_force((ds_simd)var);
        for (size_t k = 0; k < nb; k++) got[k] = (uint32_t)k;
        ds_count_ones(nu, v, w0, w1, got);
        ck_assert_msg(memcmp(want, got, nb * 4) == 0, "%s counts differ",
                      ds_simd_name((ds_simd)var));
    }
    ds_simd_force(ds_simd_best());
    free(data), free(want), free(got);
}
END_TEST

START_TEST(test_empty)
{
    /* No rows or no columns: nothing is read or written (NULL is fine). */
    for (int var = 0; var < DS_SIMD_COUNT; var++) {
        if (!ds_simd_supported((ds_simd)var)) continue;
        ds_simd_force((ds_simd)var);
        for (int t = 0; t < 3; t++) {
            ds_bitpack_compress(dtypes[t], NULL, NULL, 0, 5, NULL, NULL, NULL);
            ds_bitpack_compress(dtypes[t], NULL, NULL, 3, 0, NULL, NULL, NULL);
            for (int kind = 0; kind < 3; kind++) {
                ds_bitpack_apply(dtypes[t], NULL, dtypes[t], NULL, NULL, 3, 0,
                                 (ds_scale_kind)kind, NULL);
                ds_bitpack_apply(dtypes[t], NULL, dtypes[t], NULL, NULL, 0, 5,
                                 (ds_scale_kind)kind, NULL);
            }
        }
        ds_bitpack_expand(NULL, NULL, 3, 0, DS_SCALE_COL, NULL);
        ck_assert_uint_eq(ds_hamming(NULL, NULL, 0), 0);
        ds_hamming_pairs(0, NULL, 0, 10, NULL);
        ds_count_ones(0, NULL, 4, 4, NULL);
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

START_TEST(test_dispatch)
{
    ds_simd v;
    ck_assert(ds_simd_supported(DS_SIMD_REF));
    ck_assert_int_eq(ds_simd_force(DS_SIMD_COUNT), -1);
    ck_assert_int_eq(ds_simd_parse("avx512", &v), 0);
    ck_assert_int_eq(v, DS_SIMD_AVX512);
    ck_assert_int_eq(ds_simd_parse("sse", &v), -1);
    ck_assert_str_eq(ds_simd_name(DS_SIMD_AVX2), "avx2");
    ck_assert_int_eq(ds_simd_force(DS_SIMD_REF), 0);
    ck_assert_int_eq(ds_simd_active(), DS_SIMD_REF);
    ds_simd_force(ds_simd_best());
    ck_assert_int_eq(ds_simd_active(), ds_simd_best());
}
END_TEST

/* --dump: per case: int32 dtype, rows, cols, scale kind; wf, wb; bits;
 * row_abs, col_abs (double); scales (float, rows/cols/1 of them); applied
 * output (same dtype as the input), all little-endian. */
static int dump(const char *path)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        return 1;
    }
    fwrite("BPK1", 1, 4, fp);
    int cases = 0;
    for (int t = 0; t < 3; t++)
        for (size_t c = 0; c < NCOLS; c++) {
            ds_kdtype dt = dtypes[t];
            int32_t rows = 3, cols = (int32_t)test_cols[c], kind = cases++ % 3;
            size_t n = (size_t)rows * cols, wpr = ds_bitpack_words((size_t)cols);
            size_t ng = kind == 0 ? 1 : kind == 1 ? (size_t)rows : (size_t)cols;
            void *wf = malloc(n * esz(dt)), *wb = malloc(n * esz(dt)), *o = malloc(n * esz(dt));
            uint64_t *bits = malloc(wpr * rows * 8);
            double *ra = malloc(rows * 8), *ca = calloc((size_t)cols, 8);
            float *g = make_scales(ng);
            make_pair(dt, n, wf, wb);
            ds_bitpack_compress(dt, wf, wb, (size_t)rows, (size_t)cols, bits, ra, ca);
            ds_bitpack_apply(dt, o, dt, wb, bits, (size_t)rows, (size_t)cols,
                             (ds_scale_kind)kind, g);
            int32_t hdr[4] = {(int32_t)dt, rows, cols, kind};
            fwrite(hdr, 4, 4, fp);
            fwrite(wf, esz(dt), n, fp);
            fwrite(wb, esz(dt), n, fp);
            fwrite(bits, 8, wpr * rows, fp);
            fwrite(ra, 8, (size_t)rows, fp);
            fwrite(ca, 8, (size_t)cols, fp);
            fwrite(g, 4, ng, fp);
            fwrite(o, esz(dt), n, fp);
            free(wf), free(wb), free(o), free(bits), free(ra), free(ca), free(g);
        }
    if (fclose(fp) != 0) {
        perror(path);
        return 1;
    }
    printf("%s: %d cases, variant %s\n", path, cases, ds_simd_name(ds_simd_active()));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--simd") == 0) {
        printf("%s\n", ds_simd_name(ds_simd_active()));
        return 0;
    }
    /* One random stream for the whole program: run in full, every case sees
     * the data it always saw (a case run alone draws other, equally random data). */
    Suite *s = suite_create("bitpack");
    TCase *convention = ds_check_case(s, "convention", 60);
    tcase_add_test(convention, test_layout_known);
    tcase_add_test(convention, test_summation_order);
    tcase_add_test(ds_check_case(s, "compress", 60), test_compress_variants);
    tcase_add_test(ds_check_case(s, "apply", 60), test_apply_variants);
    tcase_add_test(ds_check_case(s, "expand", 60), test_expand_variants);
    TCase *popcount = ds_check_case(s, "popcount", 60);
    tcase_add_test(popcount, test_hamming);
    tcase_add_test(popcount, test_count_ones);
    tcase_add_test(ds_check_case(s, "empty", 60), test_empty);
    tcase_add_test(ds_check_case(s, "dispatch", 60), test_dispatch);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int v = 0; v < DS_SIMD_COUNT; v++)
        printf("variant %s: %s\n", ds_simd_name((ds_simd)v),
               ds_simd_supported((ds_simd)v) ? "tested" : "not supported here");
    return failed ? 1 : 0;
}
