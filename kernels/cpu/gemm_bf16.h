/* Matrix products with the weights in their stored precision: f32, f16 or
 * bf16 weights W [out, in] (row-major, the checkpoint's layout), f32
 * activations, f32 results.
 *
 *   ds_gemm_xwt   y[N, out]  = beta*y  + x[N, in] . W^T    (forward)
 *   ds_gemm_xw    dx[N, in]  = beta*dx + dy[N, out] . W    (backward, dL/dx)
 *   ds_gemv_w     y[out]     = beta*y  + W . x[in]         (one token)
 *
 * Numerics: every product is float(w) * x with float(w) the exact f32 value
 * of the stored f16/bf16 number (the conversion is exact), so each product
 * is the f32 product of the engine on the rounded weights; sums are
 * accumulated in f32. Only the order of the additions differs between the
 * paths (and from a f32 engine): |y - y_exact| <= 2 * in * 2^-24 *
 * sum_k |x_k w_k| (+ the same bound on beta*y's own rounding), see
 * docs/model.md "Numerics and kernels". beta is 0 or 1; with beta 0 the
 * output is not read (it may hold anything, NaN included).
 *
 * How (measured in bench/gemm_bf16.c, figures in docs/model.md):
 *  - f32 weights: cblas_sgemm / cblas_sgemv, exactly as an all-f32 engine;
 *  - N >= DS_GEMM_DIRECT_N with a scratch: panels of rows of W converted to
 *    f32 into the scratch (SIMD, exact) and multiplied by cblas_sgemm;
 *  - fewer rows (one-token generation, short continuations) or no scratch:
 *    a direct kernel that converts W on the fly in registers and reads it
 *    once (memory bound: half the bytes of f32 weights).
 * Every variant (kernels/cpu/dispatch.h) has a portable _ref twin: the
 * plain definitions below in scalar C, summing k = 0..in-1 in order.
 * No allocation, no I/O, no MPI. */
#ifndef DS_KERNELS_CPU_GEMM_BF16_H
#define DS_KERNELS_CPU_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h" /* ds_kdtype */

/* Below this many rows of x the direct kernel beats converting panels. */
#define DS_GEMM_DIRECT_N 8
/* A scratch of this many floats (4 MiB) holds a panel of W rows in f32. */
#define DS_GEMM_SCRATCH_FLOATS ((size_t)1 << 20)

/* scratch: NULL or scratch_n floats (used when scratch_n >= in, else the
 * direct kernel runs for any N). */
void ds_gemm_xwt(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                 float *y, float *scratch, size_t scratch_n);
void ds_gemm_xw(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W, float beta,
                float *dx, float *scratch, size_t scratch_n);
void ds_gemv_w(ds_kdtype dt, size_t in, size_t out, const void *W, const float *x, float beta, float *y);

/* The direct kernel of the active variant alone (no BLAS), for tests and
 * benchmarks: y[N, out] = beta*y + x . W^T. */
void ds_gemm_xwt_direct(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                        float *y);
/* dst[i] = float(src[i]), i < n (exact), active variant. */
void ds_wconv_f32(ds_kdtype dt, const void *src, float *dst, size_t n);

/* The portable definitions. */
void ds_gemm_xwt_ref(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                     float *y);
void ds_gemm_xw_ref(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W, float beta,
                    float *dx);
void ds_wconv_f32_ref(ds_kdtype dt, const void *src, float *dst, size_t n);

/* Option (c) of docs/model.md, for the benchmark only (not used by the
 * engine): AVX512-BF16 vdpbf16ps on x rounded to bf16 (xb [N, in], bf16)
 * and bf16 W: bf16 x bf16 products, f32 sums. Returns -1 (nothing done)
 * when the CPU lacks avx512_bf16. */
int ds_gemm_xwt_dpbf16(size_t N, size_t in, size_t out, const uint16_t *xb, const uint16_t *W, float *y);
#endif
