/* DeltaSoup aggregation math: order statistics and distances on 1-bit and
 * dense deltas (the conventions are in src/aggregate.h). */
#include "config.h"
#include "src/aggregate.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitstat.h"
#include "kernels/cpu/popcount.h"
#include "src/ds.h"

static inline int pc64(uint64_t x) { return __builtin_popcountll(x); }

/* ---- the users sorted by (|g|, index) at one scale position */
typedef struct {
    float m;
    uint32_t u;
} mag_idx;

static int mag_cmp(const void *pa, const void *pb)
{
    const mag_idx *a = pa, *b = pb;
    if (a->m != b->m) return a->m < b->m ? -1 : 1;
    return a->u < b->u ? -1 : a->u > b->u;
}

static void order_users(size_t n, const float *const *scale, size_t idx, mag_idx *o)
{
    for (size_t u = 0; u < n; u++) {
        o[u].m = fabsf(scale[u][idx]);
        o[u].u = (uint32_t)u;
    }
    qsort(o, n, sizeof *o, mag_cmp);
}

static inline size_t scale_idx(ds_scale_kind kind, size_t r, size_t col)
{
    return kind == DS_SCALE_ROW ? r : kind == DS_SCALE_COL ? col : 0;
}

/* b'_u at (r, col): the sign bit flipped for a negative scale. */
static inline unsigned bprime(const ds_agg_bits *c, size_t W, size_t u, size_t r, size_t col)
{
    unsigned b = (unsigned)(c->bits[u][r * W + col / 64] >> (col % 64)) & 1u;
    return b ^ (c->scale[u][scale_idx(c->kind, r, col)] < 0.0f);
}

void ds_agg_trimmed_bits_ref(const ds_agg_bits *c, size_t k, float *out, uint64_t *kept)
{
    const size_t n = c->n, W = ds_bitpack_words(c->cols), lo = k, hi = n - 1 - k;
    const size_t npos = c->kind == DS_SCALE_COL ? c->cols : 1;
    mag_idx *ords = ds_malloc(sizeof(mag_idx) * n * npos);
    for (size_t p = 0; p < npos && c->kind != DS_SCALE_ROW; p++) order_users(n, c->scale, p, ords + p * n);
    for (size_t r = 0; r < c->rows; r++) {
        if (c->kind == DS_SCALE_ROW) order_users(n, c->scale, r, ords);
        for (size_t col = 0; col < c->cols; col++) {
            const mag_idx *o = ords + (c->kind == DS_SCALE_COL ? col * n : 0);
            size_t c0 = 0, r0 = 0, r1 = 0;
            for (size_t q = 0; q < n; q++) c0 += bprime(c, W, o[q].u, r, col) == 0;
            double s = 0.0;
            for (size_t q = 0; q < n; q++) {
                const unsigned b = bprime(c, W, o[q].u, r, col);
                const size_t pos = b ? c0 + r1++ : c0 - 1 - r0++;
                if (pos < lo || pos > hi) continue;
                s += b ? (double)o[q].m : -(double)o[q].m;
                if (kept) kept[o[q].u]++;
            }
            out[r * c->cols + col] = (float)(s / (double)(hi - lo + 1));
        }
    }
    free(ords);
}

/* ---- fast path (per-tensor and per-row scales): kernels/cpu/bitstat.h.
 * Users at positions q = 0..n-1 in ascending (m, index). Per word of 64
 * coordinates: the users' b' words (B, by position) are transposed into one
 * mask of users per coordinate (T); keep selects the kept positions by rank
 * (K). A few kept values per coordinate (the median) are summed walking the
 * kept bits; many (trimmed mean) through nibble tables of the magnitudes
 * when every signed sum of them is exact in double (sums_exact: any order of
 * the additions gives the same double), else through K transposed back to
 * one mask of coordinates per user and masked adds, 64 coordinates at a
 * time. Either way each coordinate's sum is the _ref twin's: +m or -m of
 * the kept users in ascending position, in double, from 0.0. */
typedef struct {
    size_t n, nw;
    mag_idx *o;
    double *m;            /* |g| by position */
    double *sm;           /* -|g|, +|g| by position (2 q + b') */
    uint64_t *flip;       /* all ones for a negative scale, by position */
    const uint64_t **row; /* the current row of the user at each position */
    uint64_t *B, *T, *K, *pos, *neg; /* 64 * nw each */
    uint64_t *pk;                    /* kept values by position (added to kept per row) */
    ds_poscount pc;                  /* the trimmed mean's kept values by position, bit-sliced (flushed into pk) */
    double acc[64];
    int exact;       /* up to 64 users and every signed sum of m exact in double: tab holds their nibble sums */
    double tab[256]; /* ds_bitstat_tab16 of m */
} fast_state;

static void fast_init(fast_state *s, size_t n)
{
    s->n = n;
    s->nw = (n + 63) / 64;
    const size_t nb = 64 * s->nw;
    s->o = ds_malloc(sizeof(mag_idx) * n);
    s->m = ds_calloc(nb, sizeof(double));
    s->sm = ds_calloc(2 * nb, sizeof(double));
    s->flip = ds_calloc(nb, sizeof(uint64_t));
    s->row = ds_malloc(sizeof(uint64_t *) * n);
    s->B = ds_calloc(nb, sizeof(uint64_t));
    s->T = ds_calloc(nb, sizeof(uint64_t));
    s->K = ds_calloc(nb, sizeof(uint64_t));
    s->pos = ds_calloc(nb, sizeof(uint64_t));
    s->neg = ds_calloc(nb, sizeof(uint64_t));
    s->pk = ds_calloc(nb, sizeof(uint64_t));
    memset(&s->pc, 0, sizeof s->pc);
}

static void fast_free(fast_state *s)
{
    free(s->o), free(s->m), free(s->sm), free(s->flip), free(s->row);
    free(s->B), free(s->T), free(s->K), free(s->pos), free(s->neg), free(s->pk);
}

/* Whether every signed sum of the n magnitudes m (floats, as doubles) is
 * exact in double, so that no order of the additions rounds: each m is a
 * multiple of u, the smallest unit in the last place among the nonzero m
 * (2^(e - 24) for m in [2^(e - 1), 2^e); below a float's, for subnormals);
 * every such sum is then an integer times u, of magnitude at most sum(m), and
 * a double holds every integer times u up to 2^53 u (the computed sum is
 * held to 2^52 u: a factor 2 of margin for its own rounding). NaN or Inf:
 * not exact. */
static int sums_exact(size_t n, const double *m)
{
    double tot = 0.0, u = INFINITY;
    for (size_t q = 0; q < n; q++) {
        if (!(m[q] > 0.0)) {
            if (m[q] != 0.0) return 0;
            continue;
        }
        int e;
        (void)frexp(m[q], &e);
        const double ulp = ldexp(1.0, e - 24);
        u = ulp < u ? ulp : u;
        tot += m[q];
    }
    return tot == 0.0 || (isfinite(tot) && tot <= ldexp(u, 52));
}

static void fast_order(fast_state *s, const float *const *scale, size_t idx)
{
    order_users(s->n, scale, idx, s->o);
    for (size_t q = 0; q < s->n; q++) {
        s->m[q] = (double)s->o[q].m;
        s->sm[2 * q] = -s->m[q];
        s->sm[2 * q + 1] = s->m[q];
        s->flip[q] = scale[s->o[q].u][idx] < 0.0f ? ~0ull : 0;
    }
    s->exact = s->nw == 1 && sums_exact(s->n, s->m);
    if (s->exact) ds_bitstat_tab16(s->n, s->m, s->tab);
}

/* Few kept values per coordinate: walk the kept bits in position order. */
/* x / div, as a multiply when div is a power of two (exact either way). */
static inline float mean_of(double x, double div, double inv, int pow2) { return (float)(pow2 ? x * inv : x / div); }

static void sum_walk(fast_state *s, size_t ncoord, double div, float *out, uint64_t *kept)
{
    const int pow2 = div == 1.0 || div == 2.0;
    const double inv = 1.0 / div;
    if (s->nw == 1 && div == 2.0) { /* the median of an even number, up to 64: two kept bits */
        for (size_t cc = 0; cc < ncoord; cc++) {
            const uint64_t k = s->K[cc], t = s->T[cc];
            const size_t q1 = (size_t)__builtin_ctzll(k), q2 = (size_t)__builtin_ctzll(k & (k - 1));
            const double sum = (0.0 + s->sm[2 * q1 + ((t >> q1) & 1u)]) + s->sm[2 * q2 + ((t >> q2) & 1u)];
            if (kept) s->pk[q1]++, s->pk[q2]++;
            out[cc] = (float)(sum * 0.5);
        }
        return;
    }
    if (s->nw == 1 && div == 1.0) { /* an odd number: one */
        for (size_t cc = 0; cc < ncoord; cc++) {
            const uint64_t k = s->K[cc], t = s->T[cc];
            const size_t q1 = (size_t)__builtin_ctzll(k);
            if (kept) s->pk[q1]++;
            out[cc] = (float)(0.0 + s->sm[2 * q1 + ((t >> q1) & 1u)]);
        }
        return;
    }
    for (size_t cc = 0; cc < ncoord; cc++) {
        double sum = 0.0;
        for (size_t j = 0; j < s->nw; j++)
            for (uint64_t x = s->K[64 * j + cc]; x; x &= x - 1) {
                const unsigned b = (unsigned)__builtin_ctzll(x);
                const size_t q = 64 * j + b;
                sum += s->sm[2 * q + ((s->T[64 * j + cc] >> b) & 1u)]; /* branchless: data dependent */
                if (kept) kept[s->o[q].u]++;
            }
        out[cc] = mean_of(sum, div, inv, pow2);
    }
}

/* Many kept values: K transposed to coordinates per user, masked adds. */
__attribute__((target_clones("popcnt", "default"))) static void sum_masked(fast_state *s, size_t ncoord, double div, float *out, uint64_t *kept)
{
    const uint64_t cmask = ncoord == 64 ? ~0ull : (1ull << ncoord) - 1;
    for (size_t j = 0; j < s->nw; j++) ds_bit_transpose64(s->K + 64 * j);
    for (size_t q = 0; q < s->n; q++) {
        const uint64_t k = s->K[q] & cmask;
        s->pos[q] = k & s->B[q];
        s->neg[q] = k & ~s->B[q];
        if (kept) kept[s->o[q].u] += (uint64_t)__builtin_popcountll(k);
    }
    memset(s->acc, 0, sizeof s->acc);
    ds_bitstat_accum(s->n, s->m, s->pos, s->neg, s->acc);
    for (size_t cc = 0; cc < ncoord; cc++) out[cc] = (float)(s->acc[cc] / div);
}

/* Many kept values, the sums exact: nibble tables of the magnitudes over
 * the kept set and kept clear bits (ds_bitstat_tabsum); the kept values
 * counted by position in bit-sliced counters (ds_poscount), no transpose. */
static void sum_tab(fast_state *s, size_t ncoord, double div, float *out, uint64_t *kept)
{
    ds_bitstat_tabsum(ncoord, s->tab, s->T, s->K, div, out);
    if (!kept) return;
    ds_poscount_add(&s->pc, s->K); /* coordinates >= ncoord and positions >= n are clear */
    if (s->pc.adds == DS_POSCOUNT_ADDS) ds_poscount_flush(&s->pc, s->pk);
}

/* One row of coordinates with the current order. */
static void fast_row(fast_state *s, const ds_agg_bits *c, size_t r, size_t k, float *out, uint64_t *kept)
{
    const size_t n = s->n, W = ds_bitpack_words(c->cols), lo = k, hi = n - 1 - k;
    const double div = (double)(hi - lo + 1);
    const int walk = hi - lo + 1 <= 4 + n / 16;
    for (size_t q = 0; q < n; q++) s->row[q] = c->bits[s->o[q].u] + r * W;
    for (size_t w = 0; w < W; w++) {
        const size_t ncoord = c->cols - 64 * w < 64 ? c->cols - 64 * w : 64;
        if (w % 8 == 0) /* 64 streams, one word each per block: fetch the next lines */
            for (size_t q = 0; q < n; q++) __builtin_prefetch(s->row[q] + w + 16);
        for (size_t q = 0; q < n; q++) s->B[q] = s->row[q][w] ^ s->flip[q];
        memcpy(s->T, s->B, sizeof(uint64_t) * 64 * s->nw);
        for (size_t j = 0; j < s->nw; j++) ds_bit_transpose64(s->T + 64 * j);
        if (ncoord < 64)
            for (size_t j = 0; j < s->nw; j++) memset(s->K + 64 * j + ncoord, 0, sizeof(uint64_t) * (64 - ncoord));
        ds_bitstat_keep(n, s->T, ncoord, lo, hi, s->K);
        if (walk) sum_walk(s, ncoord, div, out + r * c->cols + 64 * w, kept);
        else if (s->exact) sum_tab(s, ncoord, div, out + r * c->cols + 64 * w, kept);
        else sum_masked(s, ncoord, div, out + r * c->cols + 64 * w, kept);
    }
    if (kept && s->pc.adds) ds_poscount_flush(&s->pc, s->pk);
    for (size_t q = 0; kept && q < n; q++) kept[s->o[q].u] += s->pk[q], s->pk[q] = 0;
}

void ds_agg_trimmed_bits(const ds_agg_bits *c, size_t k, float *out, uint64_t *kept)
{
    if (c->kind == DS_SCALE_COL) {
        ds_agg_trimmed_bits_ref(c, k, out, kept);
        return;
    }
    fast_state s;
    fast_init(&s, c->n);
    /* With k = 0 every value is kept: no counting needed. */
    uint64_t *cnt = k > 0 ? kept : NULL;
    for (size_t r = 0; r < c->rows; r++) {
        if (r == 0 || c->kind == DS_SCALE_ROW) fast_order(&s, c->scale, r);
        fast_row(&s, c, r, k, out, cnt);
    }
    if (kept && !cnt)
        for (size_t u = 0; u < c->n; u++) kept[u] += c->rows * c->cols;
    fast_free(&s);
}

/* ---- majority */
void ds_agg_majority_bits_ref(const ds_agg_bits *c, uint64_t *out, uint64_t *agree)
{
    const size_t n = c->n, W = ds_bitpack_words(c->cols);
    memset(out, 0, sizeof(uint64_t) * c->rows * W);
    for (size_t r = 0; r < c->rows; r++)
        for (size_t col = 0; col < c->cols; col++) {
            size_t ones = 0;
            for (size_t u = 0; u < n; u++) ones += bprime(c, W, u, r, col);
            const unsigned b = 2 * ones >= n;
            out[r * W + col / 64] |= (uint64_t)b << (col % 64);
            for (size_t u = 0; agree && u < n; u++) agree[u] += bprime(c, W, u, r, col) == b;
        }
}

void ds_agg_majority_bits(const ds_agg_bits *c, uint64_t *out, uint64_t *agree)
{
    const size_t n = c->n, W = ds_bitpack_words(c->cols);
    uint32_t *counts = ds_malloc(sizeof(uint32_t) * 64 * W);
    const uint64_t **v = ds_malloc(sizeof(uint64_t *) * n);
    uint64_t *flipped = ds_malloc(sizeof(uint64_t) * n * W); /* b' rows of users with negative scales */
    uint64_t *fmask = NULL;                                   /* per-column scales: negative columns */
    if (c->kind == DS_SCALE_COL) {
        fmask = ds_calloc(n * W, sizeof(uint64_t));
        for (size_t u = 0; u < n; u++)
            for (size_t col = 0; col < c->cols; col++)
                if (c->scale[u][col] < 0.0f) fmask[u * W + col / 64] |= 1ull << (col % 64);
    }
    const uint64_t last = c->cols % 64 ? (1ull << (c->cols % 64)) - 1 : ~0ull;
    for (size_t r = 0; r < c->rows; r++) {
        for (size_t u = 0; u < n; u++) {
            const uint64_t *b = c->bits[u] + r * W;
            v[u] = b;
            if (c->kind == DS_SCALE_COL) {
                uint64_t any = 0;
                for (size_t w = 0; w < W; w++) any |= fmask[u * W + w];
                if (!any) continue;
                for (size_t w = 0; w < W; w++) flipped[u * W + w] = b[w] ^ fmask[u * W + w];
            } else {
                if (!(c->scale[u][c->kind == DS_SCALE_ROW ? r : 0] < 0.0f)) continue;
                for (size_t w = 0; w < W; w++) flipped[u * W + w] = ~b[w];
            }
            flipped[u * W + W - 1] &= last;
            v[u] = flipped + u * W;
        }
        memset(counts, 0, sizeof(uint32_t) * 64 * W);
        ds_count_ones(n, v, 0, W, counts);
        uint64_t *o = out + r * W;
        for (size_t w = 0; w < W; w++) {
            uint64_t x = 0;
            for (size_t b = 0; b < 64 && 64 * w + b < c->cols; b++) x |= (uint64_t)(2 * (size_t)counts[64 * w + b] >= n) << b;
            o[w] = x;
        }
        for (size_t u = 0; agree && u < n; u++)
            for (size_t w = 0; w < W; w++) agree[u] += (uint64_t)pc64(~(v[u][w] ^ o[w]) & (w == W - 1 ? last : ~0ull));
    }
    free(counts);
    free(v);
    free(flipped);
    free(fmask);
}

/* ---- dense values */
typedef struct {
    float v;
    uint32_t u;
} val_idx;

static inline int val_less(val_idx a, val_idx b) { return a.v < b.v || (a.v == b.v && a.u < b.u); }

/* Rearrange a[0..n) so that a[kth] is the element of rank kth, smaller ones
 * before it and larger ones after (quickselect, median-of-three pivot; keys
 * are distinct thanks to the index). */
static void select_nth(val_idx *a, size_t n, size_t kth)
{
#define SWAP(x, y) do { val_idx t_ = (x); (x) = (y); (y) = t_; } while (0)
    size_t l = 0, r = n; /* [l, r) */
    while (r - l > 1) {
        const size_t m = l + (r - l) / 2;
        if (val_less(a[m], a[l])) SWAP(a[m], a[l]);
        if (val_less(a[r - 1], a[l])) SWAP(a[r - 1], a[l]);
        if (val_less(a[m], a[r - 1])) SWAP(a[m], a[r - 1]); /* the median now sits at r - 1 */
        const val_idx pivot = a[r - 1];
        size_t s = l;
        for (size_t i = l; i < r - 1; i++)
            if (val_less(a[i], pivot)) {
                SWAP(a[i], a[s]);
                s++;
            }
        SWAP(a[s], a[r - 1]);
        if (kth == s) return;
        if (kth < s) r = s;
        else l = s + 1;
    }
#undef SWAP
}

void ds_agg_trimmed_dense(size_t n, const float *const *x, size_t m, size_t k, float *out, uint64_t *kept)
{
    const double div = (double)(n - 2 * k);
    if (k == 0) {
        for (size_t j = 0; j < m; j++) {
            double s = 0.0;
            for (size_t u = 0; u < n; u++) s += (double)x[u][j];
            out[j] = (float)(s / div);
        }
        for (size_t u = 0; kept && u < n; u++) kept[u] += m;
        return;
    }
    val_idx *a = ds_malloc(sizeof(val_idx) * n);
    unsigned char *keep = ds_calloc(n, 1);
    for (size_t j = 0; j < m; j++) {
        for (size_t u = 0; u < n; u++) a[u] = (val_idx){x[u][j], (uint32_t)u};
        select_nth(a, n, k);
        select_nth(a + k, n - k, n - 1 - 2 * k);
        for (size_t i = k; i < n - k; i++) keep[a[i].u] = 1;
        double s = 0.0;
        for (size_t u = 0; u < n; u++) {
            if (!keep[u]) continue;
            s += (double)x[u][j];
            keep[u] = 0;
            if (kept) kept[u]++;
        }
        out[j] = (float)(s / div);
    }
    free(a);
    free(keep);
}

/* ---- distances */
void ds_agg_majority_scales(size_t n, const float *const *scale, size_t ns, size_t k, float *out)
{
    float *mag = ds_malloc(sizeof(float) * ns * n + 1);
    const float **ptr = ds_malloc(sizeof(float *) * n + 1);
    for (size_t u = 0; u < n; u++) {
        for (size_t j = 0; j < ns; j++) mag[u * ns + j] = fabsf(scale[u][j]);
        ptr[u] = mag + u * ns;
    }
    ds_agg_trimmed_dense(n, ptr, ns, k, out, NULL);
    free(mag);
    free(ptr);
}

void ds_agg_pair_index(size_t n, size_t p, size_t *i, size_t *j)
{
    size_t a = 0;
    while (p >= n - 1 - a) {
        p -= n - 1 - a;
        a++;
    }
    *i = a;
    *j = a + 1 + p;
}

void ds_agg_dist_bits(const ds_agg_bits *c, size_t part, size_t nparts, double *d)
{
    const size_t n = c->n, W = ds_bitpack_words(c->cols), npairs = n * (n - 1) / 2;
    if (c->kind == DS_SCALE_COL) {
        uint32_t *cnt = ds_malloc(sizeof(uint32_t) * (c->cols ? c->cols : 1));
        for (size_t p = part; p < npairs; p += nparts) {
            size_t i, j;
            ds_agg_pair_index(n, p, &i, &j);
            memset(cnt, 0, sizeof(uint32_t) * c->cols);
            for (size_t r = 0; r < c->rows; r++)
                for (size_t w = 0; w < W; w++)
                    for (uint64_t x = c->bits[i][r * W + w] ^ c->bits[j][r * W + w]; x; x &= x - 1)
                        cnt[64 * w + (size_t)__builtin_ctzll(x)]++;
            double s = 0.0;
            const double N = (double)c->rows;
            for (size_t col = 0; col < c->cols; col++) {
                const double a = c->scale[i][col], b = c->scale[j][col];
                s += N * (a - b) * (a - b) + 4.0 * a * b * (double)cnt[col];
            }
            d[i * n + j] += s;
        }
        free(cnt);
        return;
    }
    /* Rows in blocks that keep every user's block in cache while the pairs
     * run over it; a pair's rows are still added in ascending order. */
    size_t blk = (size_t)(1u << 20) / (n * W * 8 + 1);
    if (blk < 1) blk = 1;
    uint64_t *h = c->kind == DS_SCALE_TENSOR ? ds_calloc(npairs ? npairs : 1, sizeof(uint64_t)) : NULL;
    for (size_t r0 = 0; r0 < c->rows; r0 += blk) {
        const size_t nb = c->rows - r0 < blk ? c->rows - r0 : blk;
        size_t i = 0, j = 0;
        for (size_t p = 0; p < npairs; p++) {
            j = p == 0 ? 1 : j + 1;
            if (j == n) j = ++i + 1;
            if (p % nparts != part) continue;
            if (h) {
                h[p] += ds_hamming(c->bits[i] + r0 * W, c->bits[j] + r0 * W, nb * W);
                continue;
            }
            for (size_t r = r0; r < r0 + nb; r++) {
                const double a = c->scale[i][r], b = c->scale[j][r];
                const double hr = (double)ds_hamming(c->bits[i] + r * W, c->bits[j] + r * W, W);
                d[i * n + j] += (double)c->cols * (a - b) * (a - b) + 4.0 * a * b * hr;
            }
        }
    }
    if (h) {
        const double N = (double)c->rows * (double)c->cols;
        for (size_t p = part; p < npairs; p += nparts) {
            size_t i, j;
            ds_agg_pair_index(n, p, &i, &j);
            const double a = c->scale[i][0], b = c->scale[j][0];
            d[i * n + j] += N * (a - b) * (a - b) + 4.0 * a * b * (double)h[p];
        }
        free(h);
    }
}

void ds_agg_dist_dense(size_t n, const float *const *x, size_t m, size_t part, size_t nparts, double *d)
{
    enum { B = 256 };
    double *X = ds_malloc(sizeof(double) * n * B), *G = ds_calloc(n * n, sizeof(double));
    for (size_t j0 = 0; j0 < m; j0 += B) {
        const size_t nb = m - j0 < B ? m - j0 : B;
        for (size_t u = 0; u < n; u++)
            for (size_t t = 0; t < nb; t++) X[u * nb + t] = (double)x[u][j0 + t];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)nb, 1.0, X, (int)nb, 1.0, G, (int)n);
    }
    const size_t npairs = n * (n - 1) / 2;
    for (size_t p = part; p < npairs; p += nparts) {
        size_t i, j;
        ds_agg_pair_index(n, p, &i, &j);
        const double v = G[i * n + i] + G[j * n + j] - 2.0 * G[i * n + j];
        d[i * n + j] += v > 0.0 ? v : 0.0;
    }
    free(X);
    free(G);
}

/* ---- Krum */
static int dbl_cmp(const void *pa, const void *pb)
{
    const double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

void ds_agg_krum_scores(size_t n, const double *d, size_t f, double *score)
{
    double *t = ds_malloc(sizeof(double) * (n ? n : 1));
    for (size_t u = 0; u < n; u++) {
        size_t k = 0;
        for (size_t v = 0; v < n; v++)
            if (v != u) t[k++] = u < v ? d[u * n + v] : d[v * n + u];
        qsort(t, k, sizeof(double), dbl_cmp);
        double s = 0.0;
        for (size_t i = 0; i + f + 2 < n; i++) s += t[i];
        score[u] = s;
    }
    free(t);
}

static const double *sel_score;
static int sel_cmp(const void *pa, const void *pb)
{
    const size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    if (sel_score[a] != sel_score[b]) return sel_score[a] < sel_score[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

void ds_agg_krum_select(size_t n, const double *score, size_t m, unsigned char *sel)
{
    size_t *idx = ds_malloc(sizeof(size_t) * (n ? n : 1));
    for (size_t u = 0; u < n; u++) idx[u] = u;
    sel_score = score;
    qsort(idx, n, sizeof(size_t), sel_cmp);
    memset(sel, 0, n);
    for (size_t i = 0; i < m && i < n; i++) sel[idx[i]] = 1;
    free(idx);
}
