/* DeltaSoup aggregation math (docs/aggregate.md): per-coordinate order
 * statistics over n users' values and pairwise squared L2 distances, on
 * 1-bit deltas (packed signs + scales, never expanded to one float per user
 * per coordinate) and on dense deltas. No I/O and no MPI: jobs/aggregate.c
 * streams chunks of rows (io/agg_stream.h) into these functions.
 *
 * Values. User u's value at a coordinate of a coded tensor is
 * v_u = g_u (2 b_u - 1) with g_u the scale that covers the coordinate (one
 * per tensor, row or column). With m_u = |g_u| and b'_u = b_u XOR (g_u < 0),
 * v_u = m_u (2 b'_u - 1): the sorted values are the b' = 0 users by
 * descending (m, index), then the b' = 1 users by ascending (m, index). That
 * order, the "value order", also breaks ties between equal values, and it
 * decides which users are "kept" at a coordinate. Dense values are ordered
 * by (value, index).
 *
 * Trimmed mean with k: drop the k lowest and k highest values of the value
 * order, average the rest (sum in double, rounded to float). k = 0 is the
 * mean, k = (n - 1) / 2 the median (the mean of the two middle values when n
 * is even). Majority: output bit 1 when at least half of the users have
 * b' = 1 (a tie gives 1, as "delta >= 0" does in BitDelta). */
#ifndef DS_AGGREGATE_H
#define DS_AGGREGATE_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h"

/* One chunk of a coded tensor for n users: rows x cols coordinates.
 * bits[u]: user u's rows * ds_bitpack_words(cols) words (row-major, padding
 * bits 0). scale[u]: user u's scales covering these rows: 1 value
 * (DS_SCALE_TENSOR), rows values (DS_SCALE_ROW) or cols values (DS_SCALE_COL).
 * Scales must be finite. */
typedef struct {
    size_t n, rows, cols;
    ds_scale_kind kind;
    const uint64_t *const *bits;
    const float *const *scale;
} ds_agg_bits;

/* out[rows * cols] = per-coordinate trimmed mean with k (2k < n). When kept
 * is not NULL, kept[u] += the number of coordinates where u's value was one
 * of the n - 2k kept. Per-tensor and per-row scales go through 64 x 64 bit
 * transposes, one bit mask of users per coordinate and byte tables of scale
 * sums; per-column scales through the scalar path of the _ref twin. */
void ds_agg_trimmed_bits(const ds_agg_bits *c, size_t k, float *out, uint64_t *kept);
/* The definition: per coordinate, walk the users in ascending (m, index). */
void ds_agg_trimmed_bits_ref(const ds_agg_bits *c, size_t k, float *out, uint64_t *kept);

/* Majority vote: out (rows * words) gets the output bits (padding 0); when
 * agree is not NULL, agree[u] += the number of coordinates where b'_u equals
 * the output bit. */
void ds_agg_majority_bits(const ds_agg_bits *c, uint64_t *out, uint64_t *agree);
void ds_agg_majority_bits_ref(const ds_agg_bits *c, uint64_t *out, uint64_t *agree);
/* The scales of a majority-voted chunk: out[j] = trimmed mean with k of the
 * n users' |scale[u][j]|, j < ns (the magnitudes through
 * ds_agg_trimmed_dense). */
void ds_agg_majority_scales(size_t n, const float *const *scale, size_t ns, size_t k, float *out);

/* Dense values: x[u] points at user u's m floats (finite). out[m] = the
 * per-coordinate trimmed mean with k (2k < n; kept values summed in user
 * order, in double); kept as above. Selection, not a full sort. */
void ds_agg_trimmed_dense(size_t n, const float *const *x, size_t m, size_t k, float *out,
                          uint64_t *kept);

/* ---- distances. d is n x n (row-major); only d[i * n + j] with i < j is
 * used. Pairs are numbered p = 0, 1, ... in the order (0,1), (0,2), ...,
 * (1,2), ...; a call adds the chunk's squared distances of the pairs with
 * p % nparts == part only, so ranks can split the pairs while each pair's
 * sum is formed in the same order whatever the number of ranks. */
void ds_agg_pair_index(size_t n, size_t p, size_t *i, size_t *j);
/* Coded chunk, exact from Hamming counts (XOR + popcount):
 *   per tensor: N (g_u^2 + g_v^2) - 2 g_u g_v (N - 2 H), N = rows * cols;
 *   per row: the same per row with N = cols; per column with N = rows. */
void ds_agg_dist_bits(const ds_agg_bits *c, size_t part, size_t nparts, double *d);
/* Dense chunk: Gram matrix G = X X^T in double (cblas_dsyrk over blocks of
 * coordinates), then ||x_u - x_v||^2 = G_uu + G_vv - 2 G_uv (at least 0). */
void ds_agg_dist_dense(size_t n, const float *const *x, size_t m, size_t part, size_t nparts,
                       double *d);

/* Krum: score[u] = sum of the n - f - 2 smallest d(u, v), v != u (summed in
 * ascending order); needs n >= f + 3 (the job asks n >= 2f + 3). */
void ds_agg_krum_scores(size_t n, const double *d, size_t f, double *score);
/* The m lowest scores (ties: lower index): sel[u] = 1 for them, else 0. */
void ds_agg_krum_select(size_t n, const double *score, size_t m, unsigned char *sel);
#endif
