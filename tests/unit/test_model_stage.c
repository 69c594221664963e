/* Pipeline stages of the engine (src/model.h ds_llama_init_stage,
 * ds_llama_forward_stage, ds_llama_backward_stage), in one process: a chain
 * of stage models holding slices of a random model gives the whole model's
 * logits and, through ds_llama_backward_stage, its weight gradients (bit for
 * bit: the same operations in the same order; a tied model's embedding
 * gradient, summed from its two parts, within rounding), for every split
 * of 5 layers, f32 and bf16 weights; a stage holds only its tensors. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/model.h"
#include "tests/unit/check_main.h"

enum { L = 5, B = 2, T = 7 };
static const ds_config cfg0 = {.dim = 16, .hidden_dim = 40, .n_layers = L, .n_heads = 4, .n_kv_heads = 2,
                               .vocab_size = 29, .max_seq_len = 12, .norm_eps = 1e-5f, .rope_theta = 10000.0f};

typedef struct {
    ds_llama m;
    ds_llama_act *a;
    ds_llama_grads g;
} stage;

static void init_stage(stage *s, const ds_config *c, const ds_dtype *dt, int l0, int l1)
{
    ck_assert_int_eq(ds_llama_init_stage(&s->m, c, dt, l0, l1), 0);
    ds_llama_randomize(&s->m, 42, 0.2f);
    s->a = ds_llama_act_new(&s->m, B, T);
    ds_llama_grads_init(&s->g, &s->m, NULL);
}

static void free_stage(stage *s)
{
    ds_llama_act_free(s->a);
    ds_llama_grads_free(&s->g);
    ds_llama_free(&s->m);
}

/* bounds of the split number k of L layers into stages (every composition) */
static int split(int k, int *b)
{
    int n = 0;
    b[n++] = 0;
    for (int l = 1; l < L; l++)
        if (k >> (l - 1) & 1) b[n++] = l;
    b[n] = L;
    return n; /* stages */
}

static void run(int tied, ds_dtype mat)
{
    ds_config c = cfg0;
    c.tied_embeddings = tied;
    ds_tinfo *ti;
    int nt = ds_llama_tensors(&c, &ti);
    ds_dtype *dt = malloc(sizeof *dt * (size_t)nt);
    for (int i = 0; i < nt; i++) dt[i] = mat;
    int tokens[B * T], targets[B * T];
    for (int n = 0; n < B * T; n++) tokens[n] = (n * 7 + 3) % c.vocab_size, targets[n] = (n * 5 + 1) % c.vocab_size;
    stage full;
    init_stage(&full, &c, dt, 0, L);
    const float *zf = ds_llama_forward(&full.m, full.a, tokens, B, T);
    float *zref = malloc(sizeof(float) * (size_t)(B * T * c.vocab_size));
    memcpy(zref, zf, sizeof(float) * (size_t)(B * T * c.vocab_size));
    const double lref = ds_llama_loss_ce(full.a, targets, 1.0f / (B * T), NULL);
    ds_llama_backward(&full.m, full.a, &full.g);
    for (int k = 0; k < 1 << (L - 1); k++) {
        int b[L + 1];
        const int P = split(k, b);
        stage st[L];
        for (int p = 0; p < P; p++) {
            init_stage(&st[p], &c, dt, b[p], b[p + 1]);
            for (int i = 0; i < nt; i++) /* only its own tensors */
                ck_assert_int_eq(ds_llama_holds(&st[p].m, i), st[p].m.p[i] != NULL);
            ck_assert(st[p].m.bytes < full.m.bytes || P == 1);
        }
        const float *h = NULL;
        for (int p = 0; p < P; p++) h = ds_llama_forward_stage(&st[p].m, st[p].a, tokens, h, B, T);
        ck_assert_msg(memcmp(h, zref, sizeof(float) * (size_t)(B * T * c.vocab_size)) == 0,
                      "tied %d split %d: logits differ", tied, k);
        const double l = ds_llama_loss_ce(st[P - 1].a, targets, 1.0f / (B * T), NULL);
        ck_assert(l == lref);
        const float *d = NULL;
        for (int p = P - 1; p >= 0; p--) {
            d = ds_llama_backward_stage(&st[p].m, st[p].a, &st[p].g, d);
            ck_assert(p == 0 ? d == NULL : d != NULL);
        }
        for (int i = 0; i < nt; i++) {
            const size_t n = (size_t)ds_tinfo_numel(&ti[i]);
            if (i == 0 && tied && P > 1) { /* first stage's part + last stage's part */
                const float *g0 = st[0].g.g[0], *g1 = st[P - 1].g.g[0], *gf = full.g.g[0];
                for (size_t j = 0; j < n; j++)
                    ck_assert_msg(fabsf(g0[j] + g1[j] - gf[j]) <= 1e-6f * (1 + fabsf(gf[j])), "tied embedding");
                continue;
            }
            int owner = -1;
            for (int p = 0; p < P; p++)
                if (st[p].g.g[i]) owner = p;
            ck_assert_int_ge(owner, 0);
            ck_assert_msg(memcmp(st[owner].g.g[i], full.g.g[i], n * sizeof(float)) == 0,
                          "tied %d split %d: gradient of %s differs", tied, k, ti[i].name);
        }
        for (int p = 0; p < P; p++) free_stage(&st[p]);
    }
    free_stage(&full);
    free(zref);
    free(dt);
    free(ti);
}

START_TEST(test_stages_f32) { run(0, DS_DTYPE_F32); run(1, DS_DTYPE_F32); }
END_TEST

START_TEST(test_stages_bf16) { run(0, DS_DTYPE_BF16); run(1, DS_DTYPE_BF16); }
END_TEST

START_TEST(test_bad_range)
{
    ds_llama m;
    ck_assert_int_eq(ds_llama_init_stage(&m, &cfg0, NULL, 2, 2), DS_EXIT_USAGE);
    ck_assert_int_eq(ds_llama_init_stage(&m, &cfg0, NULL, 0, L + 1), DS_EXIT_USAGE);
    ck_assert_int_eq(ds_llama_init_stage(&m, &cfg0, NULL, -1, 1), DS_EXIT_USAGE);
    /* the workspace of a middle stage: its layers, no logits; the last
     * stage's adds the logits and their gradient */
    const double mid = ds_llama_act_bytes_stage(&cfg0, B, T, 1, 2), last = ds_llama_act_bytes_stage(&cfg0, B, T, 4, 5);
    ck_assert(mid < ds_llama_act_bytes(&cfg0, B, T) / 2);
    ck_assert(last - mid == 4.0 * 2 * B * T * cfg0.vocab_size);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model_stage");
    TCase *tc = ds_check_case(s, "stages", 120);
    tcase_add_test(tc, test_stages_f32);
    tcase_add_test(tc, test_stages_bf16);
    tcase_add_test(tc, test_bad_range);
    return ds_check_run(s);
}
