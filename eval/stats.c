/* Standard errors of the evaluation metrics (eval/tasks.h, docs/eval.md). */
#include "config.h"
#include <math.h>
#include "eval/tasks.h"

double ds_stat_binomial_se(int64_t k, int64_t n)
{
    if (n <= 0) return NAN;
    const double p = (double)k / (double)n;
    return sqrt(p * (1 - p) / (double)n);
}

void ds_stat_mean_se(const double *x, int64_t n, double *mean, double *se)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = n > 0 ? s / (double)n : NAN;
    if (n < 2) {
        *se = NAN;
        return;
    }
    double ss = 0; /* two passes: no cancellation for values far from 0 */
    for (int64_t i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *se = sqrt(ss / (double)(n - 1) / (double)n);
}

void ds_stat_ratio_se(const double *num, const double *den, int64_t n, double *ratio, double *se)
{
    double sn = 0, sd = 0;
    for (int64_t i = 0; i < n; i++) {
        sn += num[i];
        sd += den[i];
    }
    *ratio = sd != 0 ? sn / sd : NAN;
    if (n < 2 || sd == 0) {
        *se = NAN;
        return;
    }
    double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        const double r = num[i] - *ratio * den[i];
        ss += r * r;
    }
    *se = sqrt((double)n / (double)(n - 1) * ss) / sd;
}
