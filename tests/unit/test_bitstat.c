/* Tests of the bit-level trimmed mean and median (kernels/cpu/bitstat.h and
 * the fast path of ds_agg_trimmed_bits, src/aggregate.c):
 * - each kernel variant this CPU runs against its _ref twin bit for bit
 *   (transpose also against a per-bit definition written here);
 * - ds_agg_trimmed_bits against the float path: every 1-bit value expanded
 *   to a float32 (+|g| or -|g|) and reduced by ds_agg_trimmed_dense (the
 *   dense twin: selection, sums in double) -- bit for bit, with ties
 *   (repeated scales), all-equal scales, negative scales, n = 1..130 odd and
 *   even, the median, the trimmed mean (trim 0.1 and others) and the mean;
 *   and against ds_agg_trimmed_bits_ref bit for bit, kept counts included,
 *   also for scales spanning 60 binades (where sums in another order would
 *   round differently) and 20-27 binades (where they start to);
 * - the nibble-table sums (tab16, tabsum) and the counts by position
 *   (ds_poscount) against sums and counts written here. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/bitstat.h"
#include "kernels/cpu/dispatch.h"
#include "src/aggregate.h"
#include "tests/unit/check_main.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 11;
}
static uint64_t rnd64(void) { return rnd() << 32 ^ rnd(); }
static double rndu(void) { return (double)(rnd() & 0xffffff) / 16777216.0; }

/* Every variant this CPU runs, then the best again for the rest. */
#define FOR_VARIANTS(v) for (int v = 0; v < DS_SIMD_COUNT; v++) if (ds_simd_force((ds_simd)v) == 0)

START_TEST(test_transpose)
{
    rng_state = 11;
    for (int t = 0; t < 50; t++) {
        uint64_t a[64], want[64] = {0};
        for (int i = 0; i < 64; i++) a[i] = t == 0 ? 1ull << i : t == 1 ? ~0ull << i : rnd64();
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++) want[j] |= ((a[i] >> j) & 1u) << i;
        FOR_VARIANTS(v) {
            uint64_t b[64];
            memcpy(b, a, sizeof b);
            ds_bit_transpose64(b);
            ck_assert_msg(memcmp(b, want, sizeof b) == 0, "variant %s matrix %d", ds_simd_name((ds_simd)v), t);
        }
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

START_TEST(test_keep_accum)
{
    rng_state = 12;
    for (size_t n = 1; n <= 130; n++) {
        const size_t nw = (n + 63) / 64, ncoord = 1 + rnd() % 64;
        uint64_t *T = calloc(64 * nw, 8), *K0 = calloc(64 * nw, 8), *K1 = calloc(64 * nw, 8);
        double *m = calloc(n, sizeof(double));
        uint64_t *pos = calloc(n, 8), *neg = calloc(n, 8);
        const double p = rndu();
        for (size_t i = 0; i < 64 * nw; i++)
            for (int b = 0; b < 64; b++) T[i] |= (uint64_t)(rndu() < p) << b;
        for (size_t q = 0; q < n; q++) {
            m[q] = ldexp(0.5 + rndu(), (int)(rnd() % 61) - 30);
            pos[q] = rnd64();
            neg[q] = rnd64() & ~pos[q];
        }
        const size_t k = rnd() % ((n + 1) / 2), lo = k, hi = n - 1 - k;
        ds_bitstat_keep_ref(n, T, ncoord, lo, hi, K0);
        for (size_t c = 0; c < ncoord; c++) { /* hi - lo + 1 kept per coordinate */
            size_t kept = 0;
            for (size_t j = 0; j < nw; j++) kept += (size_t)__builtin_popcountll(K0[64 * j + c]);
            ck_assert_uint_eq(kept, hi - lo + 1);
        }
        double a0[64], a1[64];
        for (int c = 0; c < 64; c++) a0[c] = (double)c;
        ds_bitstat_accum_ref(n, m, pos, neg, a0);
        FOR_VARIANTS(v) {
            memset(K1, 0, 64 * nw * 8);
            ds_bitstat_keep(n, T, ncoord, lo, hi, K1);
            for (size_t j = 0; j < nw; j++)
                ck_assert_msg(memcmp(K0 + 64 * j, K1 + 64 * j, ncoord * 8) == 0, "keep %s n=%zu", ds_simd_name((ds_simd)v), n);
            for (int c = 0; c < 64; c++) a1[c] = (double)c;
            ds_bitstat_accum(n, m, pos, neg, a1);
            ck_assert_msg(memcmp(a0, a1, sizeof a0) == 0, "accum %s n=%zu", ds_simd_name((ds_simd)v), n);
        }
        free(T), free(K0), free(K1), free(m), free(pos), free(neg);
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* The nibble tables against sums written here: magnitudes that are
 * multiples of 2^-20 below 2^12 (every signed sum exact), random kept and set
 * masks, every variant; ncoord 1..64, n 1..64 (tab16 ignores m beyond n). */
START_TEST(test_tabsum)
{
    rng_state = 15;
    for (int t = 0; t < 300; t++) {
        const size_t n = 1 + rnd() % 64, ncoord = 1 + rnd() % 64;
        double m[64], tab[256];
        for (size_t q = 0; q < 64; q++) m[q] = q < n ? ldexp((double)(rnd() & 0xffffffff), -20) : 1e300;
        uint64_t T[64], K[64];
        const uint64_t v = n == 64 ? ~0ull : (1ull << n) - 1;
        for (size_t c = 0; c < 64; c++) T[c] = rnd64(), K[c] = rnd64() & v;
        const double div = (double)(1 + rnd() % 64);
        float want[64];
        for (size_t c = 0; c < ncoord; c++) {
            double sum = 0.0;
            for (size_t q = 0; q < n; q++)
                if (K[c] >> q & 1) sum += T[c] >> q & 1 ? m[q] : -m[q];
            want[c] = (float)(sum / div);
        }
        ds_bitstat_tab16(n, m, tab);
        FOR_VARIANTS(x) {
            float out[65];
            out[ncoord] = 123.0f;
            ds_bitstat_tabsum(ncoord, tab, T, K, div, out);
            ck_assert_msg(memcmp(out, want, 4 * ncoord) == 0, "tabsum %s n=%zu ncoord=%zu", ds_simd_name((ds_simd)x), n,
                          ncoord);
            ck_assert_msg(out[ncoord] == 123.0f, "tabsum %s wrote past ncoord", ds_simd_name((ds_simd)x));
        }
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* Counts by position against a count written here: random words of
 * densities 0..1 (all set: the counters' largest value, 8 per lane per add),
 * 1..DS_POSCOUNT_ADDS adds between flushes, every variant. */
START_TEST(test_poscount)
{
    rng_state = 17;
    for (int t = 0; t < 60; t++) {
        const int adds = 1 + (int)(rnd() % DS_POSCOUNT_ADDS);
        const double p = t % 3 == 0 ? 1.0 : rndu();
        uint64_t (*K)[64] = malloc(sizeof(uint64_t[64]) * (size_t)adds), want[64] = {0};
        for (int a = 0; a < adds; a++)
            for (int c = 0; c < 64; c++) {
                K[a][c] = 0;
                for (int q = 0; q < 64; q++)
                    if (rndu() < p) K[a][c] |= 1ull << q, want[q]++;
            }
        FOR_VARIANTS(x) {
            ds_poscount pc;
            memset(&pc, 0, sizeof pc);
            uint64_t got[64];
            for (int q = 0; q < 64; q++) got[q] = 1000; /* flush adds */
            for (int a = 0; a < adds; a++) ds_poscount_add(&pc, K[a]);
            ds_poscount_flush(&pc, got);
            for (int q = 0; q < 64; q++)
                ck_assert_msg(got[q] == want[q] + 1000, "poscount %s adds=%d position %d: %llu, want %llu",
                              ds_simd_name((ds_simd)x), adds, q, (unsigned long long)got[q] - 1000,
                              (unsigned long long)want[q]);
            ck_assert_int_eq(pc.adds, 0);
        }
        free(K);
    }
    ds_simd_force(ds_simd_best());
}
END_TEST

/* n users' random bits (probability p1 of a 1) and scales of the kind:
 * mode 0: 0.5..1.5 with ties (a quarter are 1.0), some negative; mode 1:
 * all equal (one value, some negative); mode 2: magnitudes over 60 binades;
 * mode 3: over 20-27 binades, about where the signed sums of 64 of them stop
 * being exact in double (the fast path's nibble tables need them exact);
 * mode 4: all but 6 users at 8, those 6 at 2^60 (cancelling sums that round
 * differently in another order: the tables must not be used). */
typedef struct {
    ds_agg_bits c;
    uint64_t **bits;
    float **scale;
} chunk;

static void chunk_make(chunk *k, size_t n, size_t rows, size_t cols, ds_scale_kind kind, int mode, double p1)
{
    const size_t W = ds_bitpack_words(cols), ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
    const float same = (float)(0.25 + rndu());
    k->bits = malloc(sizeof(uint64_t *) * n);
    k->scale = malloc(sizeof(float *) * n);
    for (size_t u = 0; u < n; u++) {
        k->bits[u] = calloc(rows * W, sizeof(uint64_t));
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                if (rndu() < p1) k->bits[u][r * W + c / 64] |= 1ull << (c % 64);
        k->scale[u] = malloc(sizeof(float) * ns);
        for (size_t i = 0; i < ns; i++) {
            float g = mode == 1   ? same
                      : mode == 2 ? (float)ldexp(0.5 + rndu(), (int)(rnd() % 61) - 30)
                      : mode == 3 ? (float)ldexp(0.5 + rndu(), (int)(rnd() % (20 + n % 8)) - 10)
                      : mode == 4 ? (u + 6 < n ? 8.0f : 0x1p60f)
                                  : (float)(0.5 + rndu());
            if (mode == 0 && rnd() % 4 == 0) g = 1.0f;
            if (rnd() % 5 == 0) g = -g;
            k->scale[u][i] = g;
        }
    }
    k->c = (ds_agg_bits){n, rows, cols, kind, (const uint64_t *const *)k->bits, (const float *const *)k->scale};
}

static void chunk_free(chunk *k)
{
    for (size_t u = 0; u < k->c.n; u++) free(k->bits[u]), free(k->scale[u]);
    free(k->bits), free(k->scale);
}

/* The float path: user u's values expanded, reduced by ds_agg_trimmed_dense. */
static void float_path(const chunk *k, size_t kk, float *out)
{
    const ds_agg_bits *c = &k->c;
    const size_t n = c->n, m = c->rows * c->cols, W = ds_bitpack_words(c->cols);
    float **x = malloc(sizeof(float *) * n);
    for (size_t u = 0; u < n; u++) {
        x[u] = malloc(sizeof(float) * m);
        for (size_t r = 0; r < c->rows; r++)
            for (size_t col = 0; col < c->cols; col++) {
                const float g = c->scale[u][c->kind == DS_SCALE_ROW ? r : c->kind == DS_SCALE_COL ? col : 0];
                const unsigned b = (unsigned)(c->bits[u][r * W + col / 64] >> (col % 64)) & 1u;
                x[u][r * c->cols + col] = b ? g : -g;
            }
    }
    ds_agg_trimmed_dense(n, (const float *const *)x, m, kk, out, NULL);
    for (size_t u = 0; u < n; u++) free(x[u]);
    free(x);
}

static void check_one(size_t n, size_t rows, size_t cols, ds_scale_kind kind, int mode, double p1, size_t kk)
{
    chunk k;
    chunk_make(&k, n, rows, cols, kind, mode, p1);
    const size_t m = rows * cols;
    float *o0 = malloc(4 * m), *o1 = malloc(4 * m), *o2 = malloc(4 * m);
    uint64_t *k0 = calloc(n, 8), *k1 = calloc(n, 8);
    ds_agg_trimmed_bits_ref(&k.c, kk, o0, k0);
    if (mode < 2) { /* exact double sums: every order gives the same float */
        float_path(&k, kk, o2);
        ck_assert_msg(memcmp(o0, o2, 4 * m) == 0, "ref vs float path n=%zu kind=%d mode=%d k=%zu", n, kind, mode, kk);
    }
    FOR_VARIANTS(v) {
        memset(k1, 0, 8 * n);
        ds_agg_trimmed_bits(&k.c, kk, o1, k1);
        for (size_t i = 0; i < m; i++)
            ck_assert_msg(memcmp(&o0[i], &o1[i], 4) == 0, "%s n=%zu kind=%d mode=%d k=%zu coord %zu: %a vs ref %a",
                          ds_simd_name((ds_simd)v), n, kind, mode, kk, i, (double)o1[i], (double)o0[i]);
        ck_assert_msg(memcmp(k0, k1, 8 * n) == 0, "%s kept counts n=%zu kind=%d k=%zu", ds_simd_name((ds_simd)v), n,
                      kind, kk);
    }
    ds_simd_force(ds_simd_best());
    free(o0), free(o1), free(o2), free(k0), free(k1);
    chunk_free(&k);
}

/* n = 1..130: the median, trim 0.1 and a random k; tensor and row scales
 * (column scales take the _ref path); the three scale modes. */
START_TEST(test_trimmed_vs_float)
{
    rng_state = 13;
    for (size_t n = 1; n <= 130; n++) {
        const size_t ks[] = {(n - 1) / 2, n / 10, rnd() % ((n + 1) / 2)};
        for (int b = 0; b < 3; b++) {
            const ds_scale_kind kind = (n + (size_t)b) % 2 ? DS_SCALE_TENSOR : DS_SCALE_ROW;
            const size_t cols = n % 3 == 0 ? 64 : 1 + rnd() % 150;
            check_one(n, 2, cols, kind, (int)((n + (size_t)b) % 3), 0.5, ks[b]);
        }
    }
}
END_TEST

/* Edge cases: k = 0 (the mean), nearly all bits equal (the kept range at one
 * end), column scales, one coordinate. */
START_TEST(test_trimmed_edges)
{
    rng_state = 14;
    const size_t ns[] = {1, 2, 63, 64, 65, 127, 128, 129, 130};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        const size_t n = ns[a];
        check_one(n, 3, 70, DS_SCALE_TENSOR, 0, 0.5, 0);
        check_one(n, 2, 130, DS_SCALE_TENSOR, 1, 0.97, n / 10);
        check_one(n, 2, 130, DS_SCALE_ROW, 0, 0.03, (n - 1) / 2);
        check_one(n, 2, 65, DS_SCALE_COL, 1, 0.5, (n - 1) / 2);
        check_one(n, 1, 1, DS_SCALE_ROW, 2, 0.5, n / 4);
    }
}
END_TEST

/* The trimmed mean of up to 64 users with magnitudes about where their sums
 * stop being exact (mode 3): the nibble tables where they are, the masked
 * adds where not, either way the _ref twin's results bit for bit. */
START_TEST(test_trimmed_exact_edge)
{
    rng_state = 16;
    for (int t = 0; t < 40; t++) {
        const size_t n = 40 + rnd() % 25;
        check_one(n, 3, 64 + rnd() % 130, t % 2 ? DS_SCALE_ROW : DS_SCALE_TENSOR, 3, 0.5, n / 10);
        check_one(20 + (size_t)t, 2, 200, t % 2 ? DS_SCALE_ROW : DS_SCALE_TENSOR, 4, 0.5, 1);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bitstat");
    TCase *kern = ds_check_case(s, "kernels", 60);
    tcase_add_test(kern, test_transpose);
    tcase_add_test(kern, test_keep_accum);
    tcase_add_test(kern, test_tabsum);
    tcase_add_test(kern, test_poscount);
    TCase *trim = ds_check_case(s, "trimmed", 120);
    tcase_add_test(trim, test_trimmed_vs_float);
    tcase_add_test(trim, test_trimmed_edges);
    tcase_add_test(trim, test_trimmed_exact_edge);
    return ds_check_run(s);
}
