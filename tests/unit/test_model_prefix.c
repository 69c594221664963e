/* Scoring with a shared prefix (src/model.h ds_llama_forward_rows): the
 * logits of continuations computed after a cached prefix, and only at the
 * requested rows, against the logits of the whole sequences from
 * ds_llama_forward (the reference twin), on random models with grouped
 * query attention, f32 and bf16 weights, tied and untied heads. Without a
 * prefix and with every row requested, forward_rows is ds_llama_forward bit
 * for bit. With a prefix the reductions are the same but the BLAS kernels
 * may block rows of different batch shapes differently: within 1e-5
 * relative (measured 1.2e-6 f32, 1.6e-6 bf16). */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/model.h"
#include "tests/unit/check_main.h"

enum { L = 3, P = 9, NA = 3, TC = 6 };
static const ds_config cfg0 = {.dim = 16, .hidden_dim = 40, .n_layers = L, .n_heads = 4, .n_kv_heads = 2,
                               .vocab_size = 29, .max_seq_len = 24, .norm_eps = 1e-5f, .rope_theta = 10000.0f};

static void run(int tied, ds_dtype mat)
{
    ds_config c = cfg0;
    c.tied_embeddings = tied;
    const int V = c.vocab_size;
    ds_tinfo *ti;
    const int nt = ds_llama_tensors(&c, &ti);
    ds_dtype *dt = malloc(sizeof *dt * (size_t)nt);
    for (int i = 0; i < nt; i++) dt[i] = mat;
    ds_llama m;
    ck_assert_int_eq(ds_llama_init_dtypes(&m, &c, dt), 0);
    ds_llama_randomize(&m, 7, 0.3f);
    /* a prefix of P tokens and NA continuations of 4, 1 and 6 tokens */
    const int len[NA] = {4, 1, 6};
    int prefix[P], cont[NA * TC], full[NA * (P + TC)];
    for (int j = 0; j < P; j++) prefix[j] = (j * 11 + 5) % V;
    for (int i = 0; i < NA; i++)
        for (int j = 0; j < TC; j++) {
            cont[i * TC + j] = j < len[i] ? (i * 13 + j * 7 + 2) % V : 0; /* 0: padding */
            full[i * (P + TC) + P + j] = cont[i * TC + j];
        }
    for (int i = 0; i < NA; i++) memcpy(full + i * (P + TC), prefix, sizeof prefix);
    ds_llama_act *ref = ds_llama_act_new(&m, NA, P + TC), *pre = ds_llama_act_new(&m, 1, P),
                 *a = ds_llama_act_new(&m, NA, TC);
    const float *zr = ds_llama_forward(&m, ref, full, NA, P + TC);
    float *zref = malloc(sizeof(float) * (size_t)NA * (P + TC) * V);
    memcpy(zref, zr, sizeof(float) * (size_t)NA * (P + TC) * V);

    /* no prefix, every row: bit for bit */
    int all[NA * (P + TC)];
    for (int r = 0; r < NA * (P + TC); r++) all[r] = r;
    const float *z = ds_llama_forward_rows(&m, ref, NULL, full, NA, P + TC, all, NA * (P + TC));
    ck_assert_msg(memcmp(z, zref, sizeof(float) * (size_t)NA * (P + TC) * V) == 0, "forward_rows != forward");

    /* the prefix's last row, then the continuations' scored rows */
    const int last = P - 1;
    z = ds_llama_forward_rows(&m, pre, NULL, prefix, 1, P, &last, 1);
    double worst = 0;
    for (int v = 0; v < V; v++) {
        const float want = zref[(size_t)last * V + v]; /* sequence 0's; all share the prefix */
        worst = fmax(worst, fabs(z[v] - want) / (1 + fabs(want)));
    }
    int rows[NA * TC], nr = 0;
    for (int i = 0; i < NA; i++)
        for (int j = 0; j < len[i]; j++) rows[nr++] = i * TC + j;
    z = ds_llama_forward_rows(&m, a, pre, cont, NA, TC, rows, nr);
    for (int r = 0; r < nr; r++) {
        const int i = rows[r] / TC, j = rows[r] % TC;
        const float *want = zref + ((size_t)i * (P + TC) + P + j) * V;
        for (int v = 0; v < V; v++) worst = fmax(worst, fabs(z[(size_t)r * V + v] - want[v]) / (1 + fabs(want[v])));
        /* the scored-row helper reads the same logits */
        const int t = (r * 3 + 1) % V;
        const double nll = ds_llama_row_nll(a, r, t);
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[(size_t)r * V + v]);
        for (int v = 0; v < V; v++) s += exp(z[(size_t)r * V + v] - mx);
        ck_assert_msg(fabs(nll - (mx + log(s) - z[(size_t)r * V + t])) < 1e-5, "row_nll");
    }
    ck_assert_msg(worst <= 1e-5, "tied %d dtype %d: prefix logits differ by %g", tied, (int)mat, worst);
    ds_llama_act_free(ref);
    ds_llama_act_free(pre);
    ds_llama_act_free(a);
    free(zref);
    ds_llama_free(&m);
    free(dt);
    free(ti);
}

START_TEST(test_prefix_f32) { run(0, DS_DTYPE_F32); run(1, DS_DTYPE_F32); }
END_TEST

START_TEST(test_prefix_bf16) { run(0, DS_DTYPE_BF16); run(1, DS_DTYPE_BF16); }
END_TEST

int main(void)
{
    Suite *s = suite_create("model_prefix");
    TCase *tc = ds_check_case(s, "prefix", 120);
    tcase_add_test(tc, test_prefix_f32);
    tcase_add_test(tc, test_prefix_bf16);
    return ds_check_run(s);
}
