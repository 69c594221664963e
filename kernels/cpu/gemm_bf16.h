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

/* The bf16 x bf16 product (docs/model.md "Numerics and kernels", option
 * (c)): x rounded to bf16 (round to nearest even, as ds_f32_to_bf16) and
 * multiplied by bf16 W with AVX512-BF16 vdpbf16ps: every product of two
 * bf16 is exact in f32, the sums are f32 (the instruction flushes denormal
 * inputs and results to zero). Bound against the f32 product of the
 * unrounded x: |y - beta*y0 - sum_k x_k w_k| <= (2^-8 + 2 (in + 1) 2^-24
 * (1 + 2^-8)) sum_k |x_k w_k| + 2 (in + 1) 2^-24 |beta*y0| + in * 2^-125;
 * against the twin ds_gemm_xwt_dp_ref (same rounded x, k summed in order)
 * twice the f32 part. Used by src/gemm_w.c when DS_GEMM_BF16=dp.
 *
 *   ds_gemm_dp_available  1 when the CPU has avx512_bf16 and the active
 *                         variant is AVX-512 (DS_SIMD), else 0
 *   ds_gemm_dp_xbytes     bytes of x [N, in] packed (64-byte aligned
 *                         buffer wanted)
 *   ds_gemm_dp_pack_x     pack x (rounding it to bf16) into xp
 *   ds_gemm_dp_wbytes     bytes of the per-caller W buffer of _run
 *   ds_gemm_dp_run        y[N, out] (row stride ldy) = beta*y + x . W^T
 *                         for packed x and W [out, in] bf16; wbuf: a
 *                         64-byte aligned buffer of ds_gemm_dp_wbytes(),
 *                         one per concurrent caller. Threads may split
 *                         out (W + o0*in, y + o0): each y element is
 *                         computed the same way wherever it is, so results
 *                         do not depend on the split or on N's batching.
 * beta is 0 (y not read) or 1. _pack_x and _run only when _available. */
int ds_gemm_dp_available(void);
size_t ds_gemm_dp_xbytes(size_t N, size_t in);
void ds_gemm_dp_pack_x(size_t N, size_t in, const float *x, void *xp);
size_t ds_gemm_dp_wbytes(void);
void ds_gemm_dp_run(size_t N, size_t in, size_t out, const void *xp, const uint16_t *W, float beta, float *y,
                    size_t ldy, void *wbuf);
/* The portable twin: scalar C, x rounded as above, k summed in order. */
void ds_gemm_xwt_dp_ref(size_t N, size_t in, size_t out, const float *x, const uint16_t *W, float beta, float *y);
#endif
