/* The anomaly report's math (src/scan.h, docs/scan.md). */
#include "src/scan.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

const char *const ds_scan_stat_names[] = {"norm", "cosine_median", "sign_agreement", "krum_score", NULL};
const char *const ds_scan_rule_names[] = {"norm_high",  "norm_low",  "cosine_low", "agreement_low",
                                          "krum_high", "duplicate", NULL};

size_t ds_scan_sums_len(size_t n) { return 3 * n + n * n + 2; }

static void sums_point(ds_scan_sums *s)
{
    const size_t n = s->n;
    s->sq = s->buf;
    s->dot = s->sq + n;
    s->agree = s->dot + n;
    s->d = s->agree + n;
    s->mm = s->d + n * n;
    s->coords = s->mm + 1;
}

void ds_scan_sums_init(ds_scan_sums *s, size_t n)
{
    s->n = n;
    s->buf = ds_calloc(ds_scan_sums_len(n), sizeof(double));
    sums_point(s);
}

void ds_scan_sums_zero(ds_scan_sums *s) { memset(s->buf, 0, sizeof(double) * ds_scan_sums_len(s->n)); }

void ds_scan_sums_add(ds_scan_sums *to, const ds_scan_sums *from)
{
    const size_t len = ds_scan_sums_len(to->n);
    for (size_t i = 0; i < len; i++) to->buf[i] += from->buf[i];
}

void ds_scan_sums_free(ds_scan_sums *s)
{
    free(s->buf);
    memset(s, 0, sizeof *s);
}

void ds_scan_work_init(ds_scan_work *w, size_t n, size_t coords, size_t words)
{
    w->med = ds_malloc(sizeof(float) * (coords + 1));
    w->maj = ds_malloc(sizeof(uint64_t) * (words + 1));
    w->agree = ds_malloc(sizeof(uint64_t) * (n + 1));
}

void ds_scan_work_free(ds_scan_work *w)
{
    free(w->med);
    free(w->maj);
    free(w->agree);
    memset(w, 0, sizeof *w);
}

/* Delta u's sum of v m over one row of a 1-bit chunk with one scale g for
 * the row: g (2 P - S), P the sum of m where the bit is 1, S the row's sum. */
static double row_dot(const uint64_t *bits, const float *m, size_t cols, double S, double g)
{
    double P = 0;
    for (size_t w = 0; w * 64 < cols; w++) {
        uint64_t x = bits[w];
        while (x) {
            const size_t j = w * 64 + (size_t)__builtin_ctzll(x);
            P += m[j];
            x &= x - 1;
        }
    }
    return g * (2 * P - S);
}

/* sum over the chunk of v_u m (per-column scales: coordinate by coordinate). */
static double chunk_dot(const ds_agg_bits *c, size_t u, const float *m, const double *rowsum)
{
    const size_t W = ds_bitpack_words(c->cols);
    const uint64_t *b = c->bits[u];
    const float *g = c->scale[u];
    double dot = 0;
    for (size_t r = 0; r < c->rows; r++) {
        const float *mr = m + r * c->cols;
        if (c->kind != DS_SCALE_COL) {
            dot += row_dot(b + r * W, mr, c->cols, rowsum[r], c->kind == DS_SCALE_ROW ? g[r] : g[0]);
            continue;
        }
        for (size_t j = 0; j < c->cols; j++) {
            const double v = (b[r * W + j / 64] >> (j % 64) & 1) ? (double)g[j] : -(double)g[j];
            dot += v * mr[j];
        }
    }
    return dot;
}

static double chunk_sq(const ds_agg_bits *c, size_t u)
{
    const float *g = c->scale[u];
    const size_t ns = c->kind == DS_SCALE_TENSOR ? 1 : c->kind == DS_SCALE_ROW ? c->rows : c->cols;
    const double per = c->kind == DS_SCALE_TENSOR ? (double)c->rows * (double)c->cols
                       : c->kind == DS_SCALE_ROW  ? (double)c->cols
                                                  : (double)c->rows;
    double sq = 0;
    for (size_t k = 0; k < ns; k++) sq += (double)g[k] * (double)g[k] * per;
    return sq;
}

void ds_scan_chunk_bits(const ds_agg_bits *c, ds_scan_sums *s, ds_scan_work *w)
{
    const size_t n = c->n, coords = c->rows * c->cols;
    if (coords == 0) return;
    ds_agg_trimmed_bits(c, (n - 1) / 2, w->med, NULL);
    memset(w->agree, 0, sizeof(uint64_t) * n);
    ds_agg_majority_bits(c, w->maj, w->agree);
    ds_agg_dist_bits(c, 0, 1, s->d);
    double *rowsum = ds_malloc(sizeof(double) * (c->rows + 1));
    for (size_t r = 0; r < c->rows; r++) {
        double S = 0;
        for (size_t j = 0; j < c->cols; j++) {
            const double m = w->med[r * c->cols + j];
            S += m;
            *s->mm += m * m;
        }
        rowsum[r] = S;
    }
    for (size_t u = 0; u < n; u++) {
        s->sq[u] += chunk_sq(c, u);
        s->dot[u] += chunk_dot(c, u, w->med, rowsum);
        s->agree[u] += (double)w->agree[u];
    }
    *s->coords += (double)coords;
    free(rowsum);
}

void ds_scan_chunk_dense(size_t n, const float *const *x, size_t m, ds_scan_sums *s, ds_scan_work *w)
{
    if (m == 0) return;
    ds_agg_trimmed_dense(n, x, m, (n - 1) / 2, w->med, NULL);
    ds_agg_dist_dense(n, x, m, 0, 1, s->d);
    for (size_t k = 0; k < m; k++) *s->mm += (double)w->med[k] * (double)w->med[k];
    /* the majority of the sign bits (v >= 0), 1 when at least half have 1 */
    unsigned char *maj = ds_calloc(m + 1, 1);
    size_t *ones = ds_calloc(m + 1, sizeof(size_t));
    for (size_t u = 0; u < n; u++)
        for (size_t k = 0; k < m; k++) ones[k] += x[u][k] >= 0;
    for (size_t k = 0; k < m; k++) maj[k] = 2 * ones[k] >= n;
    for (size_t u = 0; u < n; u++) {
        double sq = 0, dot = 0;
        uint64_t agree = 0;
        for (size_t k = 0; k < m; k++) {
            const double v = x[u][k];
            sq += v * v;
            dot += v * w->med[k];
            agree += (x[u][k] >= 0) == maj[k];
        }
        s->sq[u] += sq;
        s->dot[u] += dot;
        s->agree[u] += (double)agree;
    }
    *s->coords += (double)m;
    free(maj);
    free(ones);
}

/* ---- statistics */
size_t ds_scan_default_f(size_t n) { return n >= 3 ? (n - 3) / 2 : 0; }

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(size_t n, double *v)
{
    qsort(v, n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void ds_scan_robust_z(size_t n, const double *x, double *z, double *median, double *sigma)
{
    double *t = ds_malloc(sizeof(double) * (n + 1));
    memcpy(t, x, sizeof(double) * n);
    const double med = n ? median_of(n, t) : 0;
    for (size_t i = 0; i < n; i++) t[i] = fabs(x[i] - med);
    const double sg = n ? DS_SCAN_MAD_SCALE * median_of(n, t) : 0;
    for (size_t i = 0; i < n; i++) {
        const double dv = x[i] - med;
        z[i] = sg > 0 ? dv / sg : dv == 0 ? 0 : dv > 0 ? INFINITY : -INFINITY;
    }
    free(t);
    if (median) *median = med;
    if (sigma) *sigma = sg;
}

void ds_scan_finish(const ds_scan_sums *s, size_t f, double threshold, ds_scan_delta *out, ds_scan_summary *sum)
{
    const size_t n = s->n;
    double *score = ds_malloc(sizeof(double) * (n + 1)), *x = ds_malloc(sizeof(double) * (n + 1));
    double *z = ds_malloc(sizeof(double) * (n + 1));
    ds_agg_krum_scores(n, s->d, f, score);
    const double mnorm = sqrt(*s->mm);
    for (size_t u = 0; u < n; u++) {
        ds_scan_delta *o = &out[u];
        const double norm = sqrt(s->sq[u]);
        o->stat[DS_SCAN_NORM] = norm;
        o->stat[DS_SCAN_COSINE] = norm > 0 && mnorm > 0 ? s->dot[u] / (norm * mnorm) : 0;
        o->stat[DS_SCAN_AGREEMENT] = *s->coords > 0 ? s->agree[u] / *s->coords : 0;
        o->stat[DS_SCAN_KRUM] = score[u];
        o->rules = 0;
    }
    sum->f = f;
    sum->neighbours = n - f - 2;
    sum->threshold = threshold;
    for (int k = 0; k < DS_SCAN_NSTATS; k++) {
        /* the norm's z is of its logarithm (a norm 0 counts as DBL_MIN) */
        for (size_t u = 0; u < n; u++)
            x[u] = k == DS_SCAN_NORM ? log(fmax(out[u].stat[k], DBL_MIN)) : out[u].stat[k];
        ds_scan_robust_z(n, x, z, &sum->median[k], &sum->sigma[k]);
        for (size_t u = 0; u < n; u++) out[u].z[k] = z[u];
    }
    for (size_t u = 0; u < n; u++) {
        ds_scan_delta *o = &out[u];
        const double *zu = o->z;
        if (zu[DS_SCAN_NORM] > threshold) o->rules |= 1u << DS_SCAN_NORM_HIGH;
        if (zu[DS_SCAN_NORM] < -threshold) o->rules |= 1u << DS_SCAN_NORM_LOW;
        if (zu[DS_SCAN_COSINE] < -threshold) o->rules |= 1u << DS_SCAN_COSINE_LOW;
        if (zu[DS_SCAN_AGREEMENT] < -threshold) o->rules |= 1u << DS_SCAN_AGREEMENT_LOW;
        if (zu[DS_SCAN_KRUM] > threshold) o->rules |= 1u << DS_SCAN_KRUM_HIGH;
    }
    free(score);
    free(x);
    free(z);
}
