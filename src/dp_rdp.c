/* The Renyi DP accountant of the sampled Gaussian mechanism, as Opacus
 * computes it (src/dp_rdp.h, docs/privacy.md). Each function names the
 * Opacus function it reproduces; the arithmetic follows the same order of
 * operations so that results agree to a few ulps. */
#include "config.h"
#include "src/dp_rdp.h"
#include <float.h>
#include <math.h>

void ds_dp_default_orders(double orders[DS_DP_NORDERS])
{
    int k = 0;
    for (int x = 1; x < 100; x++) orders[k++] = 1 + x / 10.0;
    for (int a = 12; a < 64; a++) orders[k++] = a;
}

/* _log_add: log(exp(x) + exp(y)). */
static double log_add(double x, double y)
{
    double a = fmin(x, y), b = fmax(x, y);
    if (a == -INFINITY) return b;
    return log1p(exp(a - b)) + b;
}

/* _log_sub: log(exp(x) - exp(y)); NaN where Opacus raises ValueError (x < y). */
static double log_sub(double x, double y)
{
    if (x < y) return NAN;
    if (y == -INFINITY) return x;
    if (x == y) return -INFINITY;
    double e = expm1(x - y);
    if (isinf(e)) return x; /* Python's OverflowError branch */
    return log(e) + y;
}

/* log(erfc(x)): erfc itself while it is far from underflow (erfc(20) is
 * 5.4e-176), beyond that the asymptotic series
 * erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k,
 * whose 9th term is below 1e-17 for x > 20. scipy's log_ndtr, which Opacus
 * uses, switches to its own asymptotic series at x > 20 / sqrt(2). */
double ds_dp_log_erfc(double x)
{
    if (x <= 20) return log(erfc(x));
    double t = 1 / (2 * x * x), term = 1, sum = 1;
    for (int k = 1; k <= 8; k++) {
        term *= -(2 * k - 1) * t;
        sum += term;
    }
    return -x * x - log(x) - 0.5 * log(M_PI) + log(sum);
}

/* scipy.special.binom(n, k) for integer k >= 0 by the multiplication formula
 * scipy uses for small k (its symmetry reduction for integer n included). */
static double binom(double n, int k)
{
    double nx = floor(n);
    if (nx == n && k > nx / 2 && nx > 0) k = (int)(nx - k);
    double num = 1, den = 1;
    for (int i = 1; i <= k; i++) {
        num *= i + n - k;
        den *= i;
        if (fabs(num) > 1e50) {
            num /= den;
            den = 1;
        }
    }
    return num / den;
}

/* _compute_log_a_for_int_alpha: log-sum-exp of the binomial terms. */
static double log_a_int(double q, double sigma, int alpha)
{
    double log_a = -INFINITY;
    for (int i = 0; i <= alpha; i++) {
        double log_coef = log(binom(alpha, i)) + i * log(q) + (alpha - i) * log(1 - q);
        double s = log_coef + ((double)i * i - i) / (2 * (sigma * sigma));
        log_a = log_add(log_a, s);
    }
    return log_a;
}

/* _compute_log_a_for_frac_alpha: the two series of the integrals over
 * (-inf, z0] and [z0, inf), each term with an erfc, until both terms fall
 * below exp(-30). */
static double log_a_frac(double q, double sigma, double alpha)
{
    double log_a0 = -INFINITY, log_a1 = -INFINITY;
    double z0 = sigma * sigma * log(1 / q - 1) + 0.5, s2 = sqrt(2) * sigma;
    double coef = 1;
    for (int i = 0; i < 1000000; i++) {
        /* scipy's multiplication formula while it uses one (i < 20), then the
         * recurrence C(a, i) = C(a, i - 1) (a - i + 1) / i: the product from
         * scratch overflows its denominator for large i (q near or above 1/2
         * and orders near 1 take thousands of terms) */
        coef = i < 20 ? binom(alpha, i) : coef * (alpha - i + 1) / i;
        double log_coef = log(fabs(coef));
        double j = alpha - i;
        double log_t0 = log_coef + i * log(q) + j * log(1 - q);
        double log_t1 = log_coef + j * log(q) + i * log(1 - q);
        double log_e0 = log(0.5) + ds_dp_log_erfc((i - z0) / s2);
        double log_e1 = log(0.5) + ds_dp_log_erfc((z0 - j) / s2);
        double log_s0 = log_t0 + ((double)i * i - i) / (2 * (sigma * sigma)) + log_e0;
        double log_s1 = log_t1 + (j * j - j) / (2 * (sigma * sigma)) + log_e1;
        if (coef > 0) {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if (isnan(log_a0) || isnan(log_a1)) return NAN;
        /* Python's max(log_s0, log_s1): the first unless the second is larger */
        double m = log_s1 > log_s0 ? log_s1 : log_s0;
        if (m < -30) return log_add(log_a0, log_a1);
    }
    return NAN; /* no convergence: the order is skipped */
}

double ds_dp_rdp_step(double q, double sigma, double alpha)
{
    if (q == 0) return 0;
    if (sigma == 0) return INFINITY;
    if (q == 1.0) return alpha / (2 * (sigma * sigma));
    if (isinf(alpha)) return INFINITY;
    double log_a = alpha == floor(alpha) && alpha < INT32_MAX ? log_a_int(q, sigma, (int)alpha)
                                                            : log_a_frac(q, sigma, alpha);
    return log_a / (alpha - 1);
}

void ds_dp_rdp_add(const ds_dp_phase *phases, int nphases, const double *orders, int n, double *rdp)
{
    for (int p = 0; p < nphases; p++)
        for (int k = 0; k < n; k++)
            rdp[k] += ds_dp_rdp_step(phases[p].q, phases[p].sigma, orders[k]) * (double)phases[p].steps;
}

void ds_dp_privacy_spent(const double *orders, const double *rdp, int n, double delta, double *eps, double *order)
{
    *eps = INFINITY;
    *order = NAN;
    for (int k = 0; k < n; k++) {
        double a = orders[k];
        double e = rdp[k] - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a);
        if (!isnan(e) && (isnan(*order) || e < *eps)) {
            *eps = e;
            *order = a;
        }
    }
}

void ds_dp_epsilon(const ds_dp_phase *phases, int nphases, double delta, double *eps, double *order)
{
    double orders[DS_DP_NORDERS], rdp[DS_DP_NORDERS] = {0};
    ds_dp_default_orders(orders);
    ds_dp_rdp_add(phases, nphases, orders, DS_DP_NORDERS, rdp);
    ds_dp_privacy_spent(orders, rdp, DS_DP_NORDERS, delta, eps, order);
}

static double eps_at(double sigma, double q, int64_t steps, double delta, int *evals)
{
    ds_dp_phase ph = {q, sigma, steps};
    double eps, order;
    ds_dp_epsilon(&ph, 1, delta, &eps, &order);
    if (evals) ++*evals;
    return eps;
}

int ds_dp_noise_multiplier(double target_eps, double delta, double q, int64_t steps, double tol, double *sigma,
                           double *eps, int *evals)
{
    double eps_high = INFINITY, sigma_low = 0, sigma_high = 10;
    if (evals) *evals = 0;
    while (eps_high > target_eps) {
        sigma_high = 2 * sigma_high;
        eps_high = eps_at(sigma_high, q, steps, delta, evals);
        if (sigma_high > 1e6) return -1; /* Opacus: "The privacy budget is too low." */
    }
    for (int it = 0; target_eps - eps_high > tol; it++) {
        if (it == 2000) return -2; /* bisection of doubles ends long before */
        double s = (sigma_low + sigma_high) / 2;
        double e = eps_at(s, q, steps, delta, evals);
        if (e < target_eps) {
            sigma_high = s;
            eps_high = e;
        } else {
            sigma_low = s;
        }
    }
    *sigma = sigma_high;
    *eps = eps_high;
    return 0;
}
