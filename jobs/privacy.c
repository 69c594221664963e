/* deltasoup privacy: the RDP accountant of DP-SGD (src/dp_rdp.h,
 * docs/privacy.md): epsilon of one or more phases of the sampled Gaussian
 * mechanism, or the noise multiplier that reaches a target epsilon. Every
 * rank computes (it is cheap and deterministic); rank 0 prints. */
#include "config.h"
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/dp_rdp.h"
#include "src/jobs.h"
#include "src/opts.h"

#define MAX_STEPS 1000000000000LL /* 1e12 */

typedef struct {
    double q, sigma, delta, target, tol;
    int64_t steps;
    ds_strlist phase;
    int accountant, json;
    ds_dp_phase *ph; /* the phases, filled by check() */
    int nph;
} opts;

static const char *const accountants[] = {"rdp", "prv", NULL};

/* A number in the interval (lo, hi) with each end open or closed. */
static int number(const char *opt, const char *v, double lo, int lo_open, double hi, int hi_open, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    int ok = !errno && end != v && !*end && isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
    if (ok) {
        *out = x;
        return 0;
    }
    char range[64];
    if (isinf(hi)) snprintf(range, sizeof range, "a number %s %g", lo_open ? ">" : ">=", lo);
    else snprintf(range, sizeof range, "a number in %c%g, %g%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    return ds_err(DS_EXIT_USAGE, "%s: expected %s, got '%s'", opt, range, v);
}

#define O(p) ((opts *)(p))
static int set_q(void *o, const char *v) { return number("--sample-rate", v, 0, 1, 1, 0, &O(o)->q); }
static int set_sigma(void *o, const char *v) { return number("--noise-multiplier", v, 0, 1, INFINITY, 0, &O(o)->sigma); }
static int set_delta(void *o, const char *v) { return number("--delta", v, 0, 1, 1, 1, &O(o)->delta); }
static int set_target(void *o, const char *v) { return number("--target-epsilon", v, 0, 1, INFINITY, 0, &O(o)->target); }
static int set_tol(void *o, const char *v) { return number("--epsilon-tolerance", v, 0, 1, INFINITY, 0, &O(o)->tol); }

/* --phase Q:S:N */
static int parse_phase(const char *v, ds_dp_phase *ph)
{
    char q[64], s[64], n[64], extra;
    if (strlen(v) >= 64 || sscanf(v, "%63[^:]:%63[^:]:%63[^:]%c", q, s, n, &extra) != 3)
        return ds_err(DS_EXIT_USAGE, "--phase: expected Q:S:N (sample rate:noise multiplier:steps), got '%s'", v);
    int rc = number("--phase sample rate", q, 0, 1, 1, 0, &ph->q);
    if (!rc) rc = number("--phase noise multiplier", s, 0, 1, INFINITY, 0, &ph->sigma);
    if (rc) return rc;
    char *end;
    errno = 0;
    long long x = strtoll(n, &end, 10);
    if (errno || end == n || *end || x < 1 || x > MAX_STEPS)
        return ds_err(DS_EXIT_USAGE, "--phase steps: expected an integer in [1, %lld], got '%s'", MAX_STEPS, n);
    ph->steps = x;
    return 0;
}

static int check(void *p)
{
    opts *o = p;
    int single = !isnan(o->q) || !isnan(o->sigma) || o->steps > 0;
    if (o->accountant == 1)
        return ds_err(DS_EXIT_USAGE, "--accountant prv: the PRV accountant is not implemented; use rdp (docs/privacy.md)");
    if (isnan(o->delta)) return ds_err(DS_EXIT_USAGE, "--delta D is required");
    if (!isnan(o->target) && !isnan(o->sigma))
        return ds_err(DS_EXIT_USAGE, "give --noise-multiplier or --target-epsilon, not both");
    if (!isnan(o->target) && o->phase.n)
        return ds_err(DS_EXIT_USAGE, "--target-epsilon searches one phase: give --sample-rate and --steps, not --phase");
    if (isnan(o->target) && !isnan(o->tol)) return ds_err(DS_EXIT_USAGE, "--epsilon-tolerance goes with --target-epsilon");
    if (o->phase.n && single)
        return ds_err(DS_EXIT_USAGE, "give either --phase Q:S:N (repeatable) or --sample-rate, --noise-multiplier and --steps");
    if (o->phase.n) {
        o->ph = calloc((size_t)o->phase.n, sizeof *o->ph);
        if (!o->ph) return ds_err(DS_EXIT_FAIL, "out of memory");
        for (o->nph = 0; o->nph < o->phase.n; o->nph++) {
            int rc = parse_phase(o->phase.v[o->nph], &o->ph[o->nph]);
            if (rc) return rc;
        }
        return 0;
    }
    if (isnan(o->q)) return ds_err(DS_EXIT_USAGE, "--sample-rate Q is required (or --phase Q:S:N)");
    if (o->steps < 1) return ds_err(DS_EXIT_USAGE, "--steps N is required (or --phase Q:S:N)");
    if (isnan(o->sigma) && isnan(o->target))
        return ds_err(DS_EXIT_USAGE, "--noise-multiplier S or --target-epsilon E is required (or --phase Q:S:N)");
    if (isnan(o->tol)) o->tol = 0.01;
    return 0;
}

static const ds_opt options[] = {
    DS_OPT_CALL("sample-rate", "Q", set_q, "Poisson sampling rate of each step (batch / examples), in (0, 1]"),
    DS_OPT_CALL("noise-multiplier", "S", set_sigma, "noise standard deviation / clipping norm, > 0"),
    DS_OPT_I64(opts, steps, "steps", "N", 1, MAX_STEPS, NULL, "number of steps (noisy gradient updates), >= 1"),
    DS_OPT_CALL("delta", "D", set_delta, "target delta, in (0, 1) (e.g. 1e-5, below 1 / examples)"),
    DS_OPT_CALL("target-epsilon", "E", set_target,
                "instead of --noise-multiplier: print the noise multiplier that reaches\n"
                "epsilon <= E (the search of Opacus's get_noise_multiplier)"),
    DS_OPT_CALL("epsilon-tolerance", "T", set_tol,
                "with --target-epsilon: stop when E - T < epsilon <= E (default 0.01)"),
    DS_OPT_LIST(opts, phase, "phase", "Q:S:N",
                "one phase of N steps at sample rate Q and noise multiplier S; repeat\n"
                "for phases with other settings (their RDP adds, order by order)"),
    DS_OPT_CHOICE(opts, accountant, "accountant", "NAME", accountants, "rdp",
                  "rdp (Renyi DP, as Opacus's RDPAccountant); prv is not implemented"),
    DS_OPT_JSON(opts, json, "print a JSON object (epsilon, best_order, noise_multiplier, ...; 17 digits)"),
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup privacy --sample-rate Q --noise-multiplier S --steps N --delta D [--json]\n"
             "deltasoup privacy --sample-rate Q --target-epsilon E --steps N --delta D [--epsilon-tolerance T] [--json]\n"
             "deltasoup privacy --phase Q:S:N [--phase Q:S:N ...] --delta D [--json]",
    .about = "The (epsilon, delta) of DP-SGD: the Renyi DP of the sampled Gaussian mechanism at Opacus's\n"
             "orders (1.1..10.9 step 0.1, 12..63), added over steps and phases, converted with Balle et al.\n"
             "2020, Theorem 21, as Opacus's RDPAccountant does; the smallest epsilon and its order are printed.\n"
             "With --target-epsilon, the noise multiplier that reaches it (Opacus's get_noise_multiplier:\n"
             "sigma 20, 40, ... until epsilon <= E, then bisection until E - epsilon <= T).",
    .epilog = "Formulas, sources and check values: docs/privacy.md. Runs on any number of ranks; rank 0 prints.\n"
              "Exit codes: 2 bad options or values, 3 a target epsilon no noise multiplier up to 1e6 reaches.",
    .opts = options,
    .check = check};

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* A value all phases share, else NaN (printed as null / "-"). */
static double common(const opts *o, int which)
{
    double v = which ? o->ph[0].sigma : o->ph[0].q;
    for (int i = 1; i < o->nph; i++)
        if ((which ? o->ph[i].sigma : o->ph[i].q) != v) return NAN;
    return v;
}

static void report(ds_ctx *ctx, const opts *o, double eps, double order, int evals)
{
    int64_t steps = 0;
    for (int i = 0; i < o->nph; i++) steps += o->ph[i].steps;
    int search = !isnan(o->target);
    if (o->json) {
        json_t *r = json_object(), *ph = json_array();
        for (int i = 0; i < o->nph; i++)
            json_array_append_new(ph, json_pack("{s:f, s:f, s:I}", "sample_rate", o->ph[i].q, "noise_multiplier",
                                                o->ph[i].sigma, "steps", (json_int_t)o->ph[i].steps));
        json_object_set_new(r, "accountant", json_string("rdp"));
        json_object_set_new(r, "epsilon", num(eps));
        json_object_set_new(r, "best_order", num(order));
        json_object_set_new(r, "best_order_at_edge", json_boolean(order == 1.1 || order == 63));
        json_object_set_new(r, "noise_multiplier", num(common(o, 1)));
        json_object_set_new(r, "sample_rate", num(common(o, 0)));
        json_object_set_new(r, "steps", json_integer((json_int_t)steps));
        json_object_set_new(r, "delta", json_real(o->delta));
        if (search) {
            json_object_set_new(r, "target_epsilon", json_real(o->target));
            json_object_set_new(r, "epsilon_tolerance", json_real(o->tol));
            json_object_set_new(r, "evaluations", json_integer(evals));
        }
        json_object_set_new(r, "phases", ph);
        char *s = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        ds_printf0(ctx, "%s\n", s);
        free(s);
        json_decref(r);
        return;
    }
    ds_printf0(ctx, "%-7s %-14s %-18s %s\n", "phase", "sample_rate", "noise_multiplier", "steps");
    for (int i = 0; i < o->nph; i++)
        ds_printf0(ctx, "%-7d %-14.10g %-18.10g %" PRId64 "\n", i + 1, o->ph[i].q, o->ph[i].sigma, o->ph[i].steps);
    ds_printf0(ctx, "\naccountant        rdp (Opacus orders 1.1..10.9, 12..63; Balle et al. 2020 conversion)\n");
    ds_printf0(ctx, "delta             %.10g\n", o->delta);
    if (search)
        ds_printf0(ctx, "target epsilon    %.10g (tolerance %.10g, %d evaluations)\nnoise multiplier  %.10g\n",
                   o->target, o->tol, evals, o->ph[0].sigma);
    ds_printf0(ctx, "epsilon           %.10g\nbest order        %.10g\n", eps, order);
    if (order == 1.1 || order == 63) /* Opacus warns too */
        ds_printf0(ctx, "note              the best order is the %s of the orders: the bound may not be tight\n",
                   order == 63 ? "largest" : "smallest");
}

int ds_job_privacy(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {.q = NAN, .sigma = NAN, .delta = NAN, .target = NAN, .tol = NAN, .steps = -1};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) {
        free(o.ph);
        ds_opts_free(&cmd, &o);
        return ds_opts_exit(rc);
    }
    double eps, order;
    int evals = 0;
    ds_dp_phase one = {o.q, o.sigma, o.steps};
    if (!o.nph) {
        o.ph = &one;
        o.nph = 1;
    }
    if (!isnan(o.target)) {
        if (ds_dp_noise_multiplier(o.target, o.delta, o.q, o.steps, o.tol, &one.sigma, &eps, &evals))
            rc = ds_err(DS_EXIT_INPUT, "--target-epsilon %g: not reached at delta %g by any noise multiplier up to 1e6 "
                        "(Opacus: the privacy budget is too low)", o.target, o.delta);
    }
    if (!rc) ds_dp_epsilon(o.ph, o.nph, o.delta, &eps, &order);
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) report(ctx, &o, eps, order, evals);
    if (o.ph != &one) free(o.ph);
    ds_opts_free(&cmd, &o);
    return rc;
}
