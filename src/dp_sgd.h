/* DP-SGD (Abadi et al. 2016) for finetune (issue 17, docs/privacy.md
 * "DP-SGD in finetune"): Poisson sampling of examples, per-example
 * gradients clipped to L2 norm C over all trained parameters together,
 * summed, Gaussian noise N(0, (S C)^2) added once per step, divided by the
 * expected batch size. Pure: no files, no MPI (the job all-reduces the
 * accumulator).
 *
 * An example is one training window of the token stream: window i holds
 * tokens [i T, i T + T] (inputs the first T, targets the last T); there are
 * floor((n - 1) / T) of them. Step s takes example i when
 * u(seed, s, i) < q (Poisson sampling, rate q = batch / examples), u a
 * counter-based uniform, so that every rank lists the same examples and
 * shares them out.
 *
 * The sum is exact and independent of its order: each clipped per-example
 * gradient is rounded to a fixed-point int64 with quantum C * 2^-k (k = 40,
 * fewer when so many examples could overflow), and the noise too, each
 * rank drawing the noise of its slice of the parameters; an integer
 * all-reduce then gives the same bits for any number of ranks. */
#ifndef DS_DP_SGD_H
#define DS_DP_SGD_H
#include <stdint.h>
#include "src/model.h"

/* What a DP fine-tune records (root attributes dp_*, docs/formats.md). */
typedef struct {
    int has;
    double epsilon, delta, noise_multiplier, max_grad_norm, sample_rate;
    int64_t steps;
    char accountant[16]; /* "rdp" */
} ds_dp_record;

/* Counter-based draws, pure functions of their arguments. With
 * mix(k, c) = splitmix64's output c of state k (the state advanced c + 1
 * times, then the finaliser) and key(d) = mix(mix(seed, d), step):
 * ds_dp_sample_uniform = (mix(key(1), i) >> 11) * 2^-53 in [0, 1), the draw
 * of example i; ds_dp_normal = sqrt(-2 ln u1) cos(2 pi u2), u1 =
 * ((mix(key(2), 2j) >> 11) + 1) 2^-53 in (0, 1], u2 = (mix(key(2), 2j + 1)
 * >> 11) 2^-53, the noise of parameter j (Box-Muller, cosine branch). */
double ds_dp_sample_uniform(uint64_t seed, int64_t step, uint64_t i);
double ds_dp_normal(uint64_t seed, int64_t step, uint64_t j);

/* Examples of step `step` (Poisson, rate q) among n_examples: written to
 * idx (room for n_examples) in increasing order; returns their count. */
int64_t ds_dp_sample(uint64_t seed, int64_t step, int64_t n_examples, double q, int64_t *idx);

/* Fixed-point accumulator of the clipped sum plus noise. */
typedef struct {
    int64_t numel;
    int64_t *acc;
    double quantum; /* value of one unit: C * 2^-k */
} ds_dp_accum;
/* For numel parameters, clip norm C, noise multiplier sigma and at most
 * max_examples examples per step: k = 40, or less so that max_examples + 9
 * sigma (a normal draw is below 8.6 in magnitude) units of 2^k fit in 2^61. */
void ds_dp_accum_init(ds_dp_accum *a, int64_t numel, double clip, double sigma, int64_t max_examples);
void ds_dp_accum_zero(ds_dp_accum *a);
void ds_dp_accum_free(ds_dp_accum *a);
/* The L2 norm of g [numel] (double sum in index order). */
double ds_dp_norm(const float *g, int64_t numel);
/* The clip factor min(1, C / (norm + 1e-6)). */
double ds_dp_clip_factor(double norm, double clip);
/* a += round(factor * g / quantum) for every parameter. */
void ds_dp_accum_add(ds_dp_accum *a, const float *g, double factor);
/* a[j] += round(sigma * C * N_j / quantum) for j in [lo, hi), N_j =
 * ds_dp_normal(seed, step, j). */
void ds_dp_accum_noise(ds_dp_accum *a, uint64_t seed, int64_t step, double sigma, double clip, int64_t lo, int64_t hi);
/* out[j] = a[j] * quantum / expected_batch (the step's gradient). */
void ds_dp_accum_result(const ds_dp_accum *a, double expected_batch, float *out);

/* Per-example gradients, one example at a time (one reusable gradient
 * buffer g over every tensor, and the accumulator: two model-sized buffers):
 * for each of the n examples idx[k] (windows of the token stream), forward
 * (act for 1 x T), the mean CE over its T positions, backward into the
 * zeroed g, norm, clip, add into a. norms[k] (may be NULL) receives example
 * k's norm; *loss_sum the sum of the examples' mean losses (NaN when a
 * gradient is not finite: that example is left out of a). */
void ds_dp_clip_accumulate(const ds_llama *m, ds_llama_act *act, ds_llama_grads *g, ds_dp_accum *a,
                           const int *stream, const int64_t *idx, int64_t n, int T, double clip, double *norms,
                           double *loss_sum);
#endif
