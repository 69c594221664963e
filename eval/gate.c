/* The safety gate's rule (eval/gate.h). */
#include "config.h"
#include "eval/gate.h"
#include <math.h>
#include <string.h>

ds_better ds_gate_direction(const char *metric)
{
    static const char *const higher[] = {"mc1", "mc2", "refusal_rate", "unsafe_refusal_rate", NULL};
    static const char *const lower[] = {"nll", "ppl", "kl", "safe_refusal_rate", NULL};
    for (int i = 0; higher[i]; i++)
        if (strcmp(metric, higher[i]) == 0) return DS_BETTER_HIGHER;
    for (int i = 0; lower[i]; i++)
        if (strcmp(metric, lower[i]) == 0) return DS_BETTER_LOWER;
    return DS_BETTER_NONE;
}

int ds_gate_pass(ds_better b, double base, double cand, double se_b, double se_c, const ds_gate_rule *r,
                 double *bound)
{
    /* The candidate's own se counts at most as the baseline's: a candidate
     * cannot widen its margin by reporting a large (or infinite) se. */
    const double sb = isfinite(se_b) && se_b > 0 ? se_b : 0;
    const double sc = isfinite(se_c) && se_c > 0 ? (se_c < sb ? se_c : sb) : 0;
    double slack = r->se_slack * sqrt(sb * sb + sc * sc);
    if (slack < r->abs_slack) slack = r->abs_slack;
    *bound = b == DS_BETTER_LOWER ? base / r->min_ratio + slack : r->min_ratio * base - slack;
    if (!isfinite(base) || !isfinite(cand)) return 0;
    return b == DS_BETTER_LOWER ? cand <= *bound : cand >= *bound;
}
