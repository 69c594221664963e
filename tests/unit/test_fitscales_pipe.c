/* src/fitscales_pipe.h under MPI at 1-4 ranks (tests/unit/test_fitscales_pipe.sh),
 * on a random untied 6-layer model with grouped KV heads, coded tensors of
 * every scale kind (per tensor, row, column; the head included), KL (the
 * base's values bf16, kept in bf16 by src/fitscales) and MSE (f32):
 * - for every P that divides the ranks (groups of P stages, the batch's 3
 *   windows shared out across the groups, a group without a window at 4
 *   ranks and P = 1), the pipelined step's scale gradients and objective
 *   equal bit for bit the whole model's on one rank, window by window
 *   (ds_fitscales_accumulate on each window, added in window order), and
 *   so does the held-out comparison (KL, MSE, both NLLs);
 * - the pipelined gradient against central finite differences of the
 *   pipelined objective, (L(g + h) - L(g - h)) / 2h, on the scales with the
 *   largest gradients (relative error < 2e-3; observed <= 1.5e-4, the engine is f32). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"
#include "src/fitscales_pipe.h"
#include "src/mpi_asan.h"
#include "tests/unit/check_main.h"

enum { L = 6, NB = 3, T = 6, NH = 5 };
static int rank, size;

static ds_config cfg(void)
{
    ds_config c = {0};
    c.dim = 16;
    c.hidden_dim = 24;
    c.n_layers = L;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.vocab_size = 37;
    c.max_seq_len = 16;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tied_embeddings = 0;
    return c;
}

/* The coded tensors: every layer matrix and the head, kinds in turn; random
 * signs, scales 0.02 .. 0.04 (the same on every rank). */
typedef struct {
    int n;
    ds_fit_coded c[DS_LLAMA_ROLES * L + 1];
    uint64_t *bits[DS_LLAMA_ROLES * L + 1];
    float *scales[DS_LLAMA_ROLES * L + 1];
} coded;

static void coded_init(coded *k, const ds_llama *whole)
{
    ds_rng r = {99};
    memset(k, 0, sizeof *k);
    for (int i = 1; i < whole->n_tensors; i++) {
        const ds_tinfo *t = &whole->tinfo[i];
        if (t->ndim != 2) continue;
        const int64_t rows = t->shape[0], cols = t->shape[1], w = (int64_t)ds_bitpack_words((size_t)cols);
        const ds_scale_kind kind = (ds_scale_kind)(k->n % 3); /* tensor, row, col */
        const int64_t ns = kind == DS_SCALE_TENSOR ? 1 : kind == DS_SCALE_ROW ? rows : cols;
        k->bits[k->n] = malloc(sizeof(uint64_t) * (size_t)(rows * w));
        for (int64_t j = 0; j < rows * w; j++) k->bits[k->n][j] = ds_rng_u64(&r);
        k->scales[k->n] = malloc(sizeof(float) * (size_t)ns);
        for (int64_t j = 0; j < ns; j++) k->scales[k->n][j] = (float)(0.02 + 0.02 * ds_rng_uniform(&r));
        k->c[k->n] = (ds_fit_coded){i, kind, k->bits[k->n], k->scales[k->n]};
        k->n++;
    }
}

static void coded_free(coded *k)
{
    for (int i = 0; i < k->n; i++) {
        free(k->bits[i]);
        free(k->scales[i]);
    }
}

/* Models for layers [l0, l1): the student's base (seed 1; with the KL
 * objective its values rounded to bf16, as a bf16 checkpoint loads, so that
 * src/fitscales keeps W_b in bf16) and the teacher (seed 2). */
static void models(ds_llama *s, ds_llama *t, int l0, int l1, ds_fit_objective obj)
{
    const ds_config c = cfg();
    ck_assert_int_eq(ds_llama_init_stage(s, &c, NULL, l0, l1), 0);
    ck_assert_int_eq(ds_llama_init_stage(t, &c, NULL, l0, l1), 0);
    ds_llama_randomize(s, 1, 0.2f);
    ds_llama_randomize(t, 2, 0.2f);
    float *w = s->data;
    for (int64_t i = 0; obj == DS_FIT_KL && i < s->numel; i++) {
        uint32_t u;
        memcpy(&u, &w[i], sizeof u);
        u &= 0xffff0000u;
        memcpy(&w[i], &u, sizeof u);
    }
}

static void tokens_init(int *tok, int n)
{
    ds_rng r = {5};
    for (int i = 0; i < n * T; i++) tok[i] = (int)(ds_rng_u64(&r) % 37);
}

/* The whole model on this rank alone: per-window gradients added in
 * window order, the objective, and the comparison's sums. */
static void reference(ds_fit_objective obj, const coded *k, const int *tok, float gs, double *grad, double *objective,
                      ds_fit_compare *cmp)
{
    ds_llama s, t;
    models(&s, &t, 0, L, obj);
    ds_fitscales f;
    ds_fitscales_init(&f, &s, k->n, k->c, obj, 1e-3);
    ds_llama_act *sa = ds_llama_act_new(&s, 1, T), *ta = ds_llama_act_new_fwd(&t, 1, T);
    memset(grad, 0, sizeof(double) * (size_t)f.n_scales);
    *objective = 0;
    for (int r = 0; r < NB; r++) {
        ds_fitscales_zero_grad(&f);
        const float *ref = ds_llama_forward(&t, ta, tok + r * T, 1, T);
        *objective += ds_fitscales_accumulate(&f, sa, tok + r * T, 1, T, ref, gs);
        for (int64_t i = 0; i < f.n_scales; i++) grad[i] += f.grad[i];
    }
    double sum[4] = {0, 0, 0, 0};
    int targets[T];
    for (int w = 0; w < NH; w++) {
        const int *x = tok + (NB + w) * T;
        memcpy(targets, x + 1, sizeof(int) * (T - 1));
        targets[T - 1] = -1;
        const float *ref = ds_llama_forward(&t, ta, x, 1, T);
        const double nt = ds_llama_loss_ce(ta, targets, 0, NULL);
        ds_llama_forward(&s, sa, x, 1, T);
        sum[0] += ds_llama_loss_kl(sa, ref, NULL, 0, NULL);
        sum[1] += ds_llama_loss_mse(sa, ref, NULL, 0, NULL);
        sum[2] += ds_llama_loss_ce(sa, targets, 0, NULL);
        sum[3] += nt;
    }
    cmp->kl = sum[0] / (NH * T);
    cmp->mse = sum[1] / (NH * T);
    cmp->nll = sum[2] / (NH * (T - 1));
    cmp->nll_teacher = sum[3] / (NH * (T - 1));
    ds_llama_act_free(sa);
    ds_llama_act_free(ta);
    ds_fitscales_free(&f);
    ds_llama_free(&s);
    ds_llama_free(&t);
}

/* Teacher first: the teacher's last-stage logits of every window kept in
 * memory (rows 0..NB-1: the step's, NB..: the comparison's), then read back
 * by the student-only pipeline (ds_fitpipe_ref). */
enum { V = 37 };
typedef struct {
    float *lg;   /* [NB + NH, T, V] */
    double *nll; /* [NB + NH] */
    int64_t base;
} memref;

static int mem_sink(void *arg, int64_t row, const float *logits, double nll)
{
    memref *m = arg;
    memcpy(m->lg + (m->base + row) * T * V, logits, sizeof(float) * T * V);
    m->nll[m->base + row] = nll;
    return 0;
}

static int mem_logits(void *arg, int train, int64_t row, float *buf)
{
    memref *m = arg;
    memcpy(buf, m->lg + ((train ? 0 : NB) + row) * T * V, sizeof(float) * T * V);
    return 0;
}

/* The teacher first, then the student alone: the same objective, gradient
 * and comparison, bit for bit, as both together (want*). */
static void check_teacher_first(const ds_pipe *p, ds_fitscales *f, const ds_llama *t, const int *tok, float gs,
                                double wobj, const double *want, const ds_fit_compare *wc)
{
    memref m = {calloc((NB + NH) * T * V, sizeof(float)), calloc(NB + NH, sizeof(double)), 0};
    ds_teacherpipe tp;
    ds_teacherpipe_init(&tp, p, t, T);
    ck_assert_int_eq(ds_teacherpipe_run(&tp, MPI_COMM_WORLD, tok, NB, 0, mem_sink, &m), 0);
    m.base = NB;
    ck_assert_int_eq(ds_teacherpipe_run(&tp, MPI_COMM_WORLD, tok + NB * T, NH, 1, mem_sink, &m), 0);
    ds_teacherpipe_free(&tp);
    const ds_fitpipe_ref ref = {mem_logits, &m, m.nll + NB};
    ds_fitpipe fp;
    ds_fitpipe_init(&fp, p, f, NULL, &ref, NB, T);
    double o, flag = 0;
    ck_assert_int_eq(ds_fitpipe_step(&fp, MPI_COMM_WORLD, tok, gs, &o, &flag), 0);
    ck_assert_msg(o == wobj, "P=%d teacher first: objective %.17g, both %.17g", p->P, o, wobj);
    for (int64_t i = 0; i < f->n_scales; i++)
        ck_assert_msg(f->grad[i] == want[i], "P=%d teacher first: dL/dg[%lld] = %.17g, both %.17g", p->P,
                      (long long)i, f->grad[i], want[i]);
    ds_fit_compare got;
    ck_assert_int_eq(ds_fitpipe_compare(&fp, MPI_COMM_WORLD, tok + NB * T, NH, &got), 0);
    ck_assert(got.kl == wc->kl && got.mse == wc->mse && got.nll == wc->nll && got.nll_teacher == wc->nll_teacher);
    ds_fitpipe_free(&fp);
    free(m.lg);
    free(m.nll);
}

static void check_P(ds_fit_objective obj, int P, const coded *k, const int *tok)
{
    const float gs = 1.0f / (NB * T);
    double *want = malloc(sizeof(double) * 4096), wobj;
    ds_fit_compare wc, got;
    reference(obj, k, tok, gs, want, &wobj, &wc);
    double lb[L] = {1, 1, 1, 1, 1, 1};
    ds_pipe p;
    ds_pipe_init(&p, MPI_COMM_WORLD, P, L, lb, 0.5, 0.5);
    ds_llama s, t;
    models(&s, &t, p.l0, p.l1, obj);
    ds_fitscales f;
    ds_fitscales_init(&f, &s, k->n, k->c, obj, 1e-3);
    for (int i = 0; i < f.n; i++)
        if (f.t[i].base) ck_assert_int_eq(f.t[i].base_dt, obj == DS_FIT_KL ? DS_KDT_BF16 : DS_KDT_F32);
    ck_assert_int_le(f.n_scales, 4096);
    ds_fitpipe fp;
    ds_fitpipe_init(&fp, &p, &f, &t, NULL, NB, T);
    double o, flag = rank == 0;
    ck_assert_int_eq(ds_fitpipe_step(&fp, MPI_COMM_WORLD, tok, gs, &o, &flag), 0);
    ck_assert(flag == 1.0); /* summed over the ranks */
    ck_assert_msg(o == wobj, "P=%d: objective %.17g, whole model %.17g", P, o, wobj);
    for (int64_t i = 0; i < f.n_scales; i++)
        ck_assert_msg(f.grad[i] == want[i], "P=%d: dL/dg[%lld] = %.17g, whole model %.17g", P, (long long)i,
                      f.grad[i], want[i]);
    ck_assert_int_eq(ds_fitpipe_compare(&fp, MPI_COMM_WORLD, tok + NB * T, NH, &got), 0);
    ck_assert(got.kl == wc.kl && got.mse == wc.mse && got.nll == wc.nll && got.nll_teacher == wc.nll_teacher);
    ck_assert(got.tokens == NH * T && got.predicted == NH * (T - 1));
    check_teacher_first(&p, &f, &t, tok, gs, wobj, want, &wc);

    /* finite differences of the pipelined objective on the largest gradients */
    double *g = malloc(sizeof(double) * (size_t)f.n_scales);
    memcpy(g, f.grad, sizeof(double) * (size_t)f.n_scales);
    for (int rep = 0; rep < 4; rep++) {
        int64_t best = 0;
        for (int64_t i = 1; i < f.n_scales; i++)
            if (fabs(g[i]) > fabs(g[best])) best = i;
        const float s0 = f.scales[best], h = 2e-3f;
        double lp, lm, fl = 0;
        f.scales[best] = s0 + h;
        ds_fitscales_rebuild(&f);
        ds_fitpipe_step(&fp, MPI_COMM_WORLD, tok, gs, &lp, &fl);
        f.scales[best] = s0 - h;
        ds_fitscales_rebuild(&f);
        ds_fitpipe_step(&fp, MPI_COMM_WORLD, tok, gs, &lm, &fl);
        f.scales[best] = s0;
        ds_fitscales_rebuild(&f);
        const double fd = (lp - lm) * gs / ((double)(s0 + h) - (double)(s0 - h));
        ck_assert_msg(fabs(fd - g[best]) <= 2e-3 * fabs(g[best]), "P=%d scale %lld: dL/dg %.9g, finite difference %.9g",
                      P, (long long)best, g[best], fd);
        g[best] = 0;
    }
    free(g);
    ds_fitpipe_free(&fp);
    ds_fitscales_free(&f);
    ds_llama_free(&s);
    ds_llama_free(&t);
    ds_pipe_free(&p);
    free(want);
}

START_TEST(test_pipelined)
{
    ds_llama whole;
    const ds_config c = cfg();
    ck_assert_int_eq(ds_llama_init(&whole, &c), 0);
    coded k;
    coded_init(&k, &whole);
    ds_llama_free(&whole);
    int tok[(NB + NH) * T];
    tokens_init(tok, NB + NH);
    for (int obj = 0; obj < 2; obj++)
        for (int P = 1; P <= L && P <= size; P++)
            if (size % P == 0) check_P((ds_fit_objective)obj, P, &k, tok);
    coded_free(&k);
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Suite *s = suite_create("fitscales_pipe");
    tcase_add_test(ds_check_case(s, "pipelined", 120), test_pipelined);
    const int rc = ds_check_run_mpi(s, rank, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
