/* Unit tests of the scale-fitting step (src/fitscales.c) against naive
 * loops and closed forms, and of resumable job state (src/checkpoint.c).
 * The gradient's independent reference is tests/python/fitscales_ref.py. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "src/checkpoint.h"
#include "src/fitscales.h"
#include "tests/unit/check_main.h"

static const ds_config small = {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                .vocab_size = 23, .max_seq_len = 12, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                                .tied_embeddings = 1};

static int bit_of(const uint64_t *bits, int64_t cols, int64_t r, int64_t j)
{
    return (int)((bits[r * (int64_t)ds_bitpack_words((size_t)cols) + j / 64] >> (j % 64)) & 1);
}

static void random_bits(ds_rng *r, uint64_t *bits, int64_t rows, int64_t cols)
{
    const int64_t wpr = (int64_t)ds_bitpack_words((size_t)cols);
    for (int64_t i = 0; i < rows * wpr; i++) bits[i] = ds_rng_u64(r);
    for (int64_t i = 0; i < rows; i++) /* padding bits are 0 (kernels/cpu/bitpack.h) */
        if (cols % 64) bits[i * wpr + wpr - 1] &= (1ull << (cols % 64)) - 1;
}

START_TEST(test_reduce_matches_naive)
{
    const int64_t shapes[][2] = {{5, 1}, {3, 63}, {4, 64}, {7, 65}, {2, 130}, {1, 200}};
    ds_rng r = {42};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *dw = malloc(sizeof(float) * (size_t)(rows * cols));
        uint64_t *bits = malloc(sizeof(uint64_t) * (size_t)rows * ds_bitpack_words((size_t)cols));
        for (int64_t i = 0; i < rows * cols; i++) dw[i] = (float)(ds_rng_uniform(&r) * 2 - 1);
        random_bits(&r, bits, rows, cols);
        for (int kind = DS_SCALE_TENSOR; kind <= DS_SCALE_COL; kind++) {
            const int64_t ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
            double *got = calloc((size_t)ns, sizeof(double)), *want = calloc((size_t)ns, sizeof(double));
            got[0] = want[0] = 0.25; /* reduce adds */
            ds_fitscales_reduce(dw, bits, rows, cols, (ds_scale_kind)kind, got);
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < cols; j++) {
                    const double v = bit_of(bits, cols, i, j) ? dw[i * cols + j] : -dw[i * cols + j];
                    want[kind == DS_SCALE_TENSOR ? 0 : kind == DS_SCALE_ROW ? i : j] += v;
                }
            for (int64_t k = 0; k < ns; k++) ck_assert_double_eq_tol(got[k], want[k], 1e-12 * (double)(rows * cols));
            free(got);
            free(want);
        }
        free(dw);
        free(bits);
    }
}
END_TEST

/* A small model with two coded tensors: q_proj of layer 0 (per-row scales)
 * and down_proj of layer 1 (per-column scales, 40 columns). */
typedef struct {
    ds_llama m;
    uint64_t *bits[2];
    float *sc[2];
    float *base[2];
    ds_fit_coded c[2];
} fixture;

static void fixture_init(fixture *x, ds_scale_kind k0, ds_scale_kind k1)
{
    ck_assert_int_eq(ds_llama_init(&x->m, &small), 0);
    ds_llama_randomize(&x->m, 7, 0.3f);
    ds_rng r = {9};
    const int idx[2] = {ds_llama_index(0, DS_LLAMA_Q), ds_llama_index(1, DS_LLAMA_DOWN)};
    const ds_scale_kind kinds[2] = {k0, k1};
    for (int k = 0; k < 2; k++) {
        const ds_tinfo *t = &x->m.tinfo[idx[k]];
        const int64_t rows = t->shape[0], cols = t->shape[1];
        const int64_t ns = kinds[k] == DS_SCALE_TENSOR ? 1 : kinds[k] == DS_SCALE_ROW ? rows : cols;
        x->bits[k] = malloc(sizeof(uint64_t) * (size_t)rows * ds_bitpack_words((size_t)cols));
        random_bits(&r, x->bits[k], rows, cols);
        x->sc[k] = malloc(sizeof(float) * (size_t)ns);
        for (int64_t i = 0; i < ns; i++) x->sc[k][i] = (float)(0.02 + 0.03 * ds_rng_uniform(&r));
        x->base[k] = malloc(sizeof(float) * (size_t)(rows * cols));
        memcpy(x->base[k], x->m.w[idx[k]], sizeof(float) * (size_t)(rows * cols));
        x->c[k] = (ds_fit_coded){idx[k], kinds[k], x->bits[k], x->sc[k]};
    }
}

static void fixture_free(fixture *x)
{
    for (int k = 0; k < 2; k++) {
        free(x->bits[k]);
        free(x->sc[k]);
        free(x->base[k]);
    }
    ds_llama_free(&x->m);
}

/* The student's coded tensors equal W_b + g(2b - 1), computed naively. */
static void check_rebuilt(const fixture *x, const ds_fitscales *f)
{
    for (int k = 0; k < 2; k++) {
        const ds_fit_tensor *t = &f->t[k];
        const float *w = x->m.w[t->index];
        for (int64_t i = 0; i < t->rows; i++)
            for (int64_t j = 0; j < t->cols; j++) {
                const float g = f->scales[t->off + (t->kind == DS_SCALE_TENSOR ? 0 : t->kind == DS_SCALE_ROW ? i : j)];
                const float want = x->base[k][i * t->cols + j] + (bit_of(t->bits, t->cols, i, j) ? g : -g);
                ck_assert_float_eq(w[i * t->cols + j], want);
            }
    }
}

/* A base whose coded tensors are bf16 values (a bf16 checkpoint's, widened
 * to f32): ds_fitscales_init keeps W_b in bf16 (half the memory) and the
 * rebuilt tensors are the same W_b + g(2b - 1) in f32, after init and after
 * an Adam step; an f32 base stays f32. */
START_TEST(test_bf16_base)
{
    for (int round = 0; round < 2; round++) {
        fixture x;
        fixture_init(&x, DS_SCALE_TENSOR, DS_SCALE_ROW);
        for (int k = 0; round && k < 2; k++) {
            float *w = x.m.w[x.c[k].index];
            for (int64_t i = 0; i < ds_tinfo_numel(&x.m.tinfo[x.c[k].index]); i++) {
                uint32_t u;
                memcpy(&u, &w[i], sizeof u);
                u &= 0xffff0000u; /* a bf16 value */
                memcpy(&w[i], &u, sizeof u);
                x.base[k][i] = w[i];
            }
        }
        ds_fitscales f;
        ds_fitscales_init(&f, &x.m, 2, x.c, DS_FIT_KL, 1e-3);
        for (int k = 0; k < 2; k++) ck_assert_int_eq(f.t[k].base_dt, round ? DS_KDT_BF16 : DS_KDT_F32);
        check_rebuilt(&x, &f);
        for (int64_t i = 0; i < f.n_scales; i++) f.grad[i] = sin(i + 1.0) * 1e-2;
        ds_fitscales_adam_step(&f);
        check_rebuilt(&x, &f);
        ds_fitscales_free(&f);
        fixture_free(&x);
    }
}
END_TEST

/* A student that holds its matrices in bf16 (coded tensors in place, their
 * products built from the bits: ds_llama_set_code) against the f32 student
 * of the same bf16 values (rebuilt W): the same forward, objective and
 * scale gradients to the rounding of the panel sums, after init and after
 * an Adam step; the bf16 tensors are not written. */
START_TEST(test_coded_student)
{
    fixture x;
    fixture_init(&x, DS_SCALE_ROW, DS_SCALE_COL);
    for (int i = 1; i < x.m.n_tensors; i++) /* bf16 values everywhere */
        for (int64_t j = 0; j < ds_tinfo_numel(&x.m.tinfo[i]); j++) {
            uint32_t u;
            memcpy(&u, &x.m.w[i][j], sizeof u);
            u &= 0xffff0000u;
            memcpy(&x.m.w[i][j], &u, sizeof u);
        }
    ds_dtype dt[64];
    ck_assert_int_le(x.m.n_tensors, 64);
    for (int i = 0; i < x.m.n_tensors; i++) dt[i] = DS_DTYPE_BF16;
    dt[0] = DS_DTYPE_F32; /* the embeddings (tied: also the head) stay f32 */
    ds_llama h;
    ck_assert_int_eq(ds_llama_init_dtypes(&h, &small, dt), 0);
    ds_llama_copy(&h, &x.m); /* exact: bf16 values */
    const int q = x.c[0].index;
    uint16_t *q0 = malloc(ds_tinfo_bytes(&h.tinfo[q]));
    memcpy(q0, h.p[q], ds_tinfo_bytes(&h.tinfo[q]));
    ds_fitscales f32, f16;
    ds_fitscales_init(&f32, &x.m, 2, x.c, DS_FIT_KL, 1e-2);
    ds_fitscales_init(&f16, &h, 2, x.c, DS_FIT_KL, 1e-2);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(f32.t[k].coded, 0);
        ck_assert_int_eq(f16.t[k].coded, 1);
        ck_assert_ptr_null(f16.t[k].base); /* no copy of W_b */
    }
    const int B = 2, T = 9, V = small.vocab_size;
    int toks[18];
    for (int i = 0; i < B * T; i++) toks[i] = (i * 7 + 2) % V;
    float *ref = malloc(sizeof(float) * (size_t)(B * T * V));
    for (int i = 0; i < B * T * V; i++) ref[i] = (float)sin(0.37 * i);
    ds_llama_act *a32 = ds_llama_act_new(&x.m, B, T), *a16 = ds_llama_act_new(&h, B, T);
    for (int step = 0; step < 2; step++) {
        ds_fitscales_zero_grad(&f32);
        ds_fitscales_zero_grad(&f16);
        const double l32 = ds_fitscales_accumulate(&f32, a32, toks, B, T, ref, 1.0f / (B * T));
        const double l16 = ds_fitscales_accumulate(&f16, a16, toks, B, T, ref, 1.0f / (B * T));
        ck_assert_double_eq_tol(l16, l32, 1e-5 * fabs(l32));
        double gmax = 0;
        for (int64_t i = 0; i < f32.n_scales; i++) gmax = fmax(gmax, fabs(f32.grad[i]));
        ck_assert_double_gt(gmax, 0);
        for (int64_t i = 0; i < f32.n_scales; i++) ck_assert_double_eq_tol(f16.grad[i], f32.grad[i], 1e-4 * gmax);
        /* the same step on both (Adam's first steps are about lr * sign(g):
         * a gradient near 0 could step either way), so that the next
         * forward has equal scales, read by the products at each call */
        memcpy(f16.grad, f32.grad, sizeof(double) * (size_t)f32.n_scales);
        ds_fitscales_adam_step(&f32);
        ds_fitscales_adam_step(&f16);
        ck_assert_mem_eq(f16.scales, f32.scales, sizeof(float) * (size_t)f32.n_scales);
    }
    ck_assert_mem_eq(h.p[q], q0, ds_tinfo_bytes(&h.tinfo[q]));
    ds_fitscales_free(&f16);
    ck_assert_ptr_null(h.code[q]); /* plain again */
    ds_fitscales_free(&f32);
    ds_llama_act_free(a32);
    ds_llama_act_free(a16);
    free(ref);
    free(q0);
    ds_llama_free(&h);
    fixture_free(&x);
}
END_TEST

START_TEST(test_init_rebuild_adam)
{
    fixture x;
    fixture_init(&x, DS_SCALE_ROW, DS_SCALE_COL);
    ds_fitscales f;
    const double lr = 1e-3;
    ds_fitscales_init(&f, &x.m, 2, x.c, DS_FIT_KL, lr);
    ck_assert_int_eq(f.n_scales, 16 + 40);
    ck_assert_int_eq(f.t[1].off, 16);
    check_rebuilt(&x, &f);
    /* Two Adam steps against the closed form (beta 0.9/0.999, bias-corrected). */
    double *g1 = malloc(sizeof(double) * 56), *g2 = malloc(sizeof(double) * 56), *s0 = malloc(sizeof(double) * 56);
    for (int i = 0; i < 56; i++) {
        g1[i] = sin(i + 1.0) * 1e-2;
        g2[i] = cos(3.0 * i) * 1e-3;
        s0[i] = f.scales[i];
    }
    memcpy(f.grad, g1, sizeof(double) * 56);
    ds_fitscales_adam_step(&f);
    for (int i = 0; i < 56; i++) {
        const float want = (float)(s0[i] - lr * g1[i] / (fabs(g1[i]) + 1e-8));
        ck_assert_float_eq_tol(f.scales[i], want, 1e-7f * fabsf(want));
        s0[i] = f.scales[i];
    }
    memcpy(f.grad, g2, sizeof(double) * 56);
    ds_fitscales_adam_step(&f);
    for (int i = 0; i < 56; i++) {
        const double m = 0.9 * 0.1 * g1[i] + 0.1 * g2[i], v = 0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2[i] * g2[i];
        const double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
        const float want = (float)(s0[i] - lr * mh / (sqrt(vh) + 1e-8));
        ck_assert_float_eq_tol(f.scales[i], want, 1e-7f * fabsf(want));
    }
    ck_assert_int_eq(f.step, 2);
    check_rebuilt(&x, &f);
    free(g1);
    free(g2);
    free(s0);
    ds_fitscales_free(&f);
    fixture_free(&x);
}
END_TEST

/* Descent: on a fixed batch, Adam on the scales lowers the KL to a teacher
 * that differs from the student only in those scales; an empty batch
 * contributes nothing. */
START_TEST(test_descent_and_empty_batch)
{
    fixture x;
    fixture_init(&x, DS_SCALE_TENSOR, DS_SCALE_ROW);
    const int B = 2, T = 10, V = small.vocab_size;
    int toks[20];
    for (int i = 0; i < B * T; i++) toks[i] = (i * 5 + 3) % V;
    /* Teacher: the same codes with scales 1.5x larger. */
    ds_fitscales f;
    for (int k = 0; k < 2; k++) {
        const int64_t ns = k == 0 ? 1 : x.m.tinfo[x.c[k].index].shape[0];
        for (int64_t i = 0; i < ns; i++) x.sc[k][i] *= 1.5f;
    }
    ds_fitscales_init(&f, &x.m, 2, x.c, DS_FIT_KL, 0);
    ds_llama_act *a = ds_llama_act_new(&x.m, B, T);
    float *ref = malloc(sizeof(float) * (size_t)(B * T * V));
    memcpy(ref, ds_llama_forward(&x.m, a, toks, B, T), sizeof(float) * (size_t)(B * T * V));
    ds_fitscales_free(&f);
    for (int k = 0; k < 2; k++) {
        const int64_t ns = k == 0 ? 1 : x.m.tinfo[x.c[k].index].shape[0];
        for (int64_t i = 0; i < ns; i++) x.sc[k][i] /= 1.5f;
    }
    for (int k = 0; k < 2; k++) /* restore W_b under the coded tensors */
        memcpy(x.m.w[x.c[k].index], x.base[k], sizeof(float) * (size_t)ds_tinfo_numel(&x.m.tinfo[x.c[k].index]));
    ds_fitscales_init(&f, &x.m, 2, x.c, DS_FIT_KL, 2e-3);
    ds_fitscales_zero_grad(&f);
    ck_assert_double_eq(ds_fitscales_accumulate(&f, a, toks, 0, T, ref, 1.0f), 0.0);
    for (int64_t i = 0; i < f.n_scales; i++) ck_assert_double_eq(f.grad[i], 0.0);
    double first = 0, last = 0;
    for (int s = 0; s < 30; s++) {
        ds_fitscales_zero_grad(&f);
        last = ds_fitscales_accumulate(&f, a, toks, B, T, ref, 1.0f / (B * T));
        if (s == 0) first = last;
        ds_fitscales_adam_step(&f);
    }
    ck_assert_double_gt(first, 0);
    ck_assert_double_lt(last, 0.2 * first);
    check_rebuilt(&x, &f);
    free(ref);
    ds_llama_act_free(a);
    ds_fitscales_free(&f);
    fixture_free(&x);
}
END_TEST

START_TEST(test_objective_names)
{
    ds_fit_objective o;
    ck_assert_int_eq(ds_fit_objective_parse("kl", &o), 0);
    ck_assert_int_eq(o, DS_FIT_KL);
    ck_assert_int_eq(ds_fit_objective_parse("mse", &o), 0);
    ck_assert_int_eq(o, DS_FIT_MSE);
    ck_assert_int_eq(ds_fit_objective_parse("KL", &o), -1);
    ck_assert_str_eq(ds_fit_objective_name(DS_FIT_MSE), "mse");
}
END_TEST

/* ---- checkpoints */
static char tmpdir[256];

static void ckpt_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ds-test-ckpt.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void ckpt_teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static ds_ckpt *sample(void)
{
    ds_ckpt *c = ds_ckpt_new("fit-scales");
    ds_ckpt_record_str(c, "base_sha256", "ab12");
    ds_ckpt_record_double(c, "lr", 0.1);
    ds_ckpt_record_int(c, "batch", 4);
    return c;
}

START_TEST(test_ckpt_roundtrip)
{
    char path[300], tmp[310];
    snprintf(path, sizeof path, "%s/a/b/state.ckpt", tmpdir);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/a/b", tmpdir);
    ck_assert_int_eq(ds_ckpt_mkdir(dir), 0);
    ck_assert_int_eq(ds_ckpt_mkdir(dir), 0); /* exists: fine */
    ds_ckpt *c = sample();
    const float f[4] = {1.5f, -0.0f, 1e-38f, 3.4e38f};
    const double d[3] = {0.1, -1e-300, 1.0 / 3};
    ds_ckpt_state_int(c, "step", 40);
    ds_ckpt_put_array(c, "scales", DS_DTYPE_F32, 4, f);
    ds_ckpt_put_array(c, "m", DS_DTYPE_F64, 3, d);
    ds_ckpt_put_array(c, "empty", DS_DTYPE_F64, 0, d);
    ck_assert_int_eq(ds_ckpt_write(c, path), 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    ds_ckpt *r;
    ck_assert_int_eq(ds_ckpt_read(path, &r), 0);
    ck_assert_int_eq(ds_ckpt_match(r, c, path), 0);
    int64_t step;
    ck_assert_int_eq(ds_ckpt_get_int(r, "step", &step), 0);
    ck_assert_int_eq(step, 40);
    float f2[4];
    double d2[3];
    ck_assert_int_eq(ds_ckpt_get_array(r, "scales", DS_DTYPE_F32, 4, f2), 0);
    ck_assert_int_eq(ds_ckpt_get_array(r, "m", DS_DTYPE_F64, 3, d2), 0);
    ck_assert_int_eq(memcmp(f, f2, sizeof f), 0); /* bit for bit, -0.0 included */
    ck_assert_int_eq(memcmp(d, d2, sizeof d), 0);
    ck_assert_int_eq(ds_ckpt_get_array(r, "empty", DS_DTYPE_F64, 0, d2), 0);
    /* wrong count, dtype, name */
    ck_assert_int_eq(ds_ckpt_get_array(r, "scales", DS_DTYPE_F32, 5, f2), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "state.ckpt: array scales is F32[4], expected F32[5]"));
    ck_assert_int_eq(ds_ckpt_get_array(r, "scales", DS_DTYPE_F64, 4, d2), DS_EXIT_INPUT);
    ck_assert_int_eq(ds_ckpt_get_array(r, "nope", DS_DTYPE_F32, 4, f2), DS_EXIT_INPUT);
    ck_assert_int_eq(ds_ckpt_get_int(r, "nope", &step), DS_EXIT_INPUT);
    /* A second write replaces the first atomically. */
    ds_ckpt_state_int(c, "step", 60);
    ck_assert_int_eq(ds_ckpt_write(c, path), 0);
    ds_ckpt_free(r);
    ck_assert_int_eq(ds_ckpt_read(path, &r), 0);
    ck_assert_int_eq(ds_ckpt_get_int(r, "step", &step), 0);
    ck_assert_int_eq(step, 60);
    ds_ckpt_free(r);
    ds_ckpt_free(c);
}
END_TEST

START_TEST(test_ckpt_match)
{
    char path[300];
    snprintf(path, sizeof path, "%s/s.ckpt", tmpdir);
    ds_ckpt *c = sample();
    ck_assert_int_eq(ds_ckpt_write(c, path), 0);
    ds_ckpt *r;
    ck_assert_int_eq(ds_ckpt_read(path, &r), 0);
    ds_ckpt *now = sample();
    ds_ckpt_record_double(now, "lr", 0.2);
    ck_assert_int_eq(ds_ckpt_match(r, now, path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "lr was 0.10000000000000001, now 0.20000000000000001"));
    ds_ckpt_free(now);
    now = sample();
    ds_ckpt_record_str(now, "calib_sha256", "ff");
    ck_assert_int_eq(ds_ckpt_match(r, now, path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "calib_sha256 was (absent), now \"ff\""));
    ds_ckpt_free(now);
    now = ds_ckpt_new("aggregate");
    ck_assert_int_eq(ds_ckpt_match(r, now, path), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "checkpoint of job fit-scales, not aggregate"));
    ds_ckpt_free(now);
    ds_ckpt_free(r);
    ds_ckpt_free(c);
}
END_TEST

START_TEST(test_ckpt_damage)
{
    char path[300];
    snprintf(path, sizeof path, "%s/s.ckpt", tmpdir);
    ds_ckpt *c = sample();
    const double d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ds_ckpt_put_array(c, "m", DS_DTYPE_F64, 8, d);
    ck_assert_int_eq(ds_ckpt_write(c, path), 0);
    ds_ckpt_free(c);
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    const long len = ftell(fp);
    fseek(fp, len - 40, SEEK_SET); /* a byte of the array */
    int ch = fgetc(fp);
    fseek(fp, len - 40, SEEK_SET);
    fputc(ch ^ 1, fp);
    fclose(fp);
    ds_ckpt *r;
    ck_assert_int_eq(ds_ckpt_read(path, &r), DS_EXIT_INPUT);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "s.ckpt: checkpoint is damaged"));
    ck_assert_int_eq(truncate(path, len / 2), 0);
    ck_assert_int_eq(ds_ckpt_read(path, &r), DS_EXIT_INPUT);
    fp = fopen(path, "w");
    fputs("hello\n", fp);
    fclose(fp);
    ck_assert_int_eq(ds_ckpt_read(path, &r), DS_EXIT_INPUT);
    ck_assert_ptr_nonnull(strstr(ds_errmsg(), "not a deltasoup checkpoint"));
    snprintf(path, sizeof path, "%s/missing/s.ckpt", tmpdir);
    ck_assert_int_eq(ds_ckpt_read(path, &r), DS_EXIT_INPUT);
    c = sample();
    ck_assert_int_eq(ds_ckpt_write(c, path), DS_EXIT_OUTPUT);
    ds_ckpt_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fitscales");
    tcase_add_test(ds_check_case(s, "reduce", 60), test_reduce_matches_naive);
    tcase_add_test(ds_check_case(s, "step", 60), test_init_rebuild_adam);
    tcase_add_test(ds_check_case(s, "bf16_base", 60), test_bf16_base);
    tcase_add_test(ds_check_case(s, "coded_student", 60), test_coded_student);
    tcase_add_test(ds_check_case(s, "descent", 60), test_descent_and_empty_batch);
    tcase_add_test(ds_check_case(s, "objective", 60), test_objective_names);
    TCase *tk = tcase_create("checkpoint");
    tcase_add_checked_fixture(tk, ckpt_setup, ckpt_teardown);
    tcase_add_test(tk, test_ckpt_roundtrip);
    tcase_add_test(tk, test_ckpt_match);
    tcase_add_test(tk, test_ckpt_damage);
    suite_add_tcase(s, tk);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_ENV);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
