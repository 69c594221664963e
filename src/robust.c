/* Robust aggregators on the Gram matrix (src/robust.h). */
#include "config.h"
#include "src/robust.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "src/ds.h"

void ds_rob_norms_bits(const ds_agg_bits *c, size_t part, size_t nparts, double *norm2)
{
    const size_t ns = c->kind == DS_SCALE_ROW ? c->rows : c->kind == DS_SCALE_COL ? c->cols : 1;
    const double each = c->kind == DS_SCALE_ROW ? (double)c->cols
                        : c->kind == DS_SCALE_COL ? (double)c->rows
                                                  : (double)c->rows * (double)c->cols;
    for (size_t u = part; u < c->n; u += nparts)
        for (size_t i = 0; i < ns; i++) norm2[u] += each * (double)c->scale[u][i] * (double)c->scale[u][i];
}

void ds_rob_norms_dense(size_t n, const float *const *x, size_t m, size_t part, size_t nparts, double *norm2)
{
    for (size_t u = part; u < n; u += nparts) {
        double s = 0;
        for (size_t j = 0; j < m; j++) s += (double)x[u][j] * (double)x[u][j];
        norm2[u] += s;
    }
}

void ds_rob_gram(size_t n, const double *d, const double *norm2, double *g)
{
    for (size_t i = 0; i < n; i++) {
        g[i * n + i] = norm2[i];
        for (size_t j = i + 1; j < n; j++) g[i * n + j] = g[j * n + i] = (norm2[i] + norm2[j] - d[i * n + j]) / 2;
    }
}

void ds_rob_dist(size_t n, const double *g, double *d)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            const double v = g[i * n + i] + g[j * n + j] - 2 * g[i * n + j];
            d[i * n + j] = i == j || v < 0 ? 0 : v;
        }
}

void ds_rob_mix_gram(size_t m, size_t n, const double *a, const double *g, double *out)
{
    double *ag = ds_calloc(m * n + 1, sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t k = 0; k < n; k++)
            if (a[i * n + k] != 0)
                for (size_t j = 0; j < n; j++) ag[i * n + j] += a[i * n + k] * g[k * n + j];
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++) s += ag[i * n + k] * a[j * n + k];
            out[i * m + j] = s;
        }
    free(ag);
}

/* ||sum_u c_u x_u - x_j|| for every j (dist[n]), from G. */
static void dists_to(size_t n, const double *g, const double *c, double *dist)
{
    double cgc = 0;
    double *gc = ds_calloc(n + 1, sizeof(double));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) gc[i] += g[i * n + j] * c[j];
    for (size_t i = 0; i < n; i++) cgc += c[i] * gc[i];
    for (size_t j = 0; j < n; j++) {
        const double v = g[j * n + j] - 2 * gc[j] + cgc;
        dist[j] = v > 0 ? sqrt(v) : 0;
    }
    free(gc);
}

int ds_rob_geomed(size_t n, const double *g, double eps, double tol, int max_iter, double *c, double *obj_out)
{
    double *dist = ds_malloc(sizeof(double) * n + 8), *w = ds_malloc(sizeof(double) * n + 8);
    const double alpha = 1.0 / (double)n;
    for (size_t u = 0; u < n; u++) c[u] = alpha;
    dists_to(n, g, c, dist);
    double obj = 0;
    for (size_t u = 0; u < n; u++) obj += alpha * dist[u];
    int it = 0;
    while (it < max_iter) {
        double sum = 0, prev = obj;
        for (size_t u = 0; u < n; u++) sum += w[u] = alpha / (dist[u] > eps ? dist[u] : eps);
        for (size_t u = 0; u < n; u++) c[u] = w[u] / sum;
        it++;
        dists_to(n, g, c, dist);
        obj = 0;
        for (size_t u = 0; u < n; u++) obj += alpha * dist[u];
        if (fabs(prev - obj) < tol * obj) break;
    }
    if (obj_out) *obj_out = obj;
    free(dist);
    free(w);
    return it;
}

void ds_rob_cclip(size_t n, const double *g, double tau, int iters, double *c)
{
    double *dist = ds_malloc(sizeof(double) * n + 8), *nc = ds_malloc(sizeof(double) * n + 8);
    for (size_t u = 0; u < n; u++) c[u] = 0;
    for (int it = 0; it < iters; it++) {
        dists_to(n, g, c, dist);
        /* v' = v + (1/n) sum_u k_u (x_u - v) = (1 - K/n) v + (1/n) sum_u k_u x_u */
        double ksum = 0;
        for (size_t u = 0; u < n; u++) {
            const double k = dist[u] > tau ? tau / dist[u] : 1.0;
            ksum += k;
            nc[u] = k / (double)n;
        }
        for (size_t u = 0; u < n; u++) c[u] = (1 - ksum / (double)n) * c[u] + nc[u];
    }
    free(dist);
    free(nc);
}

typedef struct {
    float v;
    uint32_t u;
} val_idx;

static int vi_cmp(const void *pa, const void *pb)
{
    const val_idx *a = pa, *b = pb;
    if (a->v != b->v) return a->v < b->v ? -1 : 1;
    return a->u < b->u ? -1 : a->u > b->u;
}

void ds_rob_bulyan_dense(size_t n, const float *const *x, size_t m, size_t beta, float *out, uint64_t *kept)
{
    val_idx *s = ds_malloc(sizeof(val_idx) * n + 8);
    for (size_t j = 0; j < m; j++) {
        for (size_t u = 0; u < n; u++) s[u].v = x[u][j], s[u].u = (uint32_t)u;
        qsort(s, n, sizeof *s, vi_cmp);
        const double med = n % 2 ? (double)s[n / 2].v : ((double)s[n / 2 - 1].v + (double)s[n / 2].v) / 2;
        /* the beta closest by (distance, sorted position) form a window
         * [lo, hi) of the sorted values: start at the lowest position of
         * least distance, grow it taking the lower side on a tie */
        size_t lo = 0;
        for (size_t q = 1; q < n; q++)
            if (fabs((double)s[q].v - med) < fabs((double)s[lo].v - med)) lo = q;
        size_t hi = lo + 1;
        while (hi - lo < beta) {
            if (lo == 0) hi++;
            else if (hi == n) lo--;
            else if (fabs((double)s[lo - 1].v - med) <= fabs((double)s[hi].v - med)) lo--;
            else hi++;
        }
        double sum = 0;
        for (size_t q = lo; q < hi; q++) {
            sum += s[q].v;
            if (kept) kept[s[q].u]++;
        }
        out[j] = (float)(sum / (double)beta);
    }
    free(s);
}

void ds_rob_nnm(size_t n, const double *d, size_t f, double *a)
{
    val_idx *s = ds_malloc(sizeof(val_idx) * n + 8);
    double *row = ds_malloc(sizeof(double) * n + 8);
    const size_t k = n - f;
    for (size_t i = 0; i < n; i++) {
        /* sort by (distance, index): distances as doubles through an index sort */
        size_t *idx = ds_malloc(sizeof(size_t) * n + 8);
        for (size_t j = 0; j < n; j++) idx[j] = j, row[j] = i == j ? 0 : d[i * n + j];
        for (size_t p = 1; p < n; p++) { /* insertion sort, stable */
            size_t v = idx[p], q = p;
            while (q > 0 && row[idx[q - 1]] > row[v]) idx[q] = idx[q - 1], q--;
            idx[q] = v;
        }
        for (size_t j = 0; j < n; j++) a[i * n + j] = 0;
        for (size_t q = 0; q < k; q++) a[i * n + idx[q]] = 1.0 / (double)k;
        free(idx);
    }
    free(s);
    free(row);
}
