/* Hamming distances and bit counts over packed sign vectors (the layout of
 * bitpack.h). They feed Krum distances (||g_u s_u - g_v s_v||^2 follows from
 * H(s_u, s_v) with per-tensor scales) and majority votes.
 * Plain names dispatch (dispatch.h); _ref are the portable twins. */
#ifndef DS_KERNELS_CPU_POPCOUNT_H
#define DS_KERNELS_CPU_POPCOUNT_H
#include <stddef.h>
#include <stdint.h>

/* Number of differing bits of a[0..nwords) and b[0..nwords). */
uint64_t ds_hamming(const uint64_t *a, const uint64_t *b, size_t nwords);

/* For n users' packed vectors v[0..n), over words [w0, w1) of each:
 * out[i*n + j] += H(v_i[w0..w1), v_j[w0..w1)) for every i < j; the other
 * entries of out (n x n) are not touched. Accumulating lets callers sum
 * over tensors or word ranges. */
void ds_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint64_t *out);

/* Column-wise popcount for majority votes: for k in [0, 64 (w1 - w0)),
 * counts[k] += number of users u whose bit k of v_u[w0..w1) is 1
 * (bit k = bit k mod 64 of word w0 + k / 64). */
void ds_count_ones(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint32_t *counts);

uint64_t ds_hamming_ref(const uint64_t *a, const uint64_t *b, size_t nwords);
void ds_hamming_pairs_ref(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                          uint64_t *out);
void ds_count_ones_ref(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                       uint32_t *counts);
#endif
