#!/usr/bin/python3
"""Independent reference for `deltasoup privacy` (docs/privacy.md).

The Renyi DP of the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019,
"Renyi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3) is
RDP(alpha) = log(A_alpha) / (alpha - 1) per step, where

    A_alpha = integral over z of mu0(z) * ((1 - q) + q * mu1(z) / mu0(z))^alpha,
    mu0 = N(0, sigma^2), mu1 = N(1, sigma^2), mu1/mu0 = exp((2z - 1) / (2 sigma^2)).

The C code (src/dp_rdp.c) follows Opacus: binomial series for integer orders,
two erfc series for fractional ones. This file does not use those series: it
integrates the definition numerically (trapezoid rule in log space, numpy;
the integrand is analytic in the strip |Im z| < pi sigma^2, so the rule's
error is below exp(-2 pi^2 * 20) with the step used here) and, as a self
check, compares integer orders with the exact binomial sum (math.comb).
Then (Balle et al. 2020, Theorem 21, as Opacus's get_privacy_spent):

    eps(alpha) = rdp(alpha) - (log(delta) + log(alpha)) / (alpha - 1) + log((alpha - 1) / alpha)

minimised over the orders (NaN ignored); the noise multiplier for a target epsilon by the bracket
doubling and bisection of Opacus's get_noise_multiplier.

Usage:
  dp_rdp_ref.py eps --phase Q:S:N [--phase ...] --delta D
  dp_rdp_ref.py sigma --sample-rate Q --steps N --delta D --target-epsilon E [--tolerance T]
  dp_rdp_ref.py cases > tests/data/privacy/cases.json   (the committed vectors)
  dp_rdp_ref.py selfcheck                               (quadrature vs binomial sum)
"""
import json
import math
import sys

import numpy as np

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]


def log_a_quad(q, sigma, alpha):
    """log A_alpha by the trapezoid rule over [-40 sigma - 2, alpha + 40 sigma + 2]."""
    h = min(sigma, sigma * sigma) / 20.0
    lo, hi = -40.0 * sigma - 2.0, alpha + 40.0 * sigma + 2.0
    z = lo + h * np.arange(int(math.ceil((hi - lo) / h)) + 1)
    s2 = sigma * sigma
    log_mu0 = -z * z / (2 * s2) - math.log(sigma * math.sqrt(2 * math.pi))
    log_mix = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * s2))
    f = log_mu0 + alpha * log_mix
    m = f.max()
    return float(m + math.log(h * np.exp(f - m).sum()))


def log_a_binom(q, sigma, alpha):
    """log A_alpha for integer alpha: sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2))."""
    n = int(alpha)
    t = [math.log(math.comb(n, i)) + i * math.log(q) + (n - i) * math.log1p(-q) + (i * i - i) / (2 * sigma * sigma)
         for i in range(n + 1)]
    m = max(t)
    return m + math.log(math.fsum(math.exp(x - m) for x in t))


def rdp(q, sigma, steps, orders=ORDERS):
    if q == 1.0:
        return [steps * a / (2 * sigma * sigma) for a in orders]
    return [steps * log_a_quad(q, sigma, a) / (a - 1) for a in orders]


def eps_of(phases, delta, orders=ORDERS):
    tot = [0.0] * len(orders)
    for q, s, n in phases:
        tot = [x + y for x, y in zip(tot, rdp(q, s, n, orders))]
    best, order = math.inf, math.nan
    for a, r in zip(orders, tot):
        e = r - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if not math.isnan(e) and (math.isnan(order) or e < best):
            best, order = e, a
    return best, order


def sigma_for(eps, delta, q, steps, tol=0.01):
    """Opacus get_noise_multiplier: double sigma_high from 10 until eps <= target, then bisect."""
    eps_high, lo, hi = math.inf, 0.0, 10.0
    while eps_high > eps:
        hi = 2 * hi
        eps_high = eps_of([(q, hi, steps)], delta)[0]
        if hi > 1e6:
            raise ValueError("The privacy budget is too low.")
    while eps - eps_high > tol:
        mid = (lo + hi) / 2
        e = eps_of([(q, mid, steps)], delta)[0]
        if e < eps:
            hi, eps_high = mid, e
        else:
            lo = mid
    return hi


# The committed vectors: varied q, sigma (below 1 and large), steps, delta, several phases.
CASES = [
    [[(0.04, 1.5, 2250)], 1e-5],
    [[(0.01, 1.0, 1000)], 1e-5],
    [[(0.001, 1.1, 10000)], 1e-6],
    [[(0.1, 0.8, 100)], 1e-5],
    [[(0.05, 0.6, 50)], 1e-3],
    [[(0.02, 0.5, 20)], 1e-5],
    [[(0.003, 0.7, 3000)], 1e-5],
    [[(0.25, 2.0, 400)], 1e-5],
    [[(0.5, 4.0, 1000)], 1e-8],
    [[(1.0, 5.0, 10)], 1e-5],
    [[(1.0, 1.0, 1)], 1e-5],
    [[(0.0001, 0.9, 100000)], 1e-7],
    [[(0.008, 12.0, 5000)], 1e-5],
    [[(0.3, 50.0, 10000)], 1e-5],
    [[(0.6, 1.3, 7)], 0.01],
    [[(0.04, 1.0, 1)], 1e-5],
    [[(0.004, 2.5, 250000)], 1e-9],
    [[(0.01, 1.0, 500), (0.02, 2.0, 800)], 1e-5],
    [[(0.1, 0.7, 30), (0.01, 1.5, 2000), (1.0, 20.0, 5)], 1e-6],
    [[(0.04, 1.5, 1000), (0.04, 1.5, 1250)], 1e-5],
    [[(0.002, 3.0, 40000), (0.05, 0.9, 100)], 1e-5],
    [[(0.15, 1.2, 300)], 0.5],
    [[(0.5, 0.2, 5)], 1e-5],
    [[(0.02, 0.25, 3)], 1e-5],
]
SIGMA_CASES = [(8.0, 1e-5, 0.04, 2250), (8.0, 1e-5, 0.04, 2000), (1.0, 1e-5, 0.01, 1000), (3.0, 1e-6, 0.1, 500)]


def phases_arg(vals):
    return [(float(q), float(s), int(n)) for q, s, n in (v.split(":") for v in vals)]


def main(argv):
    if not argv:
        sys.exit(__doc__)
    if argv[0] == "cases":
        out = {"orders": "opacus default: 1.1..10.9 step 0.1, 12..63", "eps_cases": [], "sigma_cases": []}
        for phases, delta in CASES:
            e, a = eps_of(phases, delta)
            out["eps_cases"].append({"phases": [list(p) for p in phases], "delta": delta, "epsilon": e,
                                     "best_order": a})
        for eps, delta, q, n in SIGMA_CASES:
            out["sigma_cases"].append({"target_epsilon": eps, "delta": delta, "sample_rate": q, "steps": n,
                                       "epsilon_tolerance": 0.01, "noise_multiplier": sigma_for(eps, delta, q, n)})
        # one case a line
        print("{\n \"orders\": %s," % json.dumps(out["orders"]))
        for k in ("eps_cases", "sigma_cases"):
            print(" \"%s\": [\n  %s\n ]%s" % (k, ",\n  ".join(json.dumps(c) for c in out[k]),
                                            "," if k == "eps_cases" else ""))
        print("}")
        return
    if argv[0] == "selfcheck":
        worst = 0.0
        for q in (1e-4, 0.01, 0.04, 0.3, 0.9):
            for s in (0.5, 0.8, 1.5, 4.0, 30.0):
                for a in (2.0, 3.0, 7.0, 20.0, 63.0):
                    x, y = log_a_quad(q, s, a), log_a_binom(q, s, a)
                    worst = max(worst, abs(x - y) / max(1.0, abs(y)))
        print("worst relative difference quadrature vs binomial sum: %.3g" % worst)
        sys.exit(0 if worst < 1e-12 else 1)
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("what")
    p.add_argument("--phase", action="append", default=[])
    p.add_argument("--sample-rate", type=float)
    p.add_argument("--steps", type=int)
    p.add_argument("--delta", type=float, required=True)
    p.add_argument("--target-epsilon", type=float)
    p.add_argument("--tolerance", type=float, default=0.01)
    a = p.parse_args(argv)
    if a.what == "eps":
        e, o = eps_of(phases_arg(a.phase), a.delta)
        print(json.dumps({"epsilon": e, "best_order": o}))
    else:
        print(json.dumps({"noise_multiplier": sigma_for(a.target_epsilon, a.delta, a.sample_rate, a.steps, a.tolerance)}))


if __name__ == "__main__":
    main(sys.argv[1:])
