/* CUDA twins of the CPU kernels (kernels/cpu/bitpack.h, popcount.h) and the
 * GPU-only serving / aggregation kernels. Plain C API, callable from C.
 *
 * Results: the bit layout, the dtypes (ds_kdtype), the scale kinds
 * (ds_scale_kind) and the summation order of |delta| sums are those of
 * kernels/cpu/bitpack.h, so sign bits and |delta| sums are bit-identical to
 * the CPU kernels, and apply / expand give the same rounded values.
 *
 * Conventions: every pointer named d_* is device memory; host arrays are
 * named without the prefix. Work is enqueued on `stream` (0 = the legacy
 * default stream) and is asynchronous: a launch failure is reported at once,
 * a failure while running at the next synchronisation. Functions return 0,
 * or -1 after recording a one-line message for ds_cuda_errmsg(). No MPI, no
 * I/O: tests/gpu and bench/gpu build these with nvcc and gcc alone. */
#ifndef DS_KERNELS_CUDA_DS_CUDA_H
#define DS_KERNELS_CUDA_DS_CUDA_H
#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "kernels/cpu/bitpack.h"

/* Number of usable GPUs; 0 when there is none, no driver, or a driver too
 * old for this runtime (cudaGetDeviceCount error 35): all read as "no GPU". */
int ds_cuda_device_count(void);
/* Why cudaGetDeviceCount found no GPU ("" when it found one). */
const char *ds_cuda_no_device_reason(void);

/* The last failure of a ds_cuda_* call in this thread ("" if none). */
const char *ds_cuda_errmsg(void);

/* Sign-pack: the twin of ds_bitpack_compress. d_wf, d_wb: rows x cols of
 * type dt. Writes every word of d_bits (rows x ds_bitpack_words(cols)),
 * d_row_abs[i] = sum_j |delta_ij| (NULL: not computed) and, when d_col_abs
 * is not NULL, adds sum_i |delta_ij| to d_col_abs[j] (the caller zeroes it). */
int ds_cuda_bitpack_compress(ds_kdtype dt, const void *d_wf, const void *d_wb, size_t rows,
                             size_t cols, uint64_t *d_bits, double *d_row_abs,
                             double *d_col_abs, cudaStream_t stream);

/* Apply: the twin of ds_bitpack_apply. d_out = convert(float(W_b) + g(2b-1));
 * d_out may be d_wb (in place) when out_dt == in_dt. d_scale: 1, rows or
 * cols floats (device) as kind says. */
int ds_cuda_bitpack_apply(ds_kdtype out_dt, void *d_out, ds_kdtype in_dt, const void *d_wb,
                          const uint64_t *d_bits, size_t rows, size_t cols, ds_scale_kind kind,
                          const float *d_scale, cudaStream_t stream);

/* Expand: the twin of ds_bitpack_expand. d_dst = g(2b-1) in float32. */
int ds_cuda_bitpack_expand(float *d_dst, const uint64_t *d_bits, size_t rows, size_t cols,
                           ds_scale_kind kind, const float *d_scale, cudaStream_t stream);

/* Pairwise Hamming distances: the twin of ds_hamming_pairs. v: host array of
 * n device pointers to packed vectors; over words [w0, w1) of each, adds
 * H(v_i, v_j) to d_out[i*n + j] for every i < j (d_out: n x n, device); the
 * other entries are not touched. Integer counts: bit-identical to the CPU. */
int ds_cuda_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                          uint64_t *d_out, cudaStream_t stream);

/* Coordinate-wise trimmed mean over n users of the 1-bit deltas
 * v_u,ij = g_u (2 b_u,ij - 1) of a rows x cols tensor: per coordinate drop
 * the `trim` lowest and `trim` highest of the n values and average the rest
 * (2 trim < n). trim = 0 gives the mean, trim = (n - 1) / 2 the median (the
 * mean of the two middle values when n is even). v: host array of n device
 * pointers to packed bits (rows x ds_bitpack_words(cols) words each);
 * scale: HOST floats, kind DS_SCALE_TENSOR (scale[u]) or DS_SCALE_ROW
 * (scale[u * rows + i]); any sign. Sums in double, result rounded to float
 * into d_out (rows x cols). No delta is expanded: the order statistics come
 * from the bits and the users sorted by |g|. */
int ds_cuda_trimmed_mean(size_t n, const uint64_t *const *v, size_t rows, size_t cols,
                         ds_scale_kind kind, const float *scale, size_t trim, float *d_out,
                         cudaStream_t stream);

/* Batched BitDelta product for U users sharing one base layer (the serving
 * decomposition; no per-user weight is materialised):
 *   y_u = x_u W_b^T + x_u (G_u o S_u)^T,  S_u = 2 b_u - 1,
 * with d_x bf16 [U][m][k] (m tokens per user), d_wb bf16 [n][k] (row-major,
 * the Hugging Face layout of a Linear weight), d_bits [U][n][words(k)],
 * d_scale float (device): per user 1 (DS_SCALE_TENSOR), n (DS_SCALE_ROW, one
 * per output) or k (DS_SCALE_COL, one per input) values, user-major; d_y
 * float [U][m][n]. The base product is one cuBLAS bf16 GEMM over all U*m
 * rows (float accumulation); the 1-bit part is a kernel that reads the packed
 * bits. cublas: a handle of the current device (its stream is set to
 * `stream`). Needs k * 4 bytes of shared memory per token (k up to about
 * 57000 on sm_90, 41000 on sm_80). */
int ds_cuda_bitdelta_matmul(cublasHandle_t cublas, size_t U, size_t m, size_t n, size_t k,
                            const uint16_t *d_x, const uint16_t *d_wb, const uint64_t *d_bits,
                            ds_scale_kind kind, const float *d_scale, float *d_y,
                            cudaStream_t stream);
#ifdef __cplusplus
}
#endif
#endif
