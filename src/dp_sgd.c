/* DP-SGD: sampling, clipping, fixed-point sum and noise (src/dp_sgd.h,
 * docs/privacy.md). */
#include "config.h"
#include "src/dp_sgd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64's c-th output from state k (Steele et al. 2014). */
static uint64_t mix(uint64_t k, uint64_t c)
{
    uint64_t z = k + (c + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t key(uint64_t seed, int64_t step, uint64_t domain) { return mix(mix(seed, domain), (uint64_t)step); }

double ds_dp_sample_uniform(uint64_t seed, int64_t step, uint64_t i)
{
    return (double)(mix(key(seed, step, 1), i) >> 11) * 0x1p-53;
}

static double normal_k(uint64_t k, uint64_t j)
{
    double u1 = ((double)(mix(k, 2 * j) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(mix(k, 2 * j + 1) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double ds_dp_normal(uint64_t seed, int64_t step, uint64_t j) { return normal_k(key(seed, step, 2), j); }

int64_t ds_dp_sample(uint64_t seed, int64_t step, int64_t n_examples, double q, int64_t *idx)
{
    const uint64_t k = key(seed, step, 1);
    int64_t n = 0;
    for (int64_t i = 0; i < n_examples; i++)
        if ((double)(mix(k, (uint64_t)i) >> 11) * 0x1p-53 < q) idx[n++] = i;
    return n;
}

void ds_dp_accum_init(ds_dp_accum *a, int64_t numel, double clip, double sigma, int64_t max_examples)
{
    int k = 40;
    while (k > 1 && ldexp((double)max_examples + 9.0 * sigma + 1.0, k) > 0x1p61) k--;
    a->numel = numel;
    a->acc = ds_calloc((size_t)(numel > 0 ? numel : 1), sizeof *a->acc);
    a->quantum = ldexp(clip, -k);
}

void ds_dp_accum_zero(ds_dp_accum *a) { memset(a->acc, 0, sizeof *a->acc * (size_t)a->numel); }

void ds_dp_accum_free(ds_dp_accum *a)
{
    free(a->acc);
    a->acc = NULL;
}

double ds_dp_norm(const float *g, int64_t numel)
{
    double s = 0;
    for (int64_t j = 0; j < numel; j++) s += (double)g[j] * g[j];
    return sqrt(s);
}

double ds_dp_clip_factor(double norm, double clip)
{
    double f = clip / (norm + 1e-6);
    return f < 1 ? f : 1;
}

void ds_dp_accum_add(ds_dp_accum *a, const float *g, double factor)
{
    const double s = factor / a->quantum;
    int64_t *acc = a->acc;
    for (int64_t j = 0; j < a->numel; j++) acc[j] += (int64_t)nearbyint(s * (double)g[j]);
}

void ds_dp_accum_noise(ds_dp_accum *a, uint64_t seed, int64_t step, double sigma, double clip, int64_t lo, int64_t hi)
{
    const uint64_t k = key(seed, step, 2);
    const double s = sigma * clip / a->quantum;
    for (int64_t j = lo; j < hi; j++) a->acc[j] += (int64_t)nearbyint(s * normal_k(k, (uint64_t)j));
}

void ds_dp_accum_result(const ds_dp_accum *a, double expected_batch, float *out)
{
    const double s = a->quantum / expected_batch;
    for (int64_t j = 0; j < a->numel; j++) out[j] = (float)((double)a->acc[j] * s);
}

void ds_dp_clip_accumulate(const ds_llama *m, ds_llama_act *act, ds_llama_grads *g, ds_dp_accum *a,
                           const int *stream, const int64_t *idx, int64_t n, int T, double clip, double *norms,
                           double *loss_sum)
{
    double ls = 0;
    for (int64_t k = 0; k < n; k++) {
        const int *w = stream + idx[k] * T; /* inputs w[0..T-1], targets w[1..T] */
        ds_llama_grads_zero(g);
        ds_llama_forward(m, act, w, 1, T);
        ls += ds_llama_loss_ce(act, w + 1, 1.0f / (float)T, NULL) / T;
        ds_llama_backward(m, act, g);
        const double norm = ds_dp_norm(g->data, g->numel);
        if (norms) norms[k] = norm;
        if (!isfinite(norm)) {
            ls = NAN;
            continue;
        }
        ds_dp_accum_add(a, g->data, ds_dp_clip_factor(norm, clip));
    }
    *loss_sum = ls;
}
