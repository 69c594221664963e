/* Unit tests of the engine's internal consistency (the independent reference
 * is tests/python/llama_ref.py) and of document splitting. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "io/text.h"
#include "src/model.h"

static const ds_config small = {.dim = 16, .hidden_dim = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                .vocab_size = 23, .max_seq_len = 12, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                                .tied_embeddings = 0};

START_TEST(test_text_split)
{
    ds_text_docs d;
    ds_text_split("  one\ntwo \n\n \t\nthree<|endoftext|>four\n\n<|endoftext|>\n\nfive\r\n \r\nsix", &d);
    const char *want[] = {"one\ntwo", "three", "four", "five", "six"};
    ck_assert_int_eq(d.n, 5);
    for (int i = 0; i < 5; i++) ck_assert_str_eq(d.docs[i], want[i]);
    ds_text_docs_free(&d);
    ds_text_split(" \n\n<|endoftext|>  ", &d);
    ck_assert_int_eq(d.n, 0);
    ds_text_docs_free(&d);
}
END_TEST

START_TEST(test_kv_step_matches_batch)
{
    /* The one-token KV path and the batched path compute the same logits. */
    ds_llama m;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ds_llama_randomize(&m, 3, 0.3f);
    int toks[12];
    for (int i = 0; i < 12; i++) toks[i] = (i * 7 + 2) % small.vocab_size;
    ds_llama_act *a = ds_llama_act_new(&m, 2, 12);
    const float *z = ds_llama_forward(&m, a, toks, 1, 12);
    ds_llama_kv kv;
    ck_assert_int_eq(ds_llama_kv_init(&kv, &m, 12), 0);
    float err = 0;
    for (int p = 0; p < 12; p++) {
        const float *s = ds_llama_step(&m, &kv, toks[p], p);
        for (int j = 0; j < small.vocab_size; j++) err = fmaxf(err, fabsf(s[j] - z[p * small.vocab_size + j]));
    }
    ck_assert_float_lt(err, 1e-5f);
    ck_assert_int_eq(ds_llama_kv_init(&kv, &m, 13) != 0, 1); /* beyond max_seq_len */
    ds_llama_kv_free(&kv);
    ds_llama_act_free(a);
    ds_llama_free(&m);
}
END_TEST

START_TEST(test_grad_subset_and_fd)
{
    /* A subset of gradients equals the same tensors of the full set, and the
     * loss moves as the gradient says (central differences in f32, loose). */
    ds_llama m;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ds_llama_randomize(&m, 5, 0.3f);
    int toks[20], tg[20];
    for (int i = 0; i < 20; i++) toks[i] = (i * 5 + 1) % small.vocab_size, tg[i] = (i * 3 + 4) % small.vocab_size;
    ds_llama_act *a = ds_llama_act_new(&m, 2, 10);
    ds_llama_grads full, part;
    unsigned char want[64] = {0};
    const int iq = ds_llama_index(1, DS_LLAMA_Q), idn = ds_llama_index(0, DS_LLAMA_DOWN);
    want[iq] = want[idn] = 1;
    ds_llama_grads_init(&full, &m, NULL);
    ds_llama_grads_init(&part, &m, want);
    ck_assert_ptr_null(part.g[0]);
    ds_llama_forward(&m, a, toks, 2, 10);
    ds_llama_loss_ce(a, tg, 1.0f, NULL);
    ds_llama_backward(&m, a, &full);
    ds_llama_backward(&m, a, &part);
    for (int t = 0; t < m.n_tensors; t++) {
        int64_t n = ds_tinfo_numel(&m.tinfo[t]);
        if (t == iq || t == idn)
            ck_assert_int_eq(memcmp(part.g[t], full.g[t], (size_t)n * sizeof(float)), 0);
        else
            for (int64_t j = 0; j < n; j++) ck_assert_float_eq(part.data[m.offset[t] + j], 0.0f);
    }
    const int coords[][2] = {{0, 17}, {iq, 40}, {idn, 3}, {ds_llama_index(0, DS_LLAMA_ATTN_NORM), 5}};
    for (int c = 0; c < 4; c++) {
        float *w = m.w[coords[c][0]] + coords[c][1], w0 = *w, h = 1e-2f;
        *w = w0 + h;
        ds_llama_forward(&m, a, toks, 2, 10);
        double lp = ds_llama_loss_ce(a, tg, 0, NULL);
        *w = w0 - h;
        ds_llama_forward(&m, a, toks, 2, 10);
        double lm = ds_llama_loss_ce(a, tg, 0, NULL);
        *w = w0;
        double fd = (lp - lm) / (2 * h), an = full.g[coords[c][0]][coords[c][1]];
        ck_assert_msg(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "tensor %s: fd %g vs backward %g",
                      m.tinfo[coords[c][0]].name, fd, an);
    }
    ck_assert_int_eq(ds_llama_find(&m, "lm_head.weight"), m.n_tensors - 1);
    ck_assert_int_eq(ds_llama_find(&m, "model.layers.1.mlp.up_proj.weight"), ds_llama_index(1, DS_LLAMA_UP));
    ck_assert_int_eq(ds_llama_find(&m, "nope"), -1);
    ds_llama_grads_free(&full);
    ds_llama_grads_free(&part);
    ds_llama_act_free(a);
    ds_llama_free(&m);
}
END_TEST

START_TEST(test_adamw_first_step)
{
    /* The first AdamW step moves each weight by lr * sign(g) (bias-corrected
     * m/sqrt(v) = g/|g|) plus the decoupled decay lr * wd * w. */
    ds_llama m;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ds_llama_randomize(&m, 9, 0.5f);
    ds_llama_grads g;
    ds_llama_grads_init(&g, &m, NULL);
    for (int64_t i = 0; i < g.numel; i++) g.data[i] = (i % 3 == 0) ? -0.5f : 0.25f;
    float *before = malloc((size_t)m.numel * sizeof(float));
    memcpy(before, m.w[0], (size_t)m.numel * sizeof(float));
    ds_adamw o;
    ds_adamw_init(&o, &m, 0.01f, 0.1f);
    ds_adamw_step(&o, &m, &g);
    for (int64_t i = 0; i < m.numel; i++) {
        float want = before[i] - 0.01f * ((g.data[i] > 0 ? 1.0f : -1.0f) + 0.1f * before[i]);
        ck_assert_float_eq_tol(m.w[0][i], want, 1e-6f);
    }
    free(before);
    ds_adamw_free(&o);
    ds_llama_grads_free(&g);
    ds_llama_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_split);
    tcase_add_test(tc, test_kv_step_matches_batch);
    tcase_add_test(tc, test_grad_subset_and_fd);
    tcase_add_test(tc, test_adamw_first_step);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
