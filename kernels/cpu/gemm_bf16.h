/* Kernels for matrix products with the weights in their stored precision:
 * f32, f16 or bf16 weights W [out, in] (row-major, the checkpoint's layout),
 * f32 activations, f32 results. src/gemm_w.h builds the engine's products
 * on them (panels converted for cblas_sgemm, this direct kernel below 8
 * rows and for one token); kernels/ itself uses no BLAS.
 *
 *   ds_gemm_xwt_direct  y[N, out] = beta*y + x[N, in] . W^T, W read once,
 *                       converted in registers (4 rows of W x up to 4 rows
 *                       of x per tile; one row of x: 8 rows of W in flight)
 *   ds_wconv_f32        W's elements as f32 (exact), for the panels
 *
 * Numerics: every product is float(w) * x with float(w) the exact f32 value
 * of the stored f16/bf16 number, so each product is the f32 product of an
 * engine on the rounded weights; sums are accumulated in f32. Only the order
 * of the additions differs between variants (and from BLAS):
 * |y - y_exact| <= 2 * (in + 1) * 2^-24 * (sum_k |x_k w_k| + |beta*y|), see
 * docs/model.md "Numerics and kernels". beta is 0 or 1; with beta 0 the
 * output is not read (it may hold anything, NaN included).
 * Every variant (kernels/cpu/dispatch.h) has a portable _ref twin: the plain
 * definitions in scalar C, summing k = 0..in-1 in order; the conversion is
 * bit-identical across variants. No allocation, no I/O, no MPI, no BLAS. */
#ifndef DS_KERNELS_CPU_GEMM_BF16_H
#define DS_KERNELS_CPU_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h" /* ds_kdtype */

/* The direct kernel of the active variant: y[N, out] = beta*y + x . W^T. */
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
