/* Model-merging methods on deltas (src/merge.h). */
#include "config.h"
#include "src/merge.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack.h"
#include "src/ds.h"

/* ---- Philox4x64-10 (Salmon et al. 2011, Random123's philox4x64_R) */
static inline void mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    *lo = (uint64_t)p;
}

void ds_philox4x64(uint64_t c, uint64_t k0, uint64_t k1, uint64_t out[4])
{
    uint64_t x0 = c, x1 = 0, x2 = 0, x3 = 0;
    for (int r = 0; r < 10; r++) {
        if (r) k0 += 0x9E3779B97F4A7C15ull, k1 += 0xBB67AE8584CAA73Bull;
        uint64_t h0, l0, h1, l1;
        mul128(0xD2E7470EE14C6C93ull, x0, &h0, &l0);
        mul128(0xCA5A826395121157ull, x2, &h1, &l1);
        const uint64_t y0 = h1 ^ x1 ^ k0, y2 = h0 ^ x3 ^ k1;
        x0 = y0, x1 = l1, x2 = y2, x3 = l0;
    }
    out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

void ds_merge_uniforms(uint64_t k0, uint64_t k1, uint64_t j0, size_t len, double *u)
{
    uint64_t blk[4], have = UINT64_MAX;
    for (size_t i = 0; i < len; i++) {
        const uint64_t j = j0 + i, c = j / 4 + 1;
        if (c != have) ds_philox4x64(c, k0, k1, blk), have = c;
        u[i] = (double)(blk[j % 4] >> 11) * 0x1.0p-53;
    }
}

uint64_t ds_merge_key(const char *name, size_t u)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return h + (uint64_t)u * 0x9E3779B97F4A7C15ull;
}

/* ---- TIES's threshold */
static int desc_cmp(const void *pa, const void *pb)
{
    const float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b;
}

void ds_merge_threshold(size_t ng, const float *mag, uint64_t each, double density, ds_merge_thr *t)
{
    const uint64_t n = (uint64_t)ng * each, k = (uint64_t)(density * (double)n);
    if (density >= 1 || k >= n) {
        t->m = -1, t->p = 1; /* every magnitude (>= 0) is above */
        return;
    }
    if (k == 0) {
        t->m = INFINITY, t->p = 0;
        return;
    }
    float *s = ds_malloc(sizeof(float) * ng + 1);
    for (size_t i = 0; i < ng; i++) s[i] = fabsf(mag[i]);
    qsort(s, ng, sizeof(float), desc_cmp);
    const float m = s[(k - 1) / each];
    uint64_t above = 0, eq = 0;
    for (size_t i = 0; i < ng; i++) above += s[i] > m, eq += s[i] == m;
    free(s);
    t->m = m;
    t->p = (double)(k - above * each) / (double)(eq * each);
}

/* ---- the per-coordinate mix */
static int uses_u(const ds_merge *mg, const ds_merge_thr *t)
{
    if (mg->kind == DS_MERGE_DARE_TIES || mg->kind == DS_MERGE_DARE_LINEAR) return 1;
    return mg->kind == DS_MERGE_TIES && t->p > 0 && t->p < 1;
}

/* One user's sparsified value of x at a coordinate with uniform u. */
static inline double sparsify(const ds_merge *mg, const ds_merge_thr *t, double x, double u, int *keep)
{
    switch (mg->kind) {
    case DS_MERGE_TIES: {
        const double a = fabs(x);
        *keep = a > t->m || (a == t->m && u < t->p);
        return *keep ? x : 0;
    }
    case DS_MERGE_DARE_TIES:
    case DS_MERGE_DARE_LINEAR:
        *keep = u < mg->density;
        return *keep ? x / mg->density : 0;
    default:
        *keep = 1;
        return x;
    }
}

/* t[u * cols + c] (sparsified values) and keep flags of one row -> out.
 * Users in the outer loop (rows of t in order, cache-friendly); each
 * coordinate's sums are still formed in user order. acc: 3 x cols doubles. */
static void mix_row(const ds_merge *mg, size_t n, size_t cols, const double *t, const unsigned char *keep, double *acc,
                    float *out, uint64_t *kept)
{
    const int consensus = mg->kind == DS_MERGE_TIES || mg->kind == DS_MERGE_DARE_TIES;
    double *sum = acc, *div = acc + cols, *s = acc + 2 * cols;
    memset(acc, 0, sizeof(double) * 3 * cols);
    if (consensus) {
        for (size_t u = 0; u < n; u++) {
            const double w = mg->w ? mg->w[u] : 1.0, *tu = t + u * cols;
            for (size_t c = 0; c < cols; c++) s[c] += w * tu[c];
        }
        for (size_t c = 0; c < cols; c++) s[c] = s[c] >= 0 ? 1 : -1;
    }
    for (size_t u = 0; u < n; u++) {
        const double w = mg->w ? mg->w[u] : 1.0, *tu = t + u * cols;
        const unsigned char *ku = keep + u * cols;
        uint64_t k = 0;
        if (consensus) {
            for (size_t c = 0; c < cols; c++) {
                const double v = tu[c], sg = (v > 0) - (v < 0);
                if (!ku[c] || sg != s[c]) continue;
                sum[c] += w * v;
                div[c] += w;
                k++;
            }
        } else {
            for (size_t c = 0; c < cols; c++) {
                sum[c] += w * tu[c];
                div[c] += w;
                k += ku[c];
            }
        }
        if (kept) kept[u] += k;
    }
    for (size_t c = 0; c < cols; c++) {
        double v = sum[c];
        if (mg->normalize) {
            double d = div[c];
            if (consensus ? d == 0 : fabs(d) < 1e-8) d = 1;
            v /= d;
        }
        out[c] = (float)(v * mg->lambda);
    }
}

typedef struct {
    double *t, *u, *acc;
    unsigned char *keep;
} row_bufs;

static void bufs_init(row_bufs *b, size_t n, size_t cols)
{
    b->t = ds_malloc(sizeof(double) * n * cols + 8);
    b->u = ds_malloc(sizeof(double) * cols + 8);
    b->acc = ds_malloc(sizeof(double) * 3 * cols + 8);
    b->keep = ds_malloc(n * cols + 1);
}

static void bufs_free(row_bufs *b) { free(b->t), free(b->u), free(b->acc), free(b->keep); }

void ds_merge_bits(const ds_merge *mg, const ds_agg_bits *c, uint64_t j0, const uint64_t *key, const ds_merge_thr *thr,
                   float *out, uint64_t *kept)
{
    const size_t n = c->n, cols = c->cols, W = ds_bitpack_words(cols);
    const ds_merge_thr all = {-1, 1};
    row_bufs b;
    bufs_init(&b, n, cols);
    for (size_t r = 0; r < c->rows; r++) {
        const uint64_t jr = j0 + (uint64_t)r * cols;
        for (size_t u = 0; u < n; u++) {
            const ds_merge_thr *t = thr ? &thr[u] : &all;
            const int need = uses_u(mg, t);
            if (need) ds_merge_uniforms(mg->seed, key[u], jr, cols, b.u);
            const uint64_t *bits = c->bits[u] + r * W;
            for (size_t col = 0; col < cols; col++) {
                const size_t si = c->kind == DS_SCALE_ROW ? r : c->kind == DS_SCALE_COL ? col : 0;
                const double g = c->scale[u][si];
                const double x = (bits[col / 64] >> (col % 64)) & 1 ? g : -g;
                int k;
                b.t[u * cols + col] = sparsify(mg, t, x, need ? b.u[col] : 0, &k);
                b.keep[u * cols + col] = (unsigned char)k;
            }
        }
        mix_row(mg, n, cols, b.t, b.keep, b.acc, out + r * cols, kept);
    }
    bufs_free(&b);
}

void ds_merge_dense(const ds_merge *mg, size_t n, const float *const *x, size_t rows, size_t cols, uint64_t j0,
                    const uint64_t *key, const ds_merge_thr *thr, float *out, uint64_t *kept)
{
    const ds_merge_thr all = {-1, 1};
    row_bufs b;
    bufs_init(&b, n, cols);
    for (size_t r = 0; r < rows; r++) {
        const uint64_t jr = j0 + (uint64_t)r * cols;
        for (size_t u = 0; u < n; u++) {
            const ds_merge_thr *t = thr ? &thr[u] : &all;
            const int need = uses_u(mg, t);
            if (need) ds_merge_uniforms(mg->seed, key[u], jr, cols, b.u);
            for (size_t col = 0; col < cols; col++) {
                int k;
                b.t[u * cols + col] = sparsify(mg, t, x[u][r * cols + col], need ? b.u[col] : 0, &k);
                b.keep[u * cols + col] = (unsigned char)k;
            }
        }
        mix_row(mg, n, cols, b.t, b.keep, b.acc, out + r * cols, kept);
    }
    bufs_free(&b);
}
