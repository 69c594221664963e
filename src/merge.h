/* Model-merging methods on deltas (docs/aggregate.md "Merging methods"):
 * task arithmetic, TIES, DARE-TIES and DARE-linear as mergekit defines them
 * (mergekit/merge_methods/generalized_task_arithmetic.py, sparsify.py), on
 * 1-bit deltas (packed signs + scales, read from the bits) and on dense
 * deltas. No I/O and no MPI: jobs/aggregate.c streams chunks of rows
 * (io/agg_stream.h) into these functions; every coordinate's result depends
 * on the users' values there, the per-(user, tensor) trim thresholds and the
 * counter-based generator only, so it is the same at any number of ranks.
 *
 * Per user u (weight w_u, 1 unless given) and coordinate j of a tensor:
 *   value     x_u = g_u (2 b_u - 1) (1-bit) or the dense value;
 *   sparsify  TIES: keep x_u when |x_u| is in the user's top-D fraction of
 *             the tensor (ds_merge_thr); DARE: keep with probability D
 *             (U_u(j) < D) and divide by D (the DARE paper's rescale; the
 *             1/D of mergekit's `rescale`, not the L1-norm matching of its
 *             later `rescale_norm`); task arithmetic: keep all;
 *   consensus (ties, dare-ties) the elected sign s = +1 when sum_u w_u t_u
 *             >= 0, else -1 (mergekit's "sum" consensus; on 1-bit deltas a
 *             magnitude-weighted majority vote of the bits); only values
 *             with sign(t_u) == s count (zeros never do);
 *   mix       sum_u w_u t_u over the counted values, divided (normalize:
 *             ties only, mergekit's default) by sum_u w_u over them (a zero
 *             divisor counts as 1), times lambda.
 * Sums in double in user order, rounded to float once.
 *
 * The generator: U_u(j) = (P_u(j) >> 11) * 2^-53 with P_u(j) the j-th 64-bit
 * output of the Philox4x64-10 stream with key (seed, ds_merge_key(tensor
 * name, u)) and counter blocks 1, 2, ... (block c gives outputs 4(c-1) ..
 * 4(c-1)+3): numpy's Generator(Philox(key=[k0, k1])).random() sequence.
 * j is the flat row-major index in the tensor. */
#ifndef DS_MERGE_H
#define DS_MERGE_H
#include <stddef.h>
#include <stdint.h>
#include "src/aggregate.h"

typedef enum { DS_MERGE_TA, DS_MERGE_TIES, DS_MERGE_DARE_TIES, DS_MERGE_DARE_LINEAR } ds_merge_kind;

typedef struct {
    ds_merge_kind kind;
    double density; /* (0, 1] */
    double lambda;
    uint64_t seed;
    int normalize;   /* divide by the counted weights (ties: 1) */
    const double *w; /* per-user weights (n), NULL: all 1 */
} ds_merge;

/* TIES's trim of one user's tensor: keep a coordinate of magnitude a when
 * a > m, or a == m and U_u(j) < p. K = floor(D N) coordinates of the N are
 * kept in expectation: all of larger magnitude, and those of the boundary
 * magnitude m (whose count is E) each with probability p = (K - above) / E
 * (ties at equal magnitude, e.g. every coordinate of a tensor with one
 * scale, broken by the counter-based generator). D >= 1: all kept. */
typedef struct {
    double m, p;
} ds_merge_thr;

/* The threshold of ng magnitude groups, group i holding `each` coordinates
 * of magnitude mag[i] (1-bit: one group per scale, each = the coordinates
 * it covers; dense: each = 1). */
void ds_merge_threshold(size_t ng, const float *mag, uint64_t each, double density, ds_merge_thr *t);

/* The second key word of user u's stream for a tensor: FNV-1a-64 of the
 * name plus u * 0x9E3779B97F4A7C15 (mod 2^64). */
uint64_t ds_merge_key(const char *name, size_t u);
/* Philox4x64-10 of counter (c, 0, 0, 0) and key (k0, k1). */
void ds_philox4x64(uint64_t c, uint64_t k0, uint64_t k1, uint64_t out[4]);
/* U(j) for j in [j0, j0 + len) of the stream (k0, k1) into u. */
void ds_merge_uniforms(uint64_t k0, uint64_t k1, uint64_t j0, size_t len, double *u);

/* A chunk of a coded tensor (c: n users, rows x cols) whose first
 * coordinate is the tensor's flat index j0: out[rows * cols] as above.
 * key[u]: ds_merge_key of the tensor for user u; thr[u]: TIES's thresholds
 * (NULL otherwise). kept[u] += coordinates where u's value was counted. */
void ds_merge_bits(const ds_merge *mg, const ds_agg_bits *c, uint64_t j0, const uint64_t *key, const ds_merge_thr *thr,
                   float *out, uint64_t *kept);
/* The same on dense values: x[u] points at user u's rows * cols floats. */
void ds_merge_dense(const ds_merge *mg, size_t n, const float *const *x, size_t rows, size_t cols, uint64_t j0,
                    const uint64_t *key, const ds_merge_thr *thr, float *out, uint64_t *kept);
#endif
