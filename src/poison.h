/* The attacks of `deltasoup poison` (docs/poison.md), pure math: per
 * coordinate, from the n honest values v_u of one tensor (float32, u-major:
 * v[u * numel + j]), the values of the poisoned deltas. Every value depends
 * on the tensor, the coordinate and the parameters only (the gaussian noise
 * is a counter-based hash of (seed, k, tensor, coordinate)), so the results
 * do not depend on how tensors are shared out over ranks. */
#ifndef DS_POISON_H
#define DS_POISON_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DS_ATTACK_SIGNFLIP, DS_ATTACK_SCALE, DS_ATTACK_GAUSSIAN, DS_ATTACK_ALIE, DS_ATTACK_IPM, DS_ATTACK_COUNT } ds_attack;
/* "sign-flip", "scale", "gaussian", "alie", "ipm", NULL (ds_attack order) */
extern const char *const ds_attack_names[DS_ATTACK_COUNT + 1];
/* The strength S when none is given: 1, 10, 1, NAN (alie: z_max, ds_attack_alie_z), 0.1. */
double ds_attack_default_strength(ds_attack a);
/* sign-flip, alie, ipm: every poisoned delta k gets the same values. */
int ds_attack_same_for_all(ds_attack a);

/* Phi^-1(p) for 0 < p < 1, by bisection on Phi(z) = erfc(-z / sqrt 2) / 2:
 * exact to a few ulps, and the same on every machine with a correct erfc. */
double ds_normal_quantile(double p);
/* ALIE's z_max (Baruch et al. 2019) for n honest and k poisoned deltas, or
 * DS_EXIT_USAGE when the k are a majority (z unbounded). */
int ds_attack_alie_z(int n, long k, double *z);

/* Per-coordinate statistics of one tensor over the n honest deltas. */
typedef struct {
    double *mean, *std; /* numel each: sign-flip, ipm, alie (mean); alie (std) */
    double rms;         /* gaussian: sqrt(mean of v^2) over all users and coordinates */
} ds_attack_stats;
/* Allocate what attack a needs for numel coordinates; free with ds_attack_stats_free. */
void ds_attack_stats_init(ds_attack_stats *s, ds_attack a, size_t numel);
void ds_attack_stats_free(ds_attack_stats *s);
void ds_attack_stats_compute(ds_attack a, int n, size_t numel, const float *v, ds_attack_stats *s);

typedef struct {
    ds_attack a;
    double strength; /* S (alie: unused, see z) */
    double z;        /* alie's z */
    uint64_t seed;   /* gaussian */
    int n;           /* honest deltas */
} ds_attack_params;
/* Poisoned delta k's values of tensor ti (x, numel float32):
 *   sign-flip, ipm  -S * mean        scale     S * v_(k mod n)
 *   alie            mean + z * std   gaussian  S * rms * N(0,1) (Box-Muller on splitmix64) */
void ds_attack_values(const ds_attack_params *p, int ti, long k, size_t numel, const float *v,
                      const ds_attack_stats *s, float *x);
#endif
