/* Unit tests of the per-tensor math of src/bitdelta.c against naive loops
 * written here: signs and scales of ds_delta_code (f32 and bf16, tensor /
 * row / column scales, odd widths), the same signs and scales from
 * ds_delta_coder in pieces of rows (compress's streaming), the index of the
 * first non-finite delta, dense deltas and their addition. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/bitdelta.h"
#include "tests/unit/check_main.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f) * 0.1f;
}

static ds_delta_entry entry(ds_dtype dt, int64_t r, int64_t c, ds_scale_kind m)
{
    ds_delta_entry e = {.t = {.name = "model.layers.0.mlp.up_proj.weight", .dtype = dt, .ndim = 2, .shape = {r, c}}};
    ds_delta_entry_code(&e, m);
    return e;
}

/* Code a random rows x cols pair and compare with the naive definition. */
static void check_code(ds_dtype dt, int64_t rows, int64_t cols, ds_scale_kind m)
{
    unsigned seed = (unsigned)(rows * 131 + cols * 7 + m + dt * 1000);
    size_t n = (size_t)(rows * cols), es = ds_dtype_size(dt);
    float *a = malloc(n * 4), *b = malloc(n * 4), *fa = malloc(n * 4), *fb = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        b[i] = frand(&seed);
        a[i] = i % 7 == 3 ? b[i] : b[i] + frand(&seed); /* some zero deltas */
    }
    void *wa = malloc(n * es), *wb = malloc(n * es);
    ds_from_f32(dt, a, wa, n);
    ds_from_f32(dt, b, wb, n);
    ds_to_f32(dt, wa, fa, n); /* the values as stored */
    ds_to_f32(dt, wb, fb, n);
    ds_delta_entry e = entry(dt, rows, cols, m);
    uint64_t *bits = malloc(sizeof(uint64_t) * (size_t)(rows * e.words_per_row));
    float *sc = malloc(sizeof(float) * (size_t)e.n_scales);
    memset(bits, 0xff, sizeof(uint64_t) * (size_t)(rows * e.words_per_row)); /* padding must be cleared */
    ck_assert_int_eq(ds_delta_code(&e, wa, wb, bits, sc), -1);
    double *sum = calloc((size_t)(rows > cols ? rows : cols) + 1, sizeof(double)), tot = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols + 64; j++) {
            if (j >= e.words_per_row * 64) break;
            int bit = (int)((bits[i * e.words_per_row + j / 64] >> (j % 64)) & 1);
            if (j >= cols) {
                ck_assert_int_eq(bit, 0);
                continue;
            }
            float d = fa[i * cols + j] - fb[i * cols + j];
            ck_assert_int_eq(bit, d >= 0);
            sum[m == DS_SCALE_COL ? j : m == DS_SCALE_ROW ? i : 0] += fabs((double)d);
            tot += fabs((double)d);
        }
    for (int64_t k = 0; k < e.n_scales; k++) {
        double want = sum[k] / (m == DS_SCALE_COL ? (double)rows : m == DS_SCALE_ROW ? (double)cols : (double)n);
        ck_assert_double_eq_tol(sc[k], want, 1e-6 * want + 1e-12);
    }
    /* in pieces of rows that need not divide them: the same bits and scales */
    size_t nw = (size_t)(rows * e.words_per_row);
    uint64_t *pbits = malloc(sizeof(uint64_t) * nw);
    float *psc = malloc(sizeof(float) * (size_t)e.n_scales);
    const int64_t pieces[] = {1, 2, 3, 5, rows};
    for (int p = 0; p < 5; p++) {
        memset(pbits, 0xff, sizeof(uint64_t) * nw);
        ds_delta_coder c;
        ds_delta_coder_begin(&c, &e);
        for (int64_t r0 = 0; r0 < rows; r0 += pieces[p]) {
            int64_t nr = rows - r0 < pieces[p] ? rows - r0 : pieces[p];
            ck_assert_int_eq(ds_delta_coder_rows(&c, (const char *)wa + (size_t)(r0 * cols) * es,
                                                 (const char *)wb + (size_t)(r0 * cols) * es, r0, nr, pbits), -1);
        }
        ds_delta_coder_end(&c, psc);
        ck_assert_int_eq(memcmp(pbits, bits, sizeof(uint64_t) * nw), 0);
        ck_assert_int_eq(memcmp(psc, sc, sizeof(float) * (size_t)e.n_scales), 0);
    }
    /* float32 values against zero (aggregate --requantize): pieces equal
     * ds_delta_code_f32 on the whole */
    uint64_t *zbits = malloc(sizeof(uint64_t) * nw);
    float *zsc = malloc(sizeof(float) * (size_t)e.n_scales);
    ck_assert_int_eq(ds_delta_code_f32(&e, fa, zbits, zsc), -1);
    for (int p = 0; p < 5; p++) {
        memset(pbits, 0xff, sizeof(uint64_t) * nw);
        ds_delta_coder c;
        ds_delta_coder_begin_f32(&c, &e);
        for (int64_t r0 = 0; r0 < rows; r0 += pieces[p]) {
            int64_t nr = rows - r0 < pieces[p] ? rows - r0 : pieces[p];
            ck_assert_int_eq(ds_delta_coder_rows(&c, fa + (size_t)(r0 * cols), NULL, r0, nr, pbits), -1);
        }
        ds_delta_coder_end(&c, psc);
        ck_assert_int_eq(memcmp(pbits, zbits, sizeof(uint64_t) * nw), 0);
        ck_assert_int_eq(memcmp(psc, zsc, sizeof(float) * (size_t)e.n_scales), 0);
    }
    free(zbits), free(zsc);
    free(pbits), free(psc);
    free(a), free(b), free(fa), free(fb), free(wa), free(wb), free(bits), free(sc), free(sum);
}

START_TEST(test_code)
{
    const int64_t shapes[][2] = {{1, 1}, {3, 65}, {17, 64}, {5, 130}, {64, 7}};
    for (int dt = 0; dt < 3; dt++)
        for (int s = 0; s < 5; s++)
            for (int m = 0; m < 3; m++)
                check_code((ds_dtype)dt, shapes[s][0], shapes[s][1], (ds_scale_kind)m);
}
END_TEST

START_TEST(test_nonfinite)
{
    float a[3 * 70], b[3 * 70];
    unsigned seed = 5;
    for (int i = 0; i < 3 * 70; i++) a[i] = b[i] = frand(&seed);
    a[150] = NAN;
    b[100] = INFINITY; /* the first one, in row 1 */
    ds_delta_entry e = entry(DS_DTYPE_F32, 3, 70, DS_SCALE_TENSOR);
    uint64_t bits[6];
    float sc[1];
    ck_assert_int_eq(ds_delta_code(&e, a, b, bits, sc), 100);
    b[100] = a[100];
    ck_assert_int_eq(ds_delta_code(&e, a, b, bits, sc), 150);
    /* finite inputs whose float32 difference overflows */
    a[150] = 3e38f;
    b[150] = -3e38f;
    ck_assert_int_eq(ds_delta_code(&e, a, b, bits, sc), 150);
    float out[3 * 70];
    ck_assert_int_eq(ds_delta_dense(DS_DTYPE_F32, a, b, 3 * 70, out), 150);
    /* in pieces of one row: the tensor's flat index, from the piece that holds it */
    ds_delta_coder c;
    ds_delta_coder_begin(&c, &e);
    ck_assert_int_eq(ds_delta_coder_rows(&c, a, b, 0, 1, bits), -1);
    ck_assert_int_eq(ds_delta_coder_rows(&c, a + 70, b + 70, 1, 1, bits), -1);
    ck_assert_int_eq(ds_delta_coder_rows(&c, a + 140, b + 140, 2, 1, bits), 150);
    ds_delta_coder_end(&c, NULL);
}
END_TEST

START_TEST(test_dense)
{
    enum { N = 10000 };
    static float a[N], b[N], d[N], w[N];
    static uint16_t ha[N], hb[N], hd[N];
    unsigned seed = 9;
    for (int i = 0; i < N; i++) {
        a[i] = frand(&seed) + 1;
        b[i] = frand(&seed) + 1;
    }
    for (ds_dtype dt = DS_DTYPE_F16; dt <= DS_DTYPE_BF16; dt++) {
        ds_from_f32(dt, a, ha, N);
        ds_from_f32(dt, b, hb, N);
        ck_assert_int_eq(ds_delta_dense(dt, ha, hb, N, hd), -1);
        ds_to_f32(dt, hd, d, N);
        for (int i = 0; i < N; i++) {
            float x, y;
            ds_to_f32(dt, &ha[i], &x, 1);
            ds_to_f32(dt, &hb[i], &y, 1);
            uint16_t r;
            float diff = x - y;
            ds_from_f32(dt, &diff, &r, 1);
            ck_assert_uint_eq(hd[i], r); /* one rounding of the float32 difference */
        }
        /* in place (out == wf) and back: base + dense delta */
        memcpy(hd, ha, sizeof ha);
        ck_assert_int_eq(ds_delta_dense(dt, hd, hb, N, hd), -1);
        memcpy(w, b, sizeof w);
        ds_delta_add_dense(DS_DTYPE_F32, w, dt, hd, N);
        for (int i = 0; i < N; i++) {
            float y, dd;
            ds_to_f32(dt, &hb[i], &y, 1);
            ds_to_f32(dt, &hd[i], &dd, 1);
            ck_assert_float_eq(w[i], b[i] + dd);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("delta_math");
    tcase_add_test(ds_check_case(s, "code", 0), test_code);
    tcase_add_test(ds_check_case(s, "nonfinite", 0), test_nonfinite);
    tcase_add_test(ds_check_case(s, "dense", 0), test_dense);
    return ds_check_run(s);
}
