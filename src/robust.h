/* Robust aggregators that need global distances between whole deltas
 * (docs/aggregate.md "Robust aggregators"): geometric median (RFA's smoothed
 * Weiszfeld), centered clipping, Bulyan, nearest-neighbour mixing. No I/O
 * and no MPI.
 *
 * They run on the n x n Gram matrix G (G_uv = <x_u, x_v> over all tensors):
 * every iterate of Weiszfeld and of centered clipping, and every mixed delta
 * of NNM, is a linear combination sum_u c_u x_u of the inputs, whose
 * distance to x_j is sqrt(G_jj - 2 (G c)_j + c^T G c). So one pass over the
 * data gives G (the pairwise squared distances D of Krum, from popcounts on
 * 1-bit deltas, plus the squared norms), the iterations run on G, and one
 * output pass writes sum_u c_u x_u (src/merge.h's weighted sum). Bulyan's
 * coordinate step reads the values themselves. */
#ifndef DS_ROBUST_H
#define DS_ROBUST_H
#include <stddef.h>
#include <stdint.h>
#include "src/aggregate.h"

/* ---- squared norms of a chunk, user u added by part u % nparts (as the
 * distance pairs are split), in chunk order. */
void ds_rob_norms_bits(const ds_agg_bits *c, size_t part, size_t nparts, double *norm2);
void ds_rob_norms_dense(size_t n, const float *const *x, size_t m, size_t part, size_t nparts, double *norm2);

/* G (n x n, full) from D (upper triangle, as ds_agg_dist_*) and norm2:
 * G_uu = norm2_u, G_uv = (norm2_u + norm2_v - D_uv) / 2. */
void ds_rob_gram(size_t n, const double *d, const double *norm2, double *g);
/* D (full, symmetric, zero diagonal) from G. */
void ds_rob_dist(size_t n, const double *g, double *d);
/* G' = A G A^T with A m x n (the Gram matrix of the mixed deltas A x). */
void ds_rob_mix_gram(size_t m, size_t n, const double *a, const double *g, double *out);

/* Geometric median by RFA's smoothed Weiszfeld (Pillutla, Kakade, Harchaoui
 * 2022, Algorithm 3): alpha_u = 1/n; c = alpha (the weighted mean); repeat:
 * w_u = alpha_u / max(eps, ||v - x_u||), c = w / sum w, until
 * |obj_prev - obj| < tol * obj (obj = sum alpha_u ||v - x_u||) or max_iter
 * updates. c (n): the median's coefficients; returns the updates made. */
int ds_rob_geomed(size_t n, const double *g, double eps, double tol, int max_iter, double *c, double *obj);

/* Centered clipping (Karimireddy, He, Jaggi 2021): v = 0; L times
 * v += (1/n) sum_u (x_u - v) min(1, tau / ||x_u - v||) (a zero distance
 * counts with factor 1). c (n): v's coefficients. */
void ds_rob_cclip(size_t n, const double *g, double tau, int iters, double *c);

/* Bulyan (El Mhamdi, Guerraoui, Rouault 2018): the job selects theta =
 * n - 2f deltas by Krum's scores (ds_agg_krum_scores / _select: the n - 2f
 * lowest); then this coordinate step on n = theta values per coordinate (x[u] points at m
 * floats): sort by (value, index), median = the middle value (the mean of
 * the two middle for even n), keep the beta values closest to it (ties in
 * distance: the lower in the sorted order), out = their mean (summed in
 * sorted order, in double). kept[u] += coordinates where u was kept. */
void ds_rob_bulyan_dense(size_t n, const float *const *x, size_t m, size_t beta, float *out, uint64_t *kept);

/* Nearest-neighbour mixing (Allouah et al. 2023): row i of a (n x n) is
 * 1/(n-f) on the n - f deltas nearest x_i by D (full) including x_i itself
 * (ties: lower index), 0 elsewhere. */
void ds_rob_nnm(size_t n, const double *d, size_t f, double *a);
#endif
