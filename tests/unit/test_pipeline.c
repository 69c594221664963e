/* src/pipeline.h under MPI at 1-4 ranks (tests/unit/test_pipeline.sh):
 * - the partition against a brute-force search over every split;
 * - the plan's groups, stages and communicators;
 * - the GPipe drivers on a chain of dense tanh layers split across the
 *   stages of each group: the outputs, the input gradients and every
 *   layer's weight gradient equal a serial run of the same chain on one
 *   rank bit for bit (the same float operations in the same order), for
 *   every P that divides the number of ranks;
 * - a stage that fails at any micro-batch, forward or backward, makes every
 *   stage of its group return 1 without hanging. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "src/ds.h"
#include "src/mpi_asan.h"
#include "src/pipeline.h"
#include "tests/unit/check_main.h"

static int rank, size;

/* ---- partition vs brute force */
static double split_cost(int L, const double *b, double ef, double el, int P, const int *bounds)
{
    double worst = 0;
    for (int k = 0; k < P; k++) {
        double c = (k == 0 ? ef : 0) + (k == P - 1 ? el : 0);
        for (int l = bounds[k]; l < bounds[k + 1]; l++) c += b[l];
        if (c > worst) worst = c;
    }
    return worst;
}

/* the least largest stage over every split of L layers into P stages */
static double brute(int L, const double *b, double ef, double el, int P, int *bounds, int k)
{
    if (k == P) {
        if (bounds[P - 1] >= L) return INFINITY;
        bounds[P] = L;
        return split_cost(L, b, ef, el, P, bounds);
    }
    double best = INFINITY;
    for (int s = bounds[k - 1] + 1; s <= L - (P - k); s++) {
        bounds[k] = s;
        double c = brute(L, b, ef, el, P, bounds, k + 1);
        if (c < best) best = c;
    }
    return best;
}

START_TEST(test_partition)
{
    unsigned s = 12345;
    for (int trial = 0; trial < 300; trial++) {
        int L = 1 + trial % 9, P = 1 + (trial / 9) % L;
        double b[16], ef, el;
        for (int l = 0; l < L; l++) b[l] = (double)((s = s * 1103515245u + 12345u) >> 20 & 15) + (trial % 3 ? 1 : 0);
        ef = (double)((s = s * 1103515245u + 12345u) >> 20 & 31);
        el = (double)((s = s * 1103515245u + 12345u) >> 20 & 31);
        int got[17], ref[17] = {0};
        double c = ds_pipe_partition(L, b, ef, el, P, got);
        double want = brute(L, b, ef, el, P, ref, 1);
        ck_assert_msg(c == want, "L=%d P=%d: %g, brute force %g", L, P, c, want);
        ck_assert_int_eq(got[0], 0);
        ck_assert_int_eq(got[P], L);
        for (int k = 0; k < P; k++) ck_assert_int_lt(got[k], got[k + 1]);
        ck_assert(split_cost(L, b, ef, el, P, got) == c);
    }
    /* 32 equal layers, embeddings and head of 4 layers each, 4 stages: 10 per
     * stage at most: 6 + emb | 10 | 10 | 6 + head */
    double eq[32];
    for (int l = 0; l < 32; l++) eq[l] = 1;
    int bnd[5];
    ck_assert(ds_pipe_partition(32, eq, 4, 4, 4, bnd) == 10);
    ck_assert(split_cost(32, eq, 4, 4, 4, bnd) == 10);
    ck_assert_int_eq(bnd[1], 6);
    ck_assert_int_eq(bnd[4] - bnd[3], 6);
    ck_assert(ds_pipe_partition(3, eq, 0, 0, 4, bnd) < 0);
    ck_assert(ds_pipe_partition(3, eq, 0, 0, 0, bnd) < 0);
}
END_TEST

/* ---- a chain of L dense layers y = tanh(W_l x + b_l), D wide; micro-batch
 * mb has 1 + 100 (mb % 3) rows; loss = sum(c * y_L). */
enum { L = 6, D = 8, NMB = 7 };
static float W[L][D][D], bias[L][D], cvec[D];

static void init_chain(void)
{
    unsigned s = 777;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < D; i++) {
            for (int j = 0; j < D; j++) W[l][i][j] = (float)((int)((s = s * 1103515245u + 12345u) >> 16 & 255) - 128) / 256.0f;
            bias[l][i] = (float)((int)((s = s * 1103515245u + 12345u) >> 16 & 255) - 128) / 512.0f;
        }
    for (int i = 0; i < D; i++) cvec[i] = (float)(i % 3) - 1.0f + 0.25f * (float)i;
}

/* up to 201 rows: 6.4 KB messages, past Open MPI's shared-memory eager
 * limit, so a send buffer reused too early shows */
enum { RMAX = 201 };
static int rows_of(int mb) { return 1 + (mb % 3) * 100; }

static void input_of(int group, int mb, float *x)
{
    for (int r = 0; r < rows_of(mb); r++)
        for (int j = 0; j < D; j++) x[r * D + j] = sinf((float)(group * 100 + mb * 10 + r * D + j));
}

static void layer_fwd(int l, const float *x, float *y, int rows)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < D; i++) {
            float a = bias[l][i];
            for (int j = 0; j < D; j++) a += W[l][i][j] * x[r * D + j];
            y[r * D + i] = tanhf(a);
        }
}

/* dy -> dx, adds dW; y = this layer's output, x its input */
static void layer_bwd(int l, const float *x, const float *y, const float *dy, float *dx, float dW[D][D], int rows)
{
    for (int r = 0; r < rows; r++) {
        float dp[D];
        for (int i = 0; i < D; i++) dp[i] = dy[r * D + i] * (1.0f - y[r * D + i] * y[r * D + i]);
        for (int j = 0; j < D; j++) {
            float a = 0;
            for (int i = 0; i < D; i++) a += W[l][i][j] * dp[i];
            dx[r * D + j] = a;
        }
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) dW[i][j] += dp[i] * x[r * D + j];
    }
}

/* a stage: layers [l0, l1) of the chain, activations of every micro-batch kept */
typedef struct {
    int l0, l1, first, last, group;
    float act[NMB][L + 1][RMAX * D]; /* act[mb][l]: input of layer l (l1: output) */
    float out[DS_PIPE_DEPTH][RMAX * D], dxs[DS_PIPE_DEPTH][RMAX * D]; /* sends in flight: a ring, as the rule allows */
    float dx[NMB][RMAX * D], dW[L][D][D];
    int fail_fwd, fail_bwd;       /* fail at this micro-batch (-1: never) */
} chain;

static float *chain_forward(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out)
{
    chain *c = arg;
    const int rows = rows_of(mb);
    if (mb == c->fail_fwd) return *n_out = -1, NULL;
    if (!c->first && mb < 2) usleep(30000); /* the previous stage runs ahead: its sends stay in flight */
    if (c->first) input_of(c->group, mb, c->act[mb][c->l0]);
    else {
        ck_assert_int_eq(n_in, rows * D);
        memcpy(c->act[mb][c->l0], in, sizeof(float) * (size_t)n_in);
    }
    for (int l = c->l0; l < c->l1; l++) layer_fwd(l, c->act[mb][l], c->act[mb][l + 1], rows);
    float *o = c->out[mb % DS_PIPE_DEPTH];
    memcpy(o, c->act[mb][c->l1], sizeof(float) * (size_t)(rows * D));
    *n_out = c->last ? 0 : rows * D;
    return c->last ? NULL : o;
}

static float *chain_backward(void *arg, int mb, const float *dout, int64_t n, int64_t *n_in)
{
    chain *c = arg;
    const int rows = rows_of(mb);
    if (mb == c->fail_bwd) return *n_in = -1, NULL;
    if (!c->last && mb >= NMB - 2) usleep(30000);
    float g[RMAX * D], h[RMAX * D];
    if (c->last)
        for (int r = 0; r < rows; r++) memcpy(g + r * D, cvec, sizeof cvec);
    else {
        ck_assert_int_eq(n, rows * D);
        memcpy(g, dout, sizeof(float) * (size_t)n);
    }
    for (int l = c->l1 - 1; l >= c->l0; l--) {
        layer_bwd(l, c->act[mb][l], c->act[mb][l + 1], g, h, c->dW[l], rows);
        memcpy(g, h, sizeof h);
    }
    memcpy(c->dx[mb], g, sizeof(float) * (size_t)(rows * D));
    float *o = c->dxs[mb % DS_PIPE_DEPTH];
    memcpy(o, g, sizeof(float) * (size_t)(rows * D));
    *n_in = c->first ? 0 : rows * D;
    return c->first ? NULL : o;
}

static chain *chain_new(const ds_pipe *p, int l0, int l1)
{
    chain *c = calloc(1, sizeof *c);
    c->l0 = l0, c->l1 = l1, c->first = l0 == 0, c->last = l1 == L, c->group = p->group;
    c->fail_fwd = c->fail_bwd = -1;
    return c;
}

static void check_plan(const ds_pipe *p, int P)
{
    ck_assert_int_eq(p->groups * P, size);
    ck_assert_int_eq(p->group, rank / P);
    ck_assert_int_eq(p->stage, rank % P);
    int n, r;
    MPI_Comm_size(p->group_comm, &n), MPI_Comm_rank(p->group_comm, &r);
    ck_assert_int_eq(n, P);
    ck_assert_int_eq(r, p->stage);
    MPI_Comm_size(p->dp_comm, &n), MPI_Comm_rank(p->dp_comm, &r);
    ck_assert_int_eq(n, p->groups);
    ck_assert_int_eq(r, p->group);
    int sum = 0;
    MPI_Allreduce(&p->stage, &sum, 1, MPI_INT, MPI_SUM, p->dp_comm); /* same stage everywhere */
    ck_assert_int_eq(sum, p->stage * p->groups);
}

START_TEST(test_schedule)
{
    init_chain();
    double bytes[L];
    for (int l = 0; l < L; l++) bytes[l] = 1;
    for (int P = 1; P <= size; P++) {
        if (size % P || P > L) continue;
        ds_pipe p;
        ds_pipe_init(&p, MPI_COMM_WORLD, P, L, bytes, 0.5, 0.5);
        check_plan(&p, P);
        chain *c = chain_new(&p, p.l0, p.l1), *ref = chain_new(&p, 0, L);
        ds_pipe_stage st = {chain_forward, chain_backward, c};
        ck_assert_int_eq(ds_pipe_forward(&p, NMB, &st), 0);
        ck_assert_int_eq(ds_pipe_backward(&p, NMB, &st), 0);
        /* the serial reference: the whole chain on this rank, in the same
         * order (every forward, then the backwards from the last) */
        int64_t n;
        for (int mb = 0; mb < NMB; mb++) chain_forward(ref, mb, NULL, 0, &n);
        for (int mb = NMB - 1; mb >= 0; mb--) chain_backward(ref, mb, NULL, 0, &n);
        for (int mb = 0; mb < NMB; mb++) {
            const size_t bytes_mb = sizeof(float) * (size_t)(rows_of(mb) * D);
            ck_assert_msg(memcmp(c->act[mb][p.l1], ref->act[mb][p.l1], bytes_mb) == 0, "P=%d mb %d: output", P, mb);
            if (p.first)
                ck_assert_msg(memcmp(c->dx[mb], ref->dx[mb], bytes_mb) == 0, "P=%d mb %d: input gradient", P, mb);
        }
        for (int l = p.l0; l < p.l1; l++)
            ck_assert_msg(memcmp(c->dW[l], ref->dW[l], sizeof c->dW[l]) == 0, "P=%d layer %d: weight gradient", P, l);
        /* failures: each stage in turn fails at micro-batch 3 (forward) or 1
         * (backward); the whole group returns 1 and nobody hangs */
        for (int bad = 0; bad < P; bad++)
            for (int dir = 0; dir < 2; dir++) {
                chain *f = chain_new(&p, p.l0, p.l1);
                if (p.stage == bad) *(dir ? &f->fail_bwd : &f->fail_fwd) = dir ? 1 : 3;
                ds_pipe_stage fs = {chain_forward, chain_backward, f};
                ck_assert_int_eq(ds_pipe_forward(&p, NMB, &fs), dir ? 0 : 1);
                if (dir) ck_assert_int_eq(ds_pipe_backward(&p, NMB, &fs), 1);
                free(f);
            }
        free(c);
        free(ref);
        ds_pipe_free(&p);
    }
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Suite *s = suite_create("pipeline");
    tcase_add_test(ds_check_case(s, "partition", 60), test_partition);
    tcase_add_test(ds_check_case(s, "schedule", 60), test_schedule);
    const int rc = ds_check_run_mpi(s, rank, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
