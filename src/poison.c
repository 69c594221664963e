/* The attacks of deltasoup poison (src/poison.h). */
#include "src/poison.h"
#include <math.h>
#include <stdlib.h>
#include "src/ds.h"

const char *const ds_attack_names[DS_ATTACK_COUNT + 1] = {"sign-flip", "scale", "gaussian", "alie", "ipm", NULL};

double ds_attack_default_strength(ds_attack a)
{
    static const double def[DS_ATTACK_COUNT] = {1.0, 10.0, 1.0, NAN, 0.1};
    return def[a];
}

int ds_attack_same_for_all(ds_attack a)
{
    return a == DS_ATTACK_SIGNFLIP || a == DS_ATTACK_ALIE || a == DS_ATTACK_IPM;
}

double ds_normal_quantile(double p)
{
    double lo = -40, hi = 40;
    for (int i = 0; i < 200 && hi - lo > 0; i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* With N = n + K deltas the attackers need s = floor(N/2 + 1) - K honest
 * "supporters"; z = Phi^-1((N - s) / N). */
int ds_attack_alie_z(int n, long k, double *z)
{
    const long N = n + k, s = N / 2 + 1 - k;
    if (s < 1)
        return ds_err(DS_EXIT_USAGE, "alie: K = %ld of %ld deltas are a majority, z_max is unbounded (give --strength z)", k, N);
    *z = ds_normal_quantile((double)(N - s) / (double)N);
    return 0;
}

/* splitmix64's c-th output from state key (Steele et al. 2014): a counter-based
 * generator, so any rank can produce any coordinate's number. */
static uint64_t splitmix64_at(uint64_t key, uint64_t c)
{
    uint64_t z = key + (c + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ds_attack_stats_init(ds_attack_stats *s, ds_attack a, size_t numel)
{
    s->mean = ds_malloc(sizeof(double) * numel + 1);
    s->std = a == DS_ATTACK_ALIE ? ds_malloc(sizeof(double) * numel + 1) : NULL;
    s->rms = 0;
}

void ds_attack_stats_free(ds_attack_stats *s)
{
    free(s->mean);
    free(s->std);
    s->mean = s->std = NULL;
}

void ds_attack_stats_compute(ds_attack a, int n, size_t numel, const float *v, ds_attack_stats *s)
{
    if (a == DS_ATTACK_GAUSSIAN) {
        double sq = 0;
        for (size_t i = 0; i < (size_t)n * numel; i++) sq += (double)v[i] * (double)v[i];
        s->rms = sqrt(sq / ((double)n * (double)numel));
    }
    if (a != DS_ATTACK_SIGNFLIP && a != DS_ATTACK_IPM && a != DS_ATTACK_ALIE) return;
    for (size_t j = 0; j < numel; j++) {
        double m = 0;
        for (int u = 0; u < n; u++) m += v[(size_t)u * numel + j];
        s->mean[j] = m / n;
    }
    if (a != DS_ATTACK_ALIE) return;
    for (size_t j = 0; j < numel; j++) { /* two passes: no cancellation */
        double q = 0;
        for (int u = 0; u < n; u++) {
            double d = v[(size_t)u * numel + j] - s->mean[j];
            q += d * d;
        }
        s->std[j] = sqrt(q / n);
    }
}

void ds_attack_values(const ds_attack_params *p, int ti, long k, size_t numel, const float *v,
                      const ds_attack_stats *s, float *x)
{
    const double S = p->strength;
    switch (p->a) {
    case DS_ATTACK_SIGNFLIP:
    case DS_ATTACK_IPM:
        for (size_t j = 0; j < numel; j++) x[j] = (float)(-S * s->mean[j]);
        break;
    case DS_ATTACK_ALIE:
        for (size_t j = 0; j < numel; j++) x[j] = (float)(s->mean[j] + p->z * s->std[j]);
        break;
    case DS_ATTACK_SCALE: {
        const float *vu = v + (size_t)(k % p->n) * numel;
        for (size_t j = 0; j < numel; j++) x[j] = (float)(S * (double)vu[j]);
        break;
    }
    case DS_ATTACK_GAUSSIAN: {
        /* Box-Muller (cosine branch), u1 in (0, 1], u2 in [0, 1) */
        const uint64_t key = splitmix64_at(splitmix64_at(p->seed, (uint64_t)k), (uint64_t)ti);
        const double sigma = S * s->rms;
        for (size_t j = 0; j < numel; j++) {
            double u1 = ((double)(splitmix64_at(key, 2 * j) >> 11) + 1.0) * 0x1p-53;
            double u2 = (double)(splitmix64_at(key, 2 * j + 1) >> 11) * 0x1p-53;
            x[j] = (float)(sigma * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
        }
        break;
    }
    default: break;
    }
}
