/* Engine throughput: forward+backward tokens/s on a batch, and KV-cached
 * generation tokens/s, for a config given on the command line.
 *   model_bench DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB SEQ TIED B T ITERS GEN_TOKENS THREADS [DTYPE]
 * DTYPE f32 (default), bf16 or f16: the matrices held in that precision
 * (docs/model.md "Numerics and kernels"; the gradients stay f32).
 * Prints one line of key=value. Random weights: speed does not depend on them. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/model.h"

int main(int argc, char **argv)
{
    if (argc != 14 && argc != 15) {
        fprintf(stderr, "usage: model_bench DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB SEQ TIED B T ITERS GEN THREADS [DTYPE]\n");
        return 2;
    }
    ds_dtype dt = DS_DTYPE_F32;
    if (argc == 15) {
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
