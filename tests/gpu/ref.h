/* Naive CPU references for the CUDA kernels (kernels/cuda/ds_cuda.h), written
 * from the contract in kernels/cpu/bitpack.h, one plain loop per definition.
 * Plain C with no dependency but kernels/half.h. */
#ifndef DS_TESTS_GPU_REF_H
#define DS_TESTS_GPU_REF_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h"

float ref_load(ds_kdtype dt, const void *p, size_t i);
void ref_store(ds_kdtype dt, void *p, size_t i, float f);
void ref_compress(ds_kdtype dt, const void *wf, const void *wb, size_t rows, size_t cols,
                  uint64_t *bits, double *row_abs, double *col_abs);
void ref_apply(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb, const uint64_t *bits,
               size_t rows, size_t cols, ds_scale_kind kind, const float *scale);
void ref_expand(float *dst, const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                const float *scale);
/* out[i*n+j] += H over [w0, w1) for i < j, bit by bit. */
void ref_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint64_t *out);
/* Sort the n values of each coordinate, average the middle n - 2 trim. */
void ref_trimmed_mean(size_t n, const uint64_t *const *v, size_t rows, size_t cols,
                      ds_scale_kind kind, const float *scale, size_t trim, float *out);
/* y_u = x_u W_b^T + x_u (G_u o S_u)^T in double, from bf16 x and W_b. */
void ref_bitdelta_matmul(size_t U, size_t m, size_t n, size_t k, const uint16_t *x,
                         const uint16_t *wb, const uint64_t *bits, ds_scale_kind kind,
                         const float *scale, float *y);
/* sum (a - b)^2 / sum b^2 (0 when both are 0). */
double ref_nmse(const float *a, const float *b, size_t n);
#endif
