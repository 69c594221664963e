/* The Renyi DP accountant of the sampled Gaussian mechanism (issue 17,
 * docs/privacy.md), computed as Opacus computes it
 * (opacus/accountants/analysis/rdp.py, opacus/accountants/utils.py):
 * log A_alpha by log-sum-exp of the binomial terms for integer orders and by
 * the two erfc series for fractional ones (Mironov, Talwar, Zhang 2019,
 * Sec. 3.3), RDP = steps * log A / (alpha - 1), added across phases per
 * order, and converted to (epsilon, delta) with Balle et al. 2020, Theorem 21.
 * Pure: no files, no MPI. */
#ifndef DS_DP_RDP_H
#define DS_DP_RDP_H
#include <stdint.h>

/* Opacus's RDPAccountant.DEFAULT_ALPHAS: 1 + x / 10.0 for x in 1..99, then
 * 12..63 (151 orders). */
#define DS_DP_NORDERS 151
void ds_dp_default_orders(double orders[DS_DP_NORDERS]);

/* One phase: `steps` steps of the Gaussian mechanism with noise multiplier
 * sigma (noise stddev / L2 sensitivity) on a Poisson sample of rate q. */
typedef struct {
    double q, sigma;
    int64_t steps;
} ds_dp_phase;

/* log(erfc(x)), accurate where erfc(x) underflows (Opacus's _log_erfc:
 * log(2) + scipy.special.log_ndtr(-x * sqrt(2))). */
double ds_dp_log_erfc(double x);

/* RDP of one step at order alpha (Opacus's _compute_rdp): 0 for q == 0,
 * inf for sigma == 0 or alpha == inf, alpha / (2 sigma^2) for q == 1,
 * else log A_alpha / (alpha - 1). NaN where Opacus would raise (a log-space
 * subtraction going negative, or a fractional series that does not reach
 * its stopping rule): get_privacy_spent then skips the order. */
double ds_dp_rdp_step(double q, double sigma, double alpha);

/* rdp[k] += steps * ds_dp_rdp_step(q, sigma, orders[k]) for every phase
 * (Opacus's compute_rdp summed over the accountant's history). */
void ds_dp_rdp_add(const ds_dp_phase *phases, int nphases, const double *orders, int n, double *rdp);

/* Opacus's get_privacy_spent: eps_k = rdp_k - (log(delta) + log(a_k)) / (a_k - 1)
 * + log((a_k - 1) / a_k); *eps = the smallest non-NaN eps_k, *order = its
 * order (the first on ties); all NaN: *eps = inf, *order = NaN. */
void ds_dp_privacy_spent(const double *orders, const double *rdp, int n, double delta, double *eps, double *order);

/* Epsilon of the phases at delta over the default orders (the two calls above). */
void ds_dp_epsilon(const ds_dp_phase *phases, int nphases, double delta, double *eps, double *order);

/* Opacus's get_noise_multiplier for `steps` steps at rate q: sigma_high = 20,
 * 40, ... until eps(sigma_high) <= target (more than 1e6: the budget is too
 * low, returns -1; -2 if the bisection has not ended after 2000 halvings), then bisection of [0, sigma_high] until
 * target - eps(sigma_high) <= tol; *sigma = sigma_high, *eps = its epsilon.
 * *evals counts the accountant evaluations (may be NULL). 0 ok. */
int ds_dp_noise_multiplier(double target_eps, double delta, double q, int64_t steps, double tol, double *sigma,
                           double *eps, int *evals);
#endif
