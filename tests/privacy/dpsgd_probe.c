/* Test driver of src/dp_sgd.h for the independent reference in
 * tests/python/dpsgd_ref.py (no deltasoup I/O between the two: weights come
 * as the raw file of tests/model/model_probe.c, written by the reference).
 *
 *   dpsgd_probe clip W.raw STREAM T C OUT I...
 *       STREAM: int32 tokens; the examples I... (windows of T + 1 tokens at
 *       I * T) through ds_dp_clip_accumulate with clip norm C, no noise.
 *       OUT: float64 norms [n], then the clipped sum [numel] (engine order)
 *       as the accumulator holds it (units * quantum).
 *   dpsgd_probe noise SEED STEPS NUMEL SIGMA C B OUT
 *       the gradient of STEPS steps with no example: ds_dp_accum_noise over
 *       [0, NUMEL) then ds_dp_accum_result / B; OUT: float32 [STEPS, NUMEL].
 *       Exit 1 when drawing the noise in three slices (as three ranks do)
 *       gives other units than one slice.
 *   dpsgd_probe draws SEED STEP N Q OUT
 *       float64 ds_dp_normal(SEED, STEP, j) and ds_dp_sample_uniform(SEED,
 *       STEP, j) for j < N, then int64 count and the indices of
 *       ds_dp_sample(SEED, STEP, N, Q). */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "src/dp_sgd.h"

static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(3); }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)len + 1);
    if (fread(p, 1, (size_t)len, f) != (size_t)len) { fprintf(stderr, "%s: short read\n", path); exit(3); }
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void load_raw(const char *path, ds_llama *m)
{
    size_t n;
    unsigned char *b = slurp(path, &n);
    int32_t h[8];
    double e[2];
    memcpy(h, b, sizeof h);
    memcpy(e, b + sizeof h, sizeof e);
    ds_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                   .vocab_size = h[5], .max_seq_len = h[6], .norm_eps = (float)e[0], .rope_theta = (float)e[1],
                   .tied_embeddings = h[7]};
    if (ds_llama_init(m, &c)) { fprintf(stderr, "dpsgd_probe: %s\n", ds_errmsg()); exit(3); }
    if (n != sizeof h + sizeof e + 4 * (size_t)m->numel) { fprintf(stderr, "%s: wrong size\n", path); exit(3); }
    memcpy(m->w[0], b + sizeof h + sizeof e, 4 * (size_t)m->numel);
    free(b);
}

static void put(FILE *f, const void *p, size_t sz, size_t n)
{
    if (fwrite(p, sz, n, f) != n) { perror("dpsgd_probe: write"); exit(4); }
}

static int clip(int argc, char **argv)
{
    ds_llama m;
    load_raw(argv[2], &m);
    size_t bytes;
    int *stream = slurp(argv[3], &bytes);
    const int T = atoi(argv[4]);
    const double C = atof(argv[5]);
    const int64_t n = argc - 7;
    int64_t *idx = malloc(sizeof *idx * (size_t)(n + 1));
    for (int64_t k = 0; k < n; k++) {
        idx[k] = atoll(argv[7 + k]);
        if ((idx[k] + 1) * T + 1 > (int64_t)(bytes / 4)) { fprintf(stderr, "example %lld out of the stream\n", (long long)idx[k]); return 2; }
    }
    ds_llama_act *a = ds_llama_act_new(&m, 1, T);
    ds_llama_grads g;
    ds_llama_grads_init(&g, &m, NULL);
    ds_dp_accum acc;
    ds_dp_accum_init(&acc, g.numel, C, 0, n);
    double *norms = malloc(sizeof *norms * (size_t)(n + 1)), loss;
    ds_dp_clip_accumulate(&m, a, &g, &acc, stream, idx, n, T, C, norms, &loss);
    FILE *f = fopen(argv[6], "wb");
    if (!f) { perror(argv[6]); return 4; }
    put(f, norms, sizeof *norms, (size_t)n);
    for (int64_t j = 0; j < acc.numel; j++) {
        double v = (double)acc.acc[j] * acc.quantum;
        put(f, &v, sizeof v, 1);
    }
    fclose(f);
    ds_dp_accum_free(&acc);
    ds_llama_grads_free(&g);
    ds_llama_act_free(a);
    ds_llama_free(&m);
    free(norms);
    free(idx);
    free(stream);
    return 0;
}

static int noise(char **argv)
{
    const uint64_t seed = strtoull(argv[2], NULL, 10);
    const int steps = atoi(argv[3]);
    const int64_t numel = atoll(argv[4]);
    const double sigma = atof(argv[5]), C = atof(argv[6]), B = atof(argv[7]);
    ds_dp_accum a, b;
    ds_dp_accum_init(&a, numel, C, sigma, 1000);
    ds_dp_accum_init(&b, numel, C, sigma, 1000);
    float *out = malloc(sizeof *out * (size_t)numel);
    FILE *f = fopen(argv[8], "wb");
    if (!f) { perror(argv[8]); return 4; }
    int bad = 0;
    for (int s = 1; s <= steps; s++) {
        ds_dp_accum_zero(&a);
        ds_dp_accum_zero(&b);
        ds_dp_accum_noise(&a, seed, s, sigma, C, 0, numel);
        ds_dp_accum_noise(&b, seed, s, sigma, C, 0, numel / 3);
        ds_dp_accum_noise(&b, seed, s, sigma, C, numel / 3, 2 * numel / 3);
        ds_dp_accum_noise(&b, seed, s, sigma, C, 2 * numel / 3, numel);
        bad |= memcmp(a.acc, b.acc, sizeof *a.acc * (size_t)numel) != 0;
        ds_dp_accum_result(&a, B, out);
        put(f, out, sizeof *out, (size_t)numel);
    }
    fclose(f);
    ds_dp_accum_free(&a);
    ds_dp_accum_free(&b);
    free(out);
    if (bad) fprintf(stderr, "dpsgd_probe: noise drawn in slices differs from one draw\n");
    return bad;
}

static int draws(char **argv)
{
    const uint64_t seed = strtoull(argv[2], NULL, 10);
    const int64_t step = atoll(argv[3]), n = atoll(argv[4]);
    const double q = atof(argv[5]);
    FILE *f = fopen(argv[6], "wb");
    if (!f) { perror(argv[6]); return 4; }
    for (int64_t j = 0; j < n; j++) {
        double v = ds_dp_normal(seed, step, (uint64_t)j);
        put(f, &v, sizeof v, 1);
    }
    for (int64_t j = 0; j < n; j++) {
        double v = ds_dp_sample_uniform(seed, step, (uint64_t)j);
        put(f, &v, sizeof v, 1);
    }
    int64_t *idx = malloc(sizeof *idx * (size_t)(n + 1));
    int64_t c = ds_dp_sample(seed, step, n, q, idx);
    put(f, &c, sizeof c, 1);
    put(f, idx, sizeof *idx, (size_t)c);
    fclose(f);
    free(idx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 8 && strcmp(argv[1], "clip") == 0) return clip(argc, argv);
    if (argc == 9 && strcmp(argv[1], "noise") == 0) return noise(argv);
    if (argc == 7 && strcmp(argv[1], "draws") == 0) return draws(argv);
    fprintf(stderr, "usage: dpsgd_probe clip W STREAM T C OUT I... | noise SEED STEPS NUMEL SIGMA C B OUT | "
                    "draws SEED STEP N Q OUT\n");
    return 2;
}
