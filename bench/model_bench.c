/* Engine throughput: forward+backward tokens/s on a batch, and KV-cached
 * generation tokens/s, for a config given on the command line.
 *   model_bench DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB SEQ TIED B T ITERS GEN_TOKENS THREADS [DTYPE [prefill]]
 * DTYPE f32 (default), bf16 or f16: the matrices held in that precision
 * (docs/model.md "Numerics and kernels"; the gradients stay f32).
 * prefill: forward only (no gradients allocated, no generation): tokens/s
 * (the best of ITERS forwards after a warm-up; bf16 products in the mode of
 * src/gemm_w.h, DS_GEMM_BF16=dp for vdpbf16ps, printed as gemm=),
 * the GFLOP/s of its matrix products (2 x matrix parameters x tokens, plus
 * the causal attention's 2 x 2 x T^2/2 x dim per layer and sequence), and
 * the sgemm peak measured here (OpenBLAS, 2048^3, the same threads), and
 * tokens per CPU-second of the process (all threads: a figure that time
 * slices taken by other jobs on a shared machine do not lower; threads that
 * spin while waiting raise the CPU time).
 * Prints one line of key=value. Random weights: speed does not depend on them. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "src/gemm_w.h"
#include "src/model.h"

/* sgemm GFLOP/s on 2048^3 (best of 3), with the threads already set */
static double sgemm_peak(void)
{
    const int n = 2048;
    float *x = calloc((size_t)n * n, sizeof *x), *y = calloc((size_t)n * n, sizeof *y),
          *z = calloc((size_t)n * n, sizeof *z);
    for (size_t i = 0; i < (size_t)n * n; i++) x[i] = y[i] = (float)(i % 7) * 0.1f;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        const double t0 = ds_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, x, n, y, n, 0.0f, z, n);
        const double g = 2.0 * n * n * n / (ds_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(x), free(y), free(z);
    return best;
}

/* CPU seconds of the whole process (all its threads) */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int prefill(ds_llama *m, ds_llama_act *a, int B, int T, int iters, ds_dtype dt)
{
    const ds_config *c = &m->cfg;
    int *tok = malloc((size_t)B * T * sizeof *tok);
    ds_rng r = {7};
    for (int i = 0; i < B * T; i++) tok[i] = (int)(ds_rng_u64(&r) % (uint64_t)c->vocab_size);
    double sec = 1e30, cpu = 1e30;
    for (int it = -1; it < iters; it++) { /* one warm-up, then the best of iters */
        const double t0 = ds_now(), c0 = cpu_now();
        ds_llama_forward(m, a, tok, B, T);
        const double t = ds_now() - t0, c = cpu_now() - c0;
        if (it >= 0 && t < sec) sec = t;
        if (it >= 0 && c < cpu) cpu = c;
    }
    /* matrix parameters: every layer's seven, and the head */
    const double D = c->dim, F = c->hidden_dim, KVD = D / c->n_heads * c->n_kv_heads, L = c->n_layers;
    const double mat = L * (2 * D * D + 2 * D * KVD + 3 * D * F) + (double)c->vocab_size * D;
    const double flop = 2.0 * mat * B * T + L * B * 2.0 * (double)T * T * D;
    printf("dtype=%s gemm=%s weight_mib=%.1f params=%lld prefill_tokens_per_s=%.1f gflops=%.1f sgemm_peak_gflops=%.1f "
           "tokens_per_cpu_s=%.1f peak_rss_mib=%.1f\n",
           ds_dtype_name(dt), dt == DS_DTYPE_BF16 ? ds_gemm_mode_name(ds_gemm_get_mode()) : "-",
           (double)m->bytes / 1048576.0, (long long)m->numel, B * T / sec, flop / sec / 1e9, sgemm_peak(),
           B * T / cpu, ds_peak_rss() / 1048576.0);
    free(tok);
    ds_llama_act_free(a);
    ds_llama_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 14 || argc > 16 || (argc == 16 && strcmp(argv[15], "prefill") != 0)) {
        fprintf(stderr,
                "usage: model_bench DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB SEQ TIED B T ITERS GEN THREADS [DTYPE [prefill]]\n");
        return 2;
    }
    ds_dtype dt = DS_DTYPE_F32;
    if (argc >= 15) {
        if (strcmp(argv[14], "bf16") == 0) dt = DS_DTYPE_BF16;
        else if (strcmp(argv[14], "f16") == 0) dt = DS_DTYPE_F16;
        else if (strcmp(argv[14], "f32") != 0) {
            fprintf(stderr, "model_bench: DTYPE %s is not f32, bf16 or f16\n", argv[14]);
            return 2;
        }
    }
    int v[13];
    for (int i = 0; i < 13; i++) v[i] = atoi(argv[i + 1]);
    ds_config c = {.dim = v[0], .hidden_dim = v[1], .n_layers = v[2], .n_heads = v[3], .n_kv_heads = v[4],
                   .vocab_size = v[5], .max_seq_len = v[6], .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                   .tied_embeddings = v[7]};
    const int B = v[8], T = v[9], iters = v[10], gen = v[11];
    ds_llama_set_threads(v[12]);
    ds_llama m;
    ds_dtype *dts = malloc(sizeof *dts * (size_t)(3 + DS_LLAMA_ROLES * c.n_layers));
    for (int i = 0; i < 3 + DS_LLAMA_ROLES * c.n_layers; i++) dts[i] = dt;
    if (ds_llama_init_dtypes(&m, &c, dts)) {
        fprintf(stderr, "model_bench: %s\n", ds_errmsg());
        return 2;
    }
    free(dts);
    ds_llama_randomize(&m, 1, 0.02f);
    ds_llama_act *a = ds_llama_act_new(&m, B, T);
    if (argc == 16) return prefill(&m, a, B, T, iters, dt);
    ds_llama_grads g;
    ds_llama_grads_init(&g, &m, NULL);
    int *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    ds_rng r = {7};
    for (int i = 0; i < B * T; i++) tok[i] = (int)(ds_rng_u64(&r) % (uint64_t)c.vocab_size);
    for (int i = 0; i < B * T; i++) tgt[i] = (int)(ds_rng_u64(&r) % (uint64_t)c.vocab_size);
    double t0 = 0;
    for (int it = -2; it < iters; it++) { /* two warm-up iterations */
        if (it == 0) t0 = ds_now();
        ds_llama_grads_zero(&g);
        ds_llama_forward(&m, a, tok, B, T);
        ds_llama_loss_ce(a, tgt, 1.0f / (B * T), NULL);
        ds_llama_backward(&m, a, &g);
    }
    double fb = (double)iters * B * T / (ds_now() - t0);
    ds_llama_kv kv;
    ds_llama_kv_init(&kv, &m, gen);
    t0 = ds_now();
    int t = 1;
    for (int p = 0; p < gen; p++) {
        const float *z = ds_llama_step(&m, &kv, t, p);
        int best = 0;
        for (int j = 1; j < c.vocab_size; j++) best = z[j] > z[best] ? j : best;
        t = best;
    }
    double gs = gen / (ds_now() - t0);
    printf("dtype=%s weight_mib=%.1f params=%lld fwd_bwd_tokens_per_s=%.1f gen_tokens_per_s=%.1f peak_rss_mib=%.1f\n",
           ds_dtype_name(dt), (double)m.bytes / 1048576.0, (long long)m.numel, fb, gs, ds_peak_rss() / 1048576.0);
    ds_llama_kv_free(&kv);
    free(tok);
    free(tgt);
    ds_llama_grads_free(&g);
    ds_llama_act_free(a);
    ds_llama_free(&m);
    return 0;
}
