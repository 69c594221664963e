/* Test driver of the model engine for the independent references in
 * tests/python/llama_ref.py. Weights come from a raw file written by the
 * reference (so that no deltasoup I/O code stands between the two):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 *         max_seq_len, tied_embeddings; float64 norm_eps, rope_theta;
 *   then every tensor in the engine's order (src/model.h), float32 LE.
 * Batches: int32 B, T, tokens[B*T], targets[B*T] (float32 ref logits
 * [B*T, vocab] follow for the kl and mse losses).
 *
 *   model_probe forward W BATCH OUT      logits float32 [B*T, vocab]
 *   model_probe grads W BATCH ce|kl|mse OUT
 *                                       float64 loss, then dL/dW of every
 *                                       tensor (float32, engine order) for
 *                                       the mean loss over counted positions
 *   model_probe generate W N TOK...      greedy N tokens after the prompt
 *                                       (KV cache), one id per line
 *   model_probe forward-h5 M.h5 BATCH OUT
 *                                       logits of a checkpoint loaded by
 *                                       deltasoup's own reader (io/model_io.h),
 *                                       config attributes (rope scaling) included */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include "io/model_io.h"
#include "src/model.h"

static void rd(FILE *f, void *p, size_t sz, size_t n, const char *path)
{
    if (fread(p, sz, n, f) != n) {
        fprintf(stderr, "model_probe: %s: truncated\n", path);
        exit(3);
    }
}

static void load_raw(const char *path, ds_llama *m)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(3); }
    int32_t h[8];
    double e[2];
    rd(f, h, 4, 8, path);
    rd(f, e, 8, 2, path);
    ds_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                   .vocab_size = h[5], .max_seq_len = h[6], .norm_eps = (float)e[0], .rope_theta = (float)e[1],
                   .tied_embeddings = h[7]};
    if (ds_llama_init(m, &c)) { fprintf(stderr, "model_probe: %s\n", ds_errmsg()); exit(3); }
    rd(f, m->w[0], 4, (size_t)m->numel, path);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: model_probe forward|grads|generate ...\n");
        return 2;
    }
    ds_llama m;
    const int h5 = strcmp(argv[1], "forward-h5") == 0;
    if (h5) {
        MPI_Init(&argc, &argv);
        ds_ctx ctx = {.comm = MPI_COMM_WORLD, .rank = 0, .size = 1, .quiet = 1, .job = "model_probe"};
        if (ds_llama_load_path(&ctx, argv[2], &m, NULL, NULL)) {
            fprintf(stderr, "model_probe: %s\n", ds_errmsg());
            return 3;
        }
    } else {
        load_raw(argv[2], &m);
    }
    const int V = m.cfg.vocab_size;
    if (strcmp(argv[1], "generate") == 0) {
        int n_new = atoi(argv[3]), n_prompt = argc - 4;
        ds_llama_kv kv;
        if (ds_llama_kv_init(&kv, &m, n_prompt + n_new)) { fprintf(stderr, "%s\n", ds_errmsg()); return 2; }
        int tok = atoi(argv[4]);
        for (int pos = 0; pos < n_prompt + n_new - 1; pos++) {
            const float *z = ds_llama_step(&m, &kv, tok, pos);
            if (pos + 1 < n_prompt) {
                tok = atoi(argv[5 + pos]);
                continue;
            }
            int best = 0;
            for (int j = 1; j < V; j++) best = z[j] > z[best] ? j : best;
            tok = best;
            printf("%d\n", tok);
        }
        ds_llama_kv_free(&kv);
        ds_llama_free(&m);
        return 0;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror(argv[3]); return 3; }
    int32_t bt[2];
    rd(f, bt, 4, 2, argv[3]);
    const int B = bt[0], T = bt[1], N = B * T;
    int *tok = malloc((size_t)N * sizeof(int)), *tgt = malloc((size_t)N * sizeof(int));
    rd(f, tok, 4, (size_t)N, argv[3]);
    rd(f, tgt, 4, (size_t)N, argv[3]);
    ds_llama_act *a = ds_llama_act_new(&m, B, T);
    const float *logits = ds_llama_forward(&m, a, tok, B, T);
    FILE *o;
    if (strcmp(argv[1], "forward") == 0 || h5) {
        o = fopen(argv[4], "wb");
        fwrite(logits, sizeof(float), (size_t)N * V, o);
    } else {
        const char *loss = argv[4];
        float *ref = NULL;
        if (strcmp(loss, "ce") != 0) {
            ref = malloc((size_t)N * V * sizeof(float));
            rd(f, ref, 4, (size_t)N * V, argv[3]);
        }
        unsigned char *mask = malloc((size_t)N);
        int64_t cnt = 0;
        for (int n = 0; n < N; n++) cnt += (mask[n] = tgt[n] >= 0);
        double l;
        if (strcmp(loss, "ce") == 0) l = ds_llama_loss_ce(a, tgt, 1.0f / (float)cnt, NULL);
        else if (strcmp(loss, "kl") == 0) l = ds_llama_loss_kl(a, ref, mask, 1.0f / (float)cnt, NULL);
        else l = ds_llama_loss_mse(a, ref, mask, 1.0f / (float)cnt, NULL);
        l /= (double)cnt;
        ds_llama_grads g;
        ds_llama_grads_init(&g, &m, NULL);
        ds_llama_backward(&m, a, &g);
        o = fopen(argv[5], "wb");
        fwrite(&l, sizeof l, 1, o);
        fwrite(g.data, sizeof(float), (size_t)g.numel, o);
        ds_llama_grads_free(&g);
        free(ref);
        free(mask);
    }
    fclose(o);
    fclose(f);
    free(tok);
    free(tgt);
    ds_llama_act_free(a);
    ds_llama_free(&m);
    if (h5) MPI_Finalize();
    return 0;
}
