/* Unit tests of the engine's internal consistency (the independent reference
 * is tests/python/llama_ref.py) and of document splitting. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/text.h"
#include "src/model.h"
#include "src/gemm_w.h"
#include "kernels/cpu/dispatch.h"
#include "src/vexp.h"
#include "tests/unit/check_main.h"

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

START_TEST(test_forward_only_workspace)
{
    /* A forward-only workspace gives the training workspace's logits and
     * no-gradient losses bit for bit, over batches that reuse its single
     * layer of attention probabilities, and is smaller by the backward
     * buffers and all but one layer of those probabilities. */
    ds_llama m;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ds_llama_randomize(&m, 11, 0.3f);
    const int B = 2, T = 10, V = small.vocab_size;
    int toks[20], tg[20];
    for (int i = 0; i < B * T; i++) toks[i] = (i * 7 + 3) % V, tg[i] = i % 5 ? (i * 3 + 1) % V : -1;
    ds_llama_act *a = ds_llama_act_new(&m, B, T), *f = ds_llama_act_new_fwd(&m, B, T);
    for (int round = 0; round < 2; round++) {
        const int b = round ? B : 1, t = round ? T : T - 3;
        const float *za = ds_llama_forward(&m, a, toks, b, t);
        float *ref = malloc(sizeof(float) * (size_t)b * t * V);
        memcpy(ref, za, sizeof(float) * (size_t)b * t * V);
        const float *zf = ds_llama_forward(&m, f, toks, b, t);
        ck_assert_int_eq(memcmp(ref, zf, sizeof(float) * (size_t)b * t * V), 0);
        int64_t ca, cf;
        const double la = ds_llama_loss_ce(a, tg, 0.0f, &ca), lf = ds_llama_loss_ce(f, tg, 0.0f, &cf);
        ck_assert(la == lf && ca == cf);
        for (int i = 0; i < b * t * V; i++) ref[i] *= 0.9f; /* another distribution */
        ck_assert(ds_llama_loss_kl(a, ref, NULL, 0.0f, NULL) == ds_llama_loss_kl(f, ref, NULL, 0.0f, NULL));
        ck_assert(ds_llama_loss_mse(a, ref, NULL, 0.0f, NULL) == ds_llama_loss_mse(f, ref, NULL, 0.0f, NULL));
        free(ref);
    }
    /* saved: the backward buffers; (L - 1) layers of everything but the keys
     * and values, and L - 1 residual streams */
    const double H = small.n_heads, L = small.n_layers, N = B * T, Dm = small.dim, F = small.hidden_dim;
    const double KVD = Dm / H * small.n_kv_heads;
    const double saved = ds_llama_act_bytes(&small, B, T) - ds_llama_act_bytes_fwd(&small, B, T);
    const double bwd = N * V + 4 * N * Dm + 2 * N * KVD + 2 * N * F + (double)T * T;
    const double layer = 5 * N * Dm + 2 * N + 3 * N * F + B * H * T * T;
    ck_assert_double_eq_tol(saved, 4.0 * (bwd + (L - 1) * layer + (L - 1) * N * Dm), 0.5);
    ds_llama_act_free(a);
    ds_llama_act_free(f);
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

/* Loss of the last forward for loss kind k (0 CE, 1 KL, 2 MSE), summed over
 * the positions; grad_scale as in src/model.h. */
static double loss_of(ds_llama_act *a, int k, const int *tg, const float *ref, float grad_scale)
{
    if (k == 0) return ds_llama_loss_ce(a, tg, grad_scale, NULL);
    if (k == 1) return ds_llama_loss_kl(a, ref, NULL, grad_scale, NULL);
    return ds_llama_loss_mse(a, ref, NULL, grad_scale, NULL);
}

START_TEST(test_grad_every_tensor_fd)
{
    /* Every tensor's gradient, for each of the three losses, against central
     * differences along that tensor's gradient direction u = g / |g|: the
     * loss changes at rate <g, u> = |g|. One probe per tensor covers all its
     * coordinates at once and has a derivative large enough for f32
     * differences to resolve (relative error < 1e-3). */
    ds_llama m, ref;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ck_assert_int_eq(ds_llama_init(&ref, &small), 0);
    ds_llama_randomize(&m, 11, 0.3f);
    ds_llama_randomize(&ref, 12, 0.3f);
    int toks[20], tg[20];
    for (int i = 0; i < 20; i++) toks[i] = (i * 5 + 1) % small.vocab_size, tg[i] = (i * 3 + 4) % small.vocab_size;
    ds_llama_act *a = ds_llama_act_new(&m, 2, 10);
    const size_t nlog = (size_t)20 * (size_t)small.vocab_size;
    float *ref_logits = malloc(sizeof(float) * nlog);
    memcpy(ref_logits, ds_llama_forward(&ref, a, toks, 2, 10), sizeof(float) * nlog);
    const char *names[] = {"CE", "KL", "MSE"};
    for (int k = 0; k < 3; k++) {
        ds_llama_grads g;
        ds_llama_grads_init(&g, &m, NULL);
        ds_llama_forward(&m, a, toks, 2, 10);
        loss_of(a, k, tg, ref_logits, 1.0f);
        ds_llama_backward(&m, a, &g);
        for (int t = 0; t < m.n_tensors; t++) {
            const int64_t n = ds_tinfo_numel(&m.tinfo[t]);
            double norm = 0;
            for (int64_t j = 0; j < n; j++) norm += (double)g.g[t][j] * g.g[t][j];
            norm = sqrt(norm);
            ck_assert_msg(norm > 1e-4, "%s: tensor %s: gradient norm %g too small to probe", names[k], m.tinfo[t].name,
                          norm);
            float *w = m.w[t], *w0 = malloc(sizeof(float) * (size_t)n);
            memcpy(w0, w, sizeof(float) * (size_t)n);
            /* central differences at h and h/2, Richardson-combined: the
             * h^2 error term cancels, so h can stay large against f32 noise */
            const double h = 2e-2, step[4] = {h, -h, h / 2, -h / 2};
            double l[4];
            for (int p = 0; p < 4; p++) {
                for (int64_t j = 0; j < n; j++) w[j] = (float)(w0[j] + step[p] * g.g[t][j] / norm);
                ds_llama_forward(&m, a, toks, 2, 10);
                l[p] = loss_of(a, k, tg, ref_logits, 0);
            }
            memcpy(w, w0, sizeof(float) * (size_t)n);
            free(w0);
            const double fd = (4 * (l[2] - l[3]) / h - (l[0] - l[1]) / (2 * h)) / 3;
            ck_assert_msg(fabs(fd - norm) < 1e-3 * norm, "%s: tensor %s: central difference %.8g vs |g| %.8g (rel err %.2g)",
                          names[k], m.tinfo[t].name, fd, norm, fabs(fd - norm) / norm);
        }
        ds_llama_grads_free(&g);
    }
    free(ref_logits);
    ds_llama_act_free(a);
    ds_llama_free(&ref);
    ds_llama_free(&m);
}
END_TEST

START_TEST(test_vexp)
{
    /* The engine's exp against libm's exp in double over its whole range
     * (a 1.35 ulp worst case was seen; 2 ulp allowed); the 4- and 8-lane
     * forms bit for bit equal to the scalar one; the clamped ends finite;
     * sums, maxima, scaling and SiLU of arrays of every length up to 19
     * (steps and tails) equal across the two widths and right. */
    double worst = 0;
    for (long i = 0; i <= 2000000; i++) {
        const float x = -87.3f + (float)i * (88.3f + 87.3f) / 2000000.0f;
        const float a = ds_expf1(x);
        const double r = exp((double)x), e = fabs(a - r) / r;
        worst = e > worst ? e : worst;
        ds_v8f b = {x, -x, x * 0.5f, 0.0f, x * 0.25f, -x * 0.5f, x, -1.0f};
        ds_v4f c = {x, -x, x * 0.5f, 0.0f};
        ds_v8_exp(&b);
        ds_v4_exp(&c);
        const float want[8] = {a, ds_expf1(-x), ds_expf1(x * 0.5f), 1.0f, ds_expf1(x * 0.25f), ds_expf1(-x * 0.5f), a,
                               ds_expf1(-1.0f)};
        ck_assert_msg(memcmp(&b, want, sizeof want) == 0, "8 lanes differ from the scalar exp at x = %g", (double)x);
        ck_assert_msg(memcmp(&c, want, sizeof c) == 0, "4 lanes differ from the scalar exp at x = %g", (double)x);
    }
    ck_assert_msg(worst < 2.0 * 5.97e-8, "max relative error %g", worst);
    ck_assert(ds_expf1(0.0f) == 1.0f);
    ck_assert(isfinite(ds_expf1(1e4f)) && ds_expf1(1e4f) > 1e38f);
    ck_assert(ds_expf1(-1e4f) >= 0.0f && ds_expf1(-1e4f) < 1.2e-38f);
    for (int n = 1; n <= 19; n++) {
        float r4[19], r8[19];
        double s = 0;
        for (int j = 0; j < n; j++) r4[j] = r8[j] = (float)(j * 0.37 - 2.0), s += exp((double)r4[j] - 1.0);
        const float s4 = ds_v4_exp_sub_sum(r4, n, 1.0f), s8 = ds_v8_exp_sub_sum(r8, n, 1.0f);
        ck_assert_msg(fabs(s4 - s) < 1e-6 * s, "n %d: sum %g vs %g", n, (double)s4, s);
        ck_assert(s4 == s8);
        ck_assert_int_eq(memcmp(r4, r8, sizeof(float) * (size_t)n), 0);
        for (int j = 0; j < n; j++) ck_assert(r4[j] == ds_expf1((float)(j * 0.37 - 2.0) - 1.0f));
        for (int top = 0; top < n; top++) { /* the maximum at every position, in a step or the tail */
            float v[19], w[19], mx = -1e30f;
            for (int j = 0; j < n; j++) v[j] = w[j] = j == top ? 5.0f : (float)((j * 7) % 5) - 3.0f;
            for (int j = 0; j < n; j++) mx = v[j] > mx ? v[j] : mx;
            ck_assert(ds_v4_max(v, n) == mx && ds_v8_max(v, n) == mx);
            ds_v4_scale(v, n, 0.5f);
            ds_v8_scale(w, n, 0.5f);
            ck_assert(v[top] == 2.5f && memcmp(v, w, sizeof(float) * (size_t)n) == 0);
        }
    }
    float g[11] = {-30, -2, -0.5f, 0, 0.5f, 2, 30, -7, 7, 0.1f, -0.1f}, u[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    float o4[11], o8[11];
    ds_v4_silu_mul(o4, g, u, 11);
    ds_v8_silu_mul(o8, g, u, 11);
    ck_assert_int_eq(memcmp(o4, o8, sizeof o4), 0);
    for (int i = 0; i < 11; i++) {
        const double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        ck_assert_msg(fabs(o4[i] - want) <= 1e-6 * fabs(want) + 1e-30, "silu(%g) * %g = %g, want %g", (double)g[i],
                      (double)u[i], (double)o4[i], want);
    }
}
END_TEST

START_TEST(test_engine_twins)
{
    /* The engine's AVX2 loops (softmax, SiLU, log-softmax) against their
     * portable twins: logits, CE and KL losses, every gradient and the
     * KV-cached step bit for bit equal (T = 12 and V = 23: lanes and tails). */
    if (!ds_simd_supported(DS_SIMD_AVX2)) return; /* only the portable loops on this CPU */
    ds_llama m, ref;
    ck_assert_int_eq(ds_llama_init(&m, &small), 0);
    ck_assert_int_eq(ds_llama_init(&ref, &small), 0);
    ds_llama_randomize(&m, 21, 0.5f);
    ds_llama_randomize(&ref, 22, 0.5f);
    int toks[24], tg[24];
    for (int i = 0; i < 24; i++) toks[i] = (i * 7 + 3) % small.vocab_size, tg[i] = (i * 5 + 1) % small.vocab_size;
    ds_llama_act *a = ds_llama_act_new(&m, 2, 12);
    const size_t nl = (size_t)24 * (size_t)small.vocab_size;
    float *rl = malloc(sizeof(float) * nl), *z[2];
    memcpy(rl, ds_llama_forward(&ref, a, toks, 2, 12), sizeof(float) * nl);
    double ce[2], kl[2];
    ds_llama_grads g[2];
    float step[2][23];
    const ds_simd v[2] = {DS_SIMD_REF, DS_SIMD_AVX2};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(ds_simd_force(v[k]), 0);
        z[k] = malloc(sizeof(float) * nl);
        memcpy(z[k], ds_llama_forward(&m, a, toks, 2, 12), sizeof(float) * nl);
        ds_llama_grads_init(&g[k], &m, NULL);
        ce[k] = ds_llama_loss_ce(a, tg, 1.0f, NULL);
        ds_llama_backward(&m, a, &g[k]);
        kl[k] = ds_llama_loss_kl(a, rl, NULL, 1.0f, NULL);
        ds_llama_backward(&m, a, &g[k]);
        ds_llama_kv kv;
        ck_assert_int_eq(ds_llama_kv_init(&kv, &m, 12), 0);
        const float *s = NULL;
        for (int p = 0; p < 12; p++) s = ds_llama_step(&m, &kv, toks[p], p);
        memcpy(step[k], s, sizeof step[k]);
        ds_llama_kv_free(&kv);
    }
    ds_simd_force(ds_simd_best());
    ck_assert_int_eq(memcmp(z[0], z[1], sizeof(float) * nl), 0);
    ck_assert(ce[0] == ce[1] && kl[0] == kl[1]);
    ck_assert_int_eq(memcmp(g[0].data, g[1].data, sizeof(float) * (size_t)g[0].numel), 0);
    ck_assert_int_eq(memcmp(step[0], step[1], sizeof step[0]), 0);
    for (int k = 0; k < 2; k++) free(z[k]), ds_llama_grads_free(&g[k]);
    free(rl);
    ds_llama_act_free(a);
    ds_llama_free(&ref);
    ds_llama_free(&m);
}
END_TEST

/* The engine on f16/bf16 matrices against the f32 engine on the same
 * rounded weights (ds_llama_copy rounds, and converts back exactly):
 * logits of a batch (the panel + sgemm path: the same products, so within
 * a few f32 ulps of the logits' scale) and of the one-token path (the
 * direct kernel sums in another order), and the gradients through the
 * half-precision weights. The bound, documented in docs/model.md
 * "Numerics and kernels": |dz| <= 1e-5 * (1 + max |z|) for the logits,
 * 1e-4 relative to the largest gradient of a tensor. */
static const ds_config mid = {.dim = 64, .hidden_dim = 160, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                              .vocab_size = 97, .max_seq_len = 16, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                              .tied_embeddings = 0};

START_TEST(test_half_engine)
{
    const ds_dtype dts[2] = {DS_DTYPE_BF16, DS_DTYPE_F16};
    for (int d = 0; d < 2; d++)
        for (int tied = 0; tied <= 1; tied++) {
            ds_config c = mid;
            c.tied_embeddings = tied;
            ds_llama src, h, ref;
            ck_assert_int_eq(ds_llama_init(&src, &c), 0);
            ds_llama_randomize(&src, 11, 0.1f);
            ds_dtype *want = malloc(sizeof *want * (size_t)src.n_tensors);
            for (int i = 0; i < src.n_tensors; i++) want[i] = dts[d];
            ck_assert_int_eq(ds_llama_init_dtypes(&h, &c, want), 0);
            ck_assert_int_eq(ds_llama_init(&ref, &c), 0);
            ck_assert_int_eq(h.all_f32, 0);
            ds_llama_copy(&h, &src); /* rounded */
            ds_llama_copy(&ref, &h); /* exact */
            /* matrices take 2 bytes a parameter, norms 4 (plus alignment) */
            int64_t norms = 0;
            for (int i = 0; i < h.n_tensors; i++) {
                ck_assert_int_eq(h.tinfo[i].dtype, h.tinfo[i].ndim == 1 ? DS_DTYPE_F32 : dts[d]);
                ck_assert_int_eq(h.w[i] != NULL, h.tinfo[i].ndim == 1);
                if (h.tinfo[i].ndim == 1) norms += ds_tinfo_numel(&h.tinfo[i]);
            }
            ck_assert(h.bytes >= (size_t)(2 * h.numel + 2 * norms) && h.bytes <= (size_t)(2 * h.numel + 2 * norms) + 64 * (size_t)h.n_tensors);
            /* the same draws rounded: randomize on the half model gives h's weights */
            ds_llama h2;
            ck_assert_int_eq(ds_llama_init_like(&h2, &h), 0);
            ds_llama_randomize(&h2, 11, 0.1f);
            ck_assert_mem_eq(h2.data, h.data, h.bytes);
            ds_llama_free(&h2);

            const int B = 2, T = 16, N = B * T, V = c.vocab_size;
            int toks[32], tgt[32];
            for (int i = 0; i < N; i++) toks[i] = (i * 13 + 5) % V, tgt[i] = (i * 7 + 1) % V;
            ds_llama_act *ah = ds_llama_act_new(&h, B, T), *ar = ds_llama_act_new(&ref, B, T);
            const float *zh = ds_llama_forward(&h, ah, toks, B, T), *zr = ds_llama_forward(&ref, ar, toks, B, T);
            float zmax = 0, err = 0;
            for (int i = 0; i < N * V; i++) zmax = fmaxf(zmax, fabsf(zr[i])), err = fmaxf(err, fabsf(zh[i] - zr[i]));
            ck_assert_msg(err <= 1e-5f * (1 + zmax), "dtype %d tied %d: batch logits differ by %g (max %g)", d, tied,
                          (double)err, (double)zmax);
            /* the one-token path (direct kernel) against the f32 batch */
            ds_llama_kv kv;
            ck_assert_int_eq(ds_llama_kv_init(&kv, &h, T), 0);
            float err1 = 0;
            for (int p = 0; p < T; p++) {
                const float *sz = ds_llama_step(&h, &kv, toks[p], p);
                for (int j = 0; j < V; j++) err1 = fmaxf(err1, fabsf(sz[j] - zr[p * V + j]));
            }
            ck_assert_msg(err1 <= 1e-5f * (1 + zmax), "dtype %d tied %d: one-token logits differ by %g", d, tied,
                          (double)err1);
            /* a short batch (fewer than DS_GEMM_DIRECT_N rows: the direct
             * kernel) against the first positions of the f32 batch */
            float *zr5 = malloc(sizeof(float) * 5 * (size_t)V);
            memcpy(zr5, zr, sizeof(float) * 5 * (size_t)V);
            const float *z5 = ds_llama_forward(&h, ah, toks, 1, 5);
            float err5 = 0;
            for (int i = 0; i < 5 * V; i++) err5 = fmaxf(err5, fabsf(z5[i] - zr5[i]));
            free(zr5);
            ck_assert_msg(err5 <= 1e-5f * (1 + zmax), "short batch differs by %g", (double)err5);
            if (getenv("DS_TEST_VERBOSE"))
                fprintf(stderr, "half engine dtype %s tied %d: |z| <= %g, batch %g, one-token %g, short %g\n",
                        ds_dtype_name(dts[d]), tied, (double)zmax, (double)err, (double)err1, (double)err5);
            /* gradients through the half weights (and of them, in f32) */
            ds_llama_forward(&h, ah, toks, B, T);
            ds_llama_forward(&ref, ar, toks, B, T);
            ds_llama_grads gh, gr;
            ds_llama_grads_init(&gh, &h, NULL);
            ds_llama_grads_init(&gr, &ref, NULL);
            ds_llama_loss_ce(ah, tgt, 1.0f / N, NULL);
            ds_llama_loss_ce(ar, tgt, 1.0f / N, NULL);
            ds_llama_backward(&h, ah, &gh);
            ds_llama_backward(&ref, ar, &gr);
            for (int i = 0; i < h.n_tensors; i++) {
                const int64_t n = ds_tinfo_numel(&h.tinfo[i]);
                float gmax = 0, gerr = 0;
                for (int64_t j = 0; j < n; j++)
                    gmax = fmaxf(gmax, fabsf(gr.g[i][j])), gerr = fmaxf(gerr, fabsf(gh.g[i][j] - gr.g[i][j]));
                ck_assert_msg(gerr <= 1e-4f * gmax + 1e-12f, "tensor %s: gradient differs by %g (max %g)",
                              h.tinfo[i].name, (double)gerr, (double)gmax);
            }
            ds_llama_grads_free(&gh);
            ds_llama_grads_free(&gr);
            ds_llama_kv_free(&kv);
            ds_llama_act_free(ah);
            ds_llama_act_free(ar);
            free(want);
            ds_llama_free(&src);
            ds_llama_free(&h);
            ds_llama_free(&ref);
        }
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

/* The forward's work outside the products runs on the products' threads
 * above a size (src/model.c par_for: norms, RoPE, SiLU, copies, the
 * attention's softmax): the logits of a model large enough for every part
 * to be split (rows of 512, 8 heads of 64, 2 x 256 tokens; continuations
 * of 4 x 128 after a prefix of 128) are bit for bit the same on 1, 2 and 3
 * of these threads (ds_gemm_set_threads; OpenBLAS's own count, on which
 * its sgemm results depend, left as it is), with f32 weights and with bf16
 * ones in each product mode. */
static const ds_config wide = {.dim = 512, .hidden_dim = 1024, .n_layers = 2, .n_heads = 8, .n_kv_heads = 2,
                               .vocab_size = 128, .max_seq_len = 256, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                               .tied_embeddings = 0};

START_TEST(test_threads_bitwise)
{
    const int B = 2, T = 256, N = B * T, P = 128, NC = 4, TC = 128, V = wide.vocab_size;
    int *toks = malloc(sizeof *toks * (size_t)(P + NC * TC)), *rows = malloc(sizeof *rows * (size_t)(NC * TC));
    int last = P - 1;
    for (int i = 0; i < P + NC * TC; i++) toks[i] = (i * 37 + 11) % V;
    for (int i = 0; i < NC * TC; i++) rows[i] = i;
    for (int variant = 0; variant < 3; variant++) {
        ds_dtype *dts = NULL;
        ds_llama m;
        ck_assert_int_eq(ds_llama_init(&m, &wide), 0);
        if (variant > 0) {
            dts = malloc(sizeof *dts * (size_t)m.n_tensors);
            for (int i = 0; i < m.n_tensors; i++) dts[i] = DS_DTYPE_BF16;
            ds_llama_free(&m);
            ck_assert_int_eq(ds_llama_init_dtypes(&m, &wide, dts), 0);
        }
        if (variant == 2 && ds_gemm_set_mode(DS_GEMM_DP) != 0) {
            ds_llama_free(&m);
            free(dts);
            continue;
        }
        ds_llama_randomize(&m, 5, 0.05f);
        /* a workspace per thread count: nothing left from another run */
        ds_llama_act *a[3], *pre[3], *c[3];
        const float *z[3], *zc[3];
        for (int th = 1; th <= 3; th++) {
            ds_gemm_set_threads(th);
            a[th - 1] = ds_llama_act_new(&m, B, T);
            pre[th - 1] = ds_llama_act_new_fwd(&m, 1, P);
            c[th - 1] = ds_llama_act_new_fwd(&m, NC, TC);
            z[th - 1] = ds_llama_forward(&m, a[th - 1], toks, B, T);
            ds_llama_forward_rows(&m, pre[th - 1], NULL, toks, 1, P, &last, 1);
            zc[th - 1] = ds_llama_forward_rows(&m, c[th - 1], pre[th - 1], toks + P, NC, TC, rows, NC * TC);
        }
        for (int th = 2; th <= 3; th++) {
            ck_assert_msg(memcmp(z[0], z[th - 1], sizeof(float) * (size_t)N * V) == 0,
                          "variant %d: forward at %d threads", variant, th);
            ck_assert_msg(memcmp(zc[0], zc[th - 1], sizeof(float) * (size_t)NC * TC * V) == 0,
                          "variant %d: continuations at %d threads", variant, th);
        }
        ds_gemm_set_threads(0);
        ds_gemm_set_mode(DS_GEMM_EXACT);
        for (int i = 0; i < 3; i++) ds_llama_act_free(a[i]), ds_llama_act_free(pre[i]), ds_llama_act_free(c[i]);
        ds_llama_free(&m);
        free(dts);
    }
    free(toks), free(rows);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    tcase_add_test(ds_check_case(s, "text", 60), test_text_split);
    tcase_add_test(ds_check_case(s, "kv-cache", 60), test_kv_step_matches_batch);
    tcase_add_test(ds_check_case(s, "forward-only", 60), test_forward_only_workspace);
    TCase *grad = ds_check_case(s, "grad", 60);
    tcase_add_test(grad, test_grad_subset_and_fd);
    tcase_add_test(grad, test_grad_every_tensor_fd);
    tcase_add_test(ds_check_case(s, "vexp", 60), test_vexp);
    tcase_add_test(ds_check_case(s, "twins", 60), test_engine_twins);
    tcase_add_test(ds_check_case(s, "adamw", 60), test_adamw_first_step);
    tcase_add_test(ds_check_case(s, "half", 60), test_half_engine);
    tcase_add_test(ds_check_case(s, "threads", 120), test_threads_bitwise);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_ENV);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
