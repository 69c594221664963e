/* Unit tests of src/aggregate.c against naive references written here:
 * every value expanded to a float, sorted with the documented tie rule,
 * distances summed coordinate by coordinate; and of the coding that
 * aggregate --requantize uses (ds_delta_code_f32, src/bitdelta.h). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "src/aggregate.h"
#include "src/bitdelta.h"
#include "src/ds.h"
#include "tests/unit/check_main.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 11;
}
static double rndu(void) { return (double)(rnd() & 0xffffff) / 16777216.0; }

/* A random chunk: n users, rows x cols, scales of the given kind; a few
 * scales repeat (ties) and some are negative when neg is set. */
typedef struct {
    ds_agg_bits c;
    uint64_t **bits;
    float **scale;
} chunk;

static void chunk_make(chunk *k, size_t n, size_t rows, size_t cols, ds_scale_kind kind, int neg, double p1)
{
    const size_t W = ds_bitpack_words(cols), ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
    k->bits = malloc(sizeof(uint64_t *) * n);
    k->scale = malloc(sizeof(float *) * n);
    for (size_t u = 0; u < n; u++) {
        k->bits[u] = calloc(rows * W, sizeof(uint64_t));
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                if (rndu() < p1) k->bits[u][r * W + c / 64] |= 1ull << (c % 64);
        k->scale[u] = malloc(sizeof(float) * ns);
        for (size_t i = 0; i < ns; i++) {
            float g = (float)(0.5 + rndu());
            if (rnd() % 4 == 0) g = 1.0f; /* ties between users */
            if (neg && rnd() % 5 == 0) g = -g;
            k->scale[u][i] = g;
        }
    }
    k->c = (ds_agg_bits){n, rows, cols, kind, (const uint64_t *const *)k->bits, (const float *const *)k->scale};
}

static void chunk_free(chunk *k)
{
    for (size_t u = 0; u < k->c.n; u++) {
        free(k->bits[u]);
        free(k->scale[u]);
    }
    free(k->bits);
    free(k->scale);
}

static float value_at(const chunk *k, size_t u, size_t r, size_t col)
{
    const size_t W = ds_bitpack_words(k->c.cols);
    const float g = k->scale[u][k->c.kind == DS_SCALE_TENSOR ? 0 : k->c.kind == DS_SCALE_ROW ? r : col];
    return ((k->bits[u][r * W + col / 64] >> (col % 64)) & 1) ? g : -g;
}

/* Sort key of the value order: (b', then m and index descending for b' = 0,
 * ascending for b' = 1). */
typedef struct {
    int bp;
    float m, v;
    size_t u;
} key;
static int key_cmp(const void *pa, const void *pb)
{
    const key *a = pa, *b = pb;
    if (a->bp != b->bp) return a->bp - b->bp;
    int c = a->m != b->m ? (a->m < b->m ? -1 : 1) : (a->u < b->u ? -1 : a->u > b->u);
    return a->bp ? c : -c;
}

static void naive_trimmed(const chunk *k, size_t kk, float *out, uint64_t *kept)
{
    const size_t n = k->c.n;
    key *a = malloc(sizeof(key) * n);
    for (size_t r = 0; r < k->c.rows; r++)
        for (size_t col = 0; col < k->c.cols; col++) {
            for (size_t u = 0; u < n; u++) {
                const size_t W = ds_bitpack_words(k->c.cols);
                const float g = k->scale[u][k->c.kind == DS_SCALE_TENSOR ? 0 : k->c.kind == DS_SCALE_ROW ? r : col];
                const int b = (int)((k->bits[u][r * W + col / 64] >> (col % 64)) & 1);
                a[u] = (key){b ^ (g < 0.0f), fabsf(g), value_at(k, u, r, col), u};
            }
            qsort(a, n, sizeof(key), key_cmp);
            double s = 0;
            for (size_t i = kk; i < n - kk; i++) {
                s += a[i].v;
                kept[a[i].u]++;
            }
            out[r * k->c.cols + col] = (float)(s / (double)(n - 2 * kk));
        }
    free(a);
}

static void check_trimmed(size_t n, size_t rows, size_t cols, ds_scale_kind kind, size_t kk, int neg, double p1)
{
    chunk k;
    chunk_make(&k, n, rows, cols, kind, neg, p1);
    const size_t m = rows * cols;
    float *o1 = malloc(sizeof(float) * m), *o2 = malloc(sizeof(float) * m), *o3 = malloc(sizeof(float) * m);
    uint64_t *k1 = calloc(n, 8), *k2 = calloc(n, 8), *k3 = calloc(n, 8);
    ds_agg_trimmed_bits(&k.c, kk, o1, k1);
    ds_agg_trimmed_bits_ref(&k.c, kk, o2, k2);
    naive_trimmed(&k, kk, o3, k3);
    for (size_t i = 0; i < m; i++) {
        ck_assert_msg(fabsf(o1[i] - o3[i]) <= 1e-6f * (1.0f + fabsf(o3[i])), "n=%zu kind=%d k=%zu coord %zu: %g vs %g",
                      n, kind, kk, i, o1[i], o3[i]);
        ck_assert_msg(fabsf(o2[i] - o3[i]) <= 1e-6f * (1.0f + fabsf(o3[i])), "ref n=%zu coord %zu", n, i);
    }
    for (size_t u = 0; u < n; u++) {
        ck_assert_msg(k1[u] == k3[u], "n=%zu kind=%d k=%zu user %zu kept %llu vs %llu", n, kind, kk, u,
                      (unsigned long long)k1[u], (unsigned long long)k3[u]);
        ck_assert_uint_eq(k2[u], k3[u]);
    }
    free(o1), free(o2), free(o3), free(k1), free(k2), free(k3);
    chunk_free(&k);
}

START_TEST(test_trimmed_bits)
{
    rng_state = 1;
    const size_t ns[] = {1, 2, 3, 5, 8, 9, 31, 64, 65, 130};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        const size_t n = ns[a];
        for (int kind = 0; kind < 3; kind++) {
            const size_t ks[] = {0, n / 10, (n - 1) / 2};
            for (int b = 0; b < 3; b++) check_trimmed(n, 3, 70 + 13 * (size_t)kind, (ds_scale_kind)kind, ks[b], b == 1, 0.5);
        }
    }
    /* Nearly all bits equal: the kept ranges sit at one end. */
    check_trimmed(20, 2, 130, DS_SCALE_TENSOR, 4, 0, 0.95);
    check_trimmed(20, 2, 130, DS_SCALE_ROW, 4, 1, 0.05);
}
END_TEST

START_TEST(test_majority_bits)
{
    rng_state = 2;
    const size_t ns[] = {1, 2, 4, 7, 64, 100};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (int kind = 0; kind < 3; kind++) {
            chunk k;
            const size_t n = ns[a], rows = 4, cols = 200, W = ds_bitpack_words(cols);
            chunk_make(&k, n, rows, cols, (ds_scale_kind)kind, 1, 0.5);
            uint64_t *o1 = malloc(8 * rows * W), *o2 = malloc(8 * rows * W), *a1 = calloc(n, 8), *a2 = calloc(n, 8);
            ds_agg_majority_bits(&k.c, o1, a1);
            ds_agg_majority_bits_ref(&k.c, o2, a2);
            ck_assert_mem_eq(o1, o2, 8 * rows * W);
            ck_assert_mem_eq(a1, a2, 8 * n);
            /* Naive: sign of the sum of the votes sign(v_u), tie -> 1. */
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < cols; c++) {
                    long vote = 0;
                    for (size_t u = 0; u < n; u++) vote += value_at(&k, u, r, c) > 0 ? 1 : -1;
                    ck_assert_uint_eq((o1[r * W + c / 64] >> (c % 64)) & 1, vote >= 0);
                }
            free(o1), free(o2), free(a1), free(a2);
            chunk_free(&k);
        }
}
END_TEST

START_TEST(test_trimmed_dense)
{
    rng_state = 3;
    for (size_t n = 1; n <= 40; n += 3) {
        const size_t m = 57;
        float **x = malloc(sizeof(float *) * n), *out = malloc(sizeof(float) * m);
        for (size_t u = 0; u < n; u++) {
            x[u] = malloc(sizeof(float) * m);
            for (size_t j = 0; j < m; j++) x[u][j] = rnd() % 3 == 0 ? 0.25f : (float)(rndu() - 0.5); /* ties */
        }
        for (size_t kk = 0; 2 * kk < n; kk += 1 + n / 7) {
            uint64_t *kept = calloc(n, 8), *want = calloc(n, 8);
            ds_agg_trimmed_dense(n, (const float *const *)x, m, kk, out, kept);
            for (size_t j = 0; j < m; j++) {
                /* naive: sort (value, index), keep ranks [k, n - k), sum in user order */
                size_t *o = malloc(sizeof(size_t) * n);
                for (size_t u = 0; u < n; u++) o[u] = u;
                for (size_t i = 1; i < n; i++)
                    for (size_t q = i; q > 0 && (x[o[q]][j] < x[o[q - 1]][j] || (x[o[q]][j] == x[o[q - 1]][j] && o[q] < o[q - 1])); q--) {
                        size_t t = o[q]; o[q] = o[q - 1]; o[q - 1] = t;
                    }
                unsigned char *keep = calloc(n, 1);
                for (size_t i = kk; i < n - kk; i++) keep[o[i]] = 1;
                double s = 0;
                for (size_t u = 0; u < n; u++)
                    if (keep[u]) s += x[u][j], want[u]++;
                ck_assert_float_eq(out[j], (float)(s / (double)(n - 2 * kk)));
                free(o), free(keep);
            }
            ck_assert_mem_eq(kept, want, 8 * n);
            free(kept), free(want);
        }
        for (size_t u = 0; u < n; u++) free(x[u]);
        free(x), free(out);
    }
}
END_TEST

START_TEST(test_dist_bits)
{
    rng_state = 4;
    for (int kind = 0; kind < 3; kind++) {
        chunk k;
        const size_t n = 9, rows = 5, cols = 150;
        chunk_make(&k, n, rows, cols, (ds_scale_kind)kind, 1, 0.5);
        double *d = calloc(n * n, sizeof(double)), *dp = calloc(n * n, sizeof(double));
        ds_agg_dist_bits(&k.c, 0, 1, d);
        /* Split over 4 "ranks": every pair comes out bit-identical. */
        for (size_t part = 0; part < 4; part++) ds_agg_dist_bits(&k.c, part, 4, dp);
        ck_assert_mem_eq(d, dp, sizeof(double) * n * n);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                double s = 0;
                for (size_t r = 0; r < rows; r++)
                    for (size_t c = 0; c < cols; c++) {
                        double t = (double)value_at(&k, i, r, c) - (double)value_at(&k, j, r, c);
                        s += t * t;
                    }
                ck_assert_msg(fabs(d[i * n + j] - s) <= 1e-9 * (1 + s), "kind %d pair %zu,%zu: %.17g vs %.17g", kind, i, j,
                              d[i * n + j], s);
            }
        free(d), free(dp);
        chunk_free(&k);
    }
}
END_TEST

START_TEST(test_dist_dense)
{
    rng_state = 5;
    const size_t n = 7, m = 700;
    float **x = malloc(sizeof(float *) * n);
    for (size_t u = 0; u < n; u++) {
        x[u] = malloc(sizeof(float) * m);
        for (size_t j = 0; j < m; j++) x[u][j] = (float)(rndu() - 0.5);
    }
    memcpy(x[3], x[1], sizeof(float) * m); /* identical users: distance 0 */
    double *d = calloc(n * n, sizeof(double));
    ds_agg_dist_dense(n, (const float *const *)x, m, 0, 1, d);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < m; t++) s += ((double)x[i][t] - x[j][t]) * ((double)x[i][t] - x[j][t]);
            ck_assert_msg(fabs(d[i * n + j] - s) <= 1e-9 * (1 + s), "pair %zu,%zu", i, j);
        }
    ck_assert(d[1 * n + 3] < 1e-9);
    for (size_t u = 0; u < n; u++) free(x[u]);
    free(x), free(d);
}
END_TEST

START_TEST(test_krum)
{
    /* 5 users on a line at 0, 1, 2, 3 and 100: with f = 1 each score sums
     * the n - f - 2 = 2 smallest squared distances. */
    const size_t n = 5;
    const double pos[5] = {0, 1, 2, 3, 100};
    double d[25] = {0}, score[5];
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) d[i * n + j] = (pos[i] - pos[j]) * (pos[i] - pos[j]);
    ds_agg_krum_scores(n, d, 1, score);
    const double want[5] = {1 + 4, 1 + 1, 1 + 1, 1 + 4, 97 * 97 + 98 * 98};
    for (size_t u = 0; u < n; u++) ck_assert_double_eq(score[u], want[u]);
    unsigned char sel[5];
    ds_agg_krum_select(n, score, 1, sel);
    ck_assert(sel[1] && !sel[0] && !sel[2] && !sel[3] && !sel[4]); /* tie 1 vs 2: lower index */
    ds_agg_krum_select(n, score, 4, sel);
    ck_assert(sel[0] && sel[1] && sel[2] && sel[3] && !sel[4]);
    size_t i, j;
    ds_agg_pair_index(5, 0, &i, &j);
    ck_assert(i == 0 && j == 1);
    ds_agg_pair_index(5, 4, &i, &j);
    ck_assert(i == 1 && j == 2);
    ds_agg_pair_index(5, 9, &i, &j);
    ck_assert(i == 3 && j == 4);
}
END_TEST

START_TEST(test_majority_scales)
{
    /* 5 users, 3 scale positions: the trimmed mean (k = 1) of |g| */
    const float g[5][3] = {{1, -2, 3}, {-4, 5, 6}, {2, 2, -9}, {3, -1, 1}, {100, 4, 2}};
    const float *p[5] = {g[0], g[1], g[2], g[3], g[4]};
    float out[3];
    ds_agg_majority_scales(5, p, 3, 1, out);
    ck_assert_float_eq(out[0], (2.0f + 3.0f + 4.0f) / 3.0f);
    ck_assert_float_eq(out[1], (2.0f + 2.0f + 4.0f) / 3.0f);
    ck_assert_float_eq(out[2], (2.0f + 3.0f + 6.0f) / 3.0f);
    ds_agg_majority_scales(5, p, 3, 0, out);
    ck_assert_float_eq(out[2], (float)((3.0 + 6.0 + 9.0 + 1.0 + 2.0) / 5.0));
}
END_TEST

START_TEST(test_requantize_code)
{
    /* --requantize codes a float32 result against zero (ds_delta_code_f32,
     * one row at a time): the same bits and scales as ds_delta_code with a
     * whole zero base, for each scale kind */
    const int64_t rows = 37, cols = 150;
    float *x = malloc(sizeof(float) * (size_t)(rows * cols)), *zero = calloc((size_t)(rows * cols), sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) x[i] = (float)(rndu() - 0.5) * (i % 7 == 0 ? 100.0f : 1.0f);
    x[5] = 0.0f;
    for (int m = 0; m < 3; m++) {
        ds_delta_entry e = {.t = {.name = "w", .dtype = DS_DTYPE_BF16, .ndim = 2, .shape = {rows, cols}}};
        ds_delta_entry_code(&e, (ds_scale_kind)m);
        ds_delta_entry e32 = e;
        e32.t.dtype = DS_DTYPE_F32;
        const size_t nw = (size_t)(rows * e.words_per_row);
        uint64_t *b1 = malloc(8 * nw), *b2 = malloc(8 * nw);
        float *s1 = malloc(sizeof(float) * (size_t)e.n_scales), *s2 = malloc(sizeof(float) * (size_t)e.n_scales);
        ck_assert_int_eq(ds_delta_code_f32(&e, x, b1, s1), -1);
        ck_assert_int_eq(ds_delta_code(&e32, x, zero, b2, s2), -1);
        ck_assert_mem_eq(b1, b2, 8 * nw);
        ck_assert_mem_eq(s1, s2, sizeof(float) * (size_t)e.n_scales);
        x[3 * cols + 7] = INFINITY;
        ck_assert_int_eq(ds_delta_code_f32(&e, x, b1, s1), 3 * cols + 7);
        x[3 * cols + 7] = 1.0f;
        free(b1), free(b2), free(s1), free(s2);
    }
    free(x), free(zero);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("aggregate");
    TCase *trimmed = ds_check_case(s, "trimmed", 60);
    tcase_add_test(trimmed, test_trimmed_bits);
    tcase_add_test(trimmed, test_trimmed_dense);
    TCase *majority = ds_check_case(s, "majority", 60);
    tcase_add_test(majority, test_majority_bits);
    tcase_add_test(majority, test_majority_scales);
    tcase_add_test(ds_check_case(s, "requantize", 60), test_requantize_code);
    TCase *distance = ds_check_case(s, "distance", 60);
    tcase_add_test(distance, test_dist_bits);
    tcase_add_test(distance, test_dist_dense);
    tcase_add_test(ds_check_case(s, "krum", 60), test_krum);
    return ds_check_run(s);
}
