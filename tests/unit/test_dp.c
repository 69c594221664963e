/* Unit tests of src/dp_rdp.c, the RDP accountant (docs/privacy.md):
 * Opacus's own check values, the vectors of the independent reference
 * tests/python/dp_rdp_ref.py (tests/data/privacy/cases.json: numerical
 * integration of A_alpha's definition, not Opacus's series), log(erfc) in its
 * asymptotic range against mpmath, and the edge cases of _compute_rdp and
 * get_privacy_spent. Reads $top_srcdir (default "."). */
#include "config.h"
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "src/dp_rdp.h"
#include "tests/unit/check_main.h"

static double eps1(double q, double sigma, int64_t steps, double delta, double *order)
{
    ds_dp_phase ph = {q, sigma, steps};
    double eps, o;
    ds_dp_epsilon(&ph, 1, delta, &eps, order ? order : &o);
    return eps;
}

/* opacus/tests/accountants_test.py: test_rdp_accountant and
 * test_get_noise_multiplier_rdp_epochs / _steps. */
START_TEST(opacus_values)
{
    double order;
    double eps = eps1(0.04, 1.5, 2250, 1e-5, &order);
    ck_assert_msg(fabs(eps - 7.32911117143) < 1e-6, "epsilon %.12g, Opacus 7.32911117143", eps);
    ck_assert_msg(fabs(eps - 7.32911117143) < 1e-9, "epsilon %.12g not within 1e-9 of Opacus's", eps);
    ck_assert(order == 3.9);
    double sigma, e;
    int evals;
    ck_assert_int_eq(ds_dp_noise_multiplier(8, 1e-5, 0.04, 2250, 0.01, &sigma, &e, &evals), 0);
    ck_assert_msg(fabs(sigma - 1.416) < 5e-4, "sigma %.12g, Opacus 1.416", sigma);
    ck_assert(e <= 8 && e > 8 - 0.01);
    ck_assert_int_eq(ds_dp_noise_multiplier(8, 1e-5, 0.04, 2000, 0.01, &sigma, &e, &evals), 0);
    ck_assert_msg(fabs(sigma - 1.3562) < 5e-5, "sigma %.12g, Opacus 1.3562", sigma);
    /* Opacus: "The privacy budget is too low." (eps >= ~0.1 at delta 1e-5 whatever the noise) */
    ck_assert_int_eq(ds_dp_noise_multiplier(0.01, 1e-5, 0.04, 2250, 0.01, &sigma, &e, &evals), -1);
}
END_TEST

static json_t *load_cases(void)
{
    const char *src = getenv("top_srcdir");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/privacy/cases.json", src ? src : ".");
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    ck_assert_msg(j != NULL, "%s: %s", path, err.text);
    return j;
}

START_TEST(reference_vectors)
{
    json_t *j = load_cases(), *c;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "eps_cases"), i, c) {
        json_t *phs = json_object_get(c, "phases"), *p;
        ds_dp_phase ph[8];
        size_t k;
        ck_assert(json_array_size(phs) <= 8);
        json_array_foreach(phs, k, p) {
            ph[k].q = json_number_value(json_array_get(p, 0));
            ph[k].sigma = json_number_value(json_array_get(p, 1));
            ph[k].steps = json_integer_value(json_array_get(p, 2));
        }
        double eps, order, want = json_number_value(json_object_get(c, "epsilon"));
        ds_dp_epsilon(ph, (int)json_array_size(phs), json_number_value(json_object_get(c, "delta")), &eps, &order);
        ck_assert_msg(fabs(eps - want) < 1e-6, "case %zu: epsilon %.12g, reference %.12g", i, eps, want);
        ck_assert_msg(order == json_number_value(json_object_get(c, "best_order")), "case %zu: order %g", i, order);
        n++;
    }
    ck_assert_int_ge(n, 21);
    json_array_foreach(json_object_get(j, "sigma_cases"), i, c) {
        double sigma, e, want = json_number_value(json_object_get(c, "noise_multiplier"));
        int evals;
        ck_assert_int_eq(ds_dp_noise_multiplier(json_number_value(json_object_get(c, "target_epsilon")),
                                                json_number_value(json_object_get(c, "delta")),
                                                json_number_value(json_object_get(c, "sample_rate")),
                                                json_integer_value(json_object_get(c, "steps")),
                                                json_number_value(json_object_get(c, "epsilon_tolerance")), &sigma, &e,
                                                &evals),
                         0);
        ck_assert_msg(fabs(sigma - want) < 1e-6, "sigma case %zu: %.12g, reference %.12g", i, sigma, want);
    }
    json_decref(j);
}
END_TEST

START_TEST(log_erfc)
{
    for (double x = -6; x <= 20; x += 0.25) ck_assert(fabs(ds_dp_log_erfc(x) - log(erfc(x))) <= 1e-15 * fabs(log(erfc(x))) + 1e-300);
    /* the asymptotic series against mpmath (40 digits) */
    const double xs[] = {20.5, 30, 100, 1e4};
    const double want[] = {-423.8439760787911581809932, -903.9741171106438780796002, -10005.17758512266433257047,
                           -100000009.7827053199008828};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(ds_dp_log_erfc(xs[i]) - want[i]) < 1e-14 * fabs(want[i]), "log_erfc(%g) = %.17g", xs[i],
                      ds_dp_log_erfc(xs[i]));
    /* no jump where the series takes over */
    ck_assert(fabs(ds_dp_log_erfc(nextafter(20, 21)) - ds_dp_log_erfc(20)) < 1e-12);
}
END_TEST

START_TEST(edges)
{
    double o[DS_DP_NORDERS];
    ds_dp_default_orders(o);
    ck_assert(o[0] == 1.1 && o[9] == 2.0 && o[98] == 10.9 && o[99] == 12 && o[150] == 63);
    ck_assert(ds_dp_rdp_step(0, 1, 3.5) == 0);
    ck_assert(isinf(ds_dp_rdp_step(0.1, 0, 3.5)));
    ck_assert(ds_dp_rdp_step(1, 2, 3.5) == 3.5 / 8);
    ck_assert(isinf(ds_dp_rdp_step(0.1, 1, INFINITY)));
    /* the fractional series meets the binomial sum at an integer order */
    for (int a = 2; a <= 40; a += 19) {
        double ri = ds_dp_rdp_step(0.05, 0.9, a), rf = ds_dp_rdp_step(0.05, 0.9, a + 1e-9);
        ck_assert_msg(fabs(ri - rf) < 1e-6 * ri, "order %d: %.15g vs %.15g", a, ri, rf);
    }
    /* phases add: two halves = the whole; more noise, less epsilon */
    ds_dp_phase two[2] = {{0.04, 1.5, 1000}, {0.04, 1.5, 1250}};
    double e2, o2;
    ds_dp_epsilon(two, 2, 1e-5, &e2, &o2);
    ck_assert(fabs(e2 - eps1(0.04, 1.5, 2250, 1e-5, NULL)) < 1e-12);
    ck_assert(eps1(0.04, 2, 2250, 1e-5, NULL) < eps1(0.04, 1.5, 2250, 1e-5, NULL));
    /* get_privacy_spent: NaN orders skipped, all NaN gives (inf, NaN), ties keep the first */
    double ord[3] = {2, 3, 4}, rdp[3] = {NAN, 1, NAN}, eps, order;
    ds_dp_privacy_spent(ord, rdp, 3, 1e-5, &eps, &order);
    ck_assert(order == 3 && fabs(eps - (1 - (log(1e-5) + log(3)) / 2 + log(2.0 / 3))) < 1e-15);
    rdp[1] = NAN;
    ds_dp_privacy_spent(ord, rdp, 3, 1e-5, &eps, &order);
    ck_assert(isinf(eps) && eps > 0 && isnan(order));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dp");
    tcase_add_test(ds_check_case(s, "opacus_values", 0), opacus_values);
    tcase_add_test(ds_check_case(s, "reference_vectors", 0), reference_vectors);
    tcase_add_test(ds_check_case(s, "log_erfc", 0), log_erfc);
    tcase_add_test(ds_check_case(s, "edges", 0), edges);
    return ds_check_run(s);
}
