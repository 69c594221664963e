/* Unit tests of src/scan.c, the anomaly report's math (docs/scan.md):
 * robust z-scores on hand-computed values (odd and even n, MAD 0), the
 * chunk sums of 1-bit and dense chunks against a naive expansion written
 * here from the definitions (values g(2b - 1), the median of the sorted
 * values, the majority of the sign bits, squared distances), and the rules
 * of ds_scan_finish. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/scan.h"
#include "tests/unit/check_main.h"

START_TEST(robust)
{
    double z[5], med, sg;
    const double a[5] = {1, 2, 3, 4, 100};
    ds_scan_robust_z(5, a, z, &med, &sg);
    ck_assert(med == 3 && sg == 1.4826);
    ck_assert(fabs(z[4] - 97 / 1.4826) < 1e-12 && fabs(z[0] + 2 / 1.4826) < 1e-12 && z[2] == 0);
    const double b[4] = {4, 1, 3, 2}; /* even n: median 2.5, |dev| 1.5 .5 .5 1.5: MAD 1 */
    ds_scan_robust_z(4, b, z, &med, &sg);
    ck_assert(med == 2.5 && sg == 1.4826);
    ck_assert(fabs(z[0] - 1.5 / 1.4826) < 1e-12);
    const double c[4] = {5, 5, 7, 5}; /* more than half equal: MAD 0 */
    ds_scan_robust_z(4, c, z, &med, &sg);
    ck_assert(med == 5 && sg == 0);
    ck_assert(z[0] == 0 && z[1] == 0 && z[3] == 0 && isinf(z[2]) && z[2] > 0);
    const double d[3] = {5, 5, 4};
    ds_scan_robust_z(3, d, z, NULL, NULL);
    ck_assert(isinf(z[2]) && z[2] < 0);
    ck_assert_uint_eq(ds_scan_default_f(3), 0);
    ck_assert_uint_eq(ds_scan_default_f(20), 8);
    ck_assert_uint_eq(ds_scan_default_f(100), 48);
}
END_TEST

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The definitions on expanded values v[u][k] (n users, m coordinates). */
static void naive(size_t n, size_t m, double *const *v, ds_scan_sums *s)
{
    double *col = malloc(sizeof(double) * n);
    for (size_t k = 0; k < m; k++) {
        for (size_t u = 0; u < n; u++) col[u] = v[u][k];
        qsort(col, n, sizeof(double), cmp);
        const double med = (double)(float)(n % 2 ? col[n / 2] : 0.5 * (col[n / 2 - 1] + col[n / 2]));
        size_t ones = 0;
        for (size_t u = 0; u < n; u++) ones += v[u][k] >= 0;
        const int maj = 2 * ones >= n;
        *s->mm += med * med;
        for (size_t u = 0; u < n; u++) {
            s->sq[u] += v[u][k] * v[u][k];
            s->dot[u] += v[u][k] * med;
            s->agree[u] += (v[u][k] >= 0) == maj;
            for (size_t w = u + 1; w < n; w++) s->d[u * n + w] += (v[u][k] - v[w][k]) * (v[u][k] - v[w][k]);
        }
    }
    *s->coords += (double)m;
    free(col);
}

static void same(const ds_scan_sums *a, const ds_scan_sums *b)
{
    const size_t n = a->n;
    for (size_t i = 0; i < 3 * n; i++)
        ck_assert_msg(fabs(a->buf[i] - b->buf[i]) <= 1e-9 * (1 + fabs(b->buf[i])), "sum %zu: %.17g vs %.17g", i, a->buf[i],
                      b->buf[i]);
    for (size_t u = 0; u < n; u++)
        for (size_t w = u + 1; w < n; w++)
            ck_assert_msg(fabs(a->d[u * n + w] - b->d[u * n + w]) <= 1e-9 * (1 + b->d[u * n + w]), "d(%zu,%zu)", u, w);
    ck_assert(fabs(*a->mm - *b->mm) <= 1e-9 * (1 + *b->mm) && *a->coords == *b->coords);
}

static uint64_t st = 12345;
static uint64_t rnd(void)
{
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return st >> 11;
}

/* Every scale mode and user count 3..6 (odd and even medians), 3 rows x 70 columns (two words a row). */
START_TEST(chunk_bits)
{
    const size_t rows = 3, cols = 70, W = ds_bitpack_words(cols), m = rows * cols;
    for (int kind = 0; kind < 3; kind++)
        for (size_t n = 3; n <= 6; n++) {
            uint64_t *bits[6];
            float *sc[6];
            double *v[6];
            const size_t ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
            for (size_t u = 0; u < n; u++) {
                bits[u] = calloc(rows * W, 8);
                sc[u] = malloc(sizeof(float) * ns);
                v[u] = malloc(sizeof(double) * m);
                /* never 0 (a zero scale's sign bit is a convention); some negative */
                for (size_t k = 0; k < ns; k++) sc[u][k] = (float)((double)(1 + rnd() % 63) / 16.0 * (k % 5 == 0 ? -1 : 1));
                for (size_t r = 0; r < rows; r++)
                    for (size_t j = 0; j < cols; j++) {
                        const int b = rnd() & 1;
                        if (b) bits[u][r * W + j / 64] |= 1ull << (j % 64);
                        const double g = sc[u][kind == DS_SCALE_TENSOR ? 0 : kind == DS_SCALE_ROW ? r : j];
                        v[u][r * cols + j] = g * (2 * b - 1);
                    }
            }
            ds_agg_bits c = {n, rows, cols, (ds_scale_kind)kind, (const uint64_t *const *)bits, (const float *const *)sc};
            ds_scan_sums got, want;
            ds_scan_sums_init(&got, n);
            ds_scan_sums_init(&want, n);
            ds_scan_work w;
            ds_scan_work_init(&w, n, m, rows * W);
            ds_scan_chunk_bits(&c, &got, &w);
            naive(n, m, v, &want);
            same(&got, &want);
            ds_scan_work_free(&w);
            ds_scan_sums_free(&got);
            ds_scan_sums_free(&want);
            for (size_t u = 0; u < n; u++) free(bits[u]), free(sc[u]), free(v[u]);
        }
}
END_TEST

START_TEST(chunk_dense)
{
    const size_t m = 50;
    for (size_t n = 3; n <= 5; n++) {
        float *x[5];
        double *v[5];
        for (size_t u = 0; u < n; u++) {
            x[u] = malloc(sizeof(float) * m);
            v[u] = malloc(sizeof(double) * m);
            for (size_t k = 0; k < m; k++) v[u][k] = x[u][k] = (float)((double)(rnd() % 33) / 8.0 - 2.0); /* zeros too */
        }
        ds_scan_sums got, want;
        ds_scan_sums_init(&got, n);
        ds_scan_sums_init(&want, n);
        ds_scan_work w;
        ds_scan_work_init(&w, n, m, 0);
        ds_scan_chunk_dense(n, (const float *const *)x, m, &got, &w);
        naive(n, m, v, &want);
        same(&got, &want);
        ds_scan_work_free(&w);
        ds_scan_sums_free(&got);
        ds_scan_sums_free(&want);
        for (size_t u = 0; u < n; u++) free(x[u]), free(v[u]);
    }
}
END_TEST

/* ds_scan_finish on sums made by hand: 7 users, user 5 opposite, user 6 ten times longer. */
START_TEST(rules)
{
    const size_t n = 7;
    ds_scan_sums s;
    ds_scan_sums_init(&s, n);
    *s.coords = 100;
    *s.mm = 1;
    for (size_t u = 0; u < n; u++) {
        s.sq[u] = u == 6 ? 100 : 1 + 0.01 * (double)u;
        s.dot[u] = (u == 5 ? -0.9 : 0.9 - 0.01 * (double)u) * sqrt(s.sq[u]);
        s.agree[u] = u == 5 ? 10 : 90 + (double)u;
        for (size_t w = u + 1; w < n; w++) s.d[u * n + w] = (u == 6 || w == 6) ? 100 : (u == 5 || w == 5) ? 4 + 0.1 * (double)u : 0.2 + 0.01 * (double)(u + w);
    }
    ds_scan_delta d[7];
    ds_scan_summary sum;
    ds_scan_finish(&s, 2, 8, d, &sum);
    ck_assert_uint_eq(sum.f, 2);
    ck_assert_uint_eq(sum.neighbours, 3);
    ck_assert(fabs(d[6].stat[DS_SCAN_NORM] - 10) < 1e-12);
    ck_assert(fabs(d[0].stat[DS_SCAN_COSINE] - 0.9) < 1e-12 && fabs(d[5].stat[DS_SCAN_COSINE] + 0.9) < 1e-12);
    ck_assert(fabs(d[5].stat[DS_SCAN_AGREEMENT] - 0.1) < 1e-12);
    for (size_t u = 0; u < 5; u++) ck_assert_msg(d[u].rules == 0, "user %zu: rules %x", u, d[u].rules);
    ck_assert(d[5].rules & 1u << DS_SCAN_COSINE_LOW && d[5].rules & 1u << DS_SCAN_AGREEMENT_LOW);
    ck_assert(d[5].rules & 1u << DS_SCAN_KRUM_HIGH && d[6].rules & 1u << DS_SCAN_KRUM_HIGH);
    ck_assert(d[6].rules & 1u << DS_SCAN_NORM_HIGH && !(d[6].rules & 1u << DS_SCAN_COSINE_LOW));
    ds_scan_sums_free(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scan");
    tcase_add_test(ds_check_case(s, "robust", 0), robust);
    TCase *tc = ds_check_case(s, "chunk", 0);
    tcase_add_test(tc, chunk_bits);
    tcase_add_test(tc, chunk_dense);
    tcase_add_test(ds_check_case(s, "rules", 0), rules);
    return ds_check_run(s);
}
