/* The engine's products with weights in their stored precision (f32, f16,
 * bf16 W [out, in]; f32 activations and results), on the kernels of
 * kernels/cpu/gemm_bf16.h and OpenBLAS:
 *
 *   ds_gemm_xwt   y[N, out]  = beta*y  + x[N, in] . W^T    (forward)
 *   ds_gemm_xw    dx[N, in]  = beta*dx + dy[N, out] . W    (backward, dL/dx)
 *   ds_gemv_w     y[out]     = beta*y  + W . x[in]         (one token)
 *
 * f32 weights: cblas_sgemm / cblas_sgemv, exactly as an all-f32 engine.
 * f16/bf16 and N >= DS_GEMM_DIRECT_N with a scratch: panels of rows of W
 * converted to f32 into the scratch (exact) and multiplied by cblas_sgemm;
 * fewer rows, the one-token product, or no scratch: the direct kernel
 * (ds_gemm_xwt_direct; ds_gemm_xw falls back to ds_gemm_xw_ref). The
 * numerics and bound are gemm_bf16.h's (bf16 x f32 products, f32 sums);
 * measured in bench/gemm_bf16.c, figures in docs/model.md.
 *
 * Mode DS_GEMM_DP (environment DS_GEMM_BF16=dp, or ds_gemm_set_mode; only
 * where ds_gemm_dp_available: avx512_bf16 and the AVX-512 variant active):
 * ds_gemm_xwt with bf16 W and N >= DS_GEMM_DIRECT_N rows rounds x to bf16
 * and runs the vdpbf16ps kernel (gemm_bf16.h ds_gemm_dp_*: bf16 x bf16
 * products, f32 sums, its bound) on the threads OpenBLAS is set to
 * (openblas_get_num_threads() or ds_gemm_set_threads; one below 2^24
 * multiply-adds; a pool kept for the process, ds_gemm_parallel), each
 * packing its share of x's rows and then computing a slice of out; the
 * scratch holds the packed x (in chunks of rows) and the threads' W
 * buffers. Results do not depend on the threads or on the
 * chunks. Everything else (f32 and f16 weights, fewer rows, one token, the
 * backward product) is as in mode DS_GEMM_EXACT, the default. */
#ifndef DS_GEMM_W_H
#define DS_GEMM_W_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/gemm_bf16.h"

/* Below this many rows of x the direct kernel beats converting panels. */
#define DS_GEMM_DIRECT_N 8
/* A scratch of this many floats (4 MiB) holds a panel of W rows in f32. */
#define DS_GEMM_SCRATCH_FLOATS ((size_t)1 << 20)

typedef enum { DS_GEMM_EXACT = 0, DS_GEMM_DP = 1 } ds_gemm_mode;
/* The mode in force: DS_GEMM_DP when it was asked for (DS_GEMM_BF16=dp,
 * read on first use, or ds_gemm_set_mode) and ds_gemm_dp_available() now
 * (DS_SIMD, ds_simd_force), else DS_GEMM_EXACT. */
ds_gemm_mode ds_gemm_get_mode(void);
/* Set it for the whole process; -1 (nothing changed) when DS_GEMM_DP is
 * asked for and not available. */
int ds_gemm_set_mode(ds_gemm_mode m);
const char *ds_gemm_mode_name(ds_gemm_mode m);
/* Threads of the DS_GEMM_DP product: n >= 1, or 0 (the default) for
 * OpenBLAS's count. */
void ds_gemm_set_threads(int n);
/* The threads the DS_GEMM_DP product and ds_gemm_parallel's users take:
 * ds_gemm_set_threads's n, else openblas_get_num_threads(), in 1..16. */
int ds_gemm_threads(void);

/* Run fn(arg, t, T) for t = 0..T-1 on the DP product's pool of threads
 * (started on first use, kept; t = 0 on the caller); returns the T that
 * ran: 1 (fn(arg, 0, 1) alone) when T <= 1, when another thread of the
 * process is inside ds_gemm_parallel, or when no thread could be started.
 * fn must split its work by (t, T) alone. For other loops of the engine
 * (attention heads, elementwise) that would run beside the products. */
int ds_gemm_parallel(void (*fn)(void *arg, int t, int T), void *arg, int T);

/* scratch: NULL or scratch_n floats (used when scratch_n >= in). */
void ds_gemm_xwt(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                 float *y, float *scratch, size_t scratch_n);
void ds_gemm_xw(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W, float beta,
                float *dx, float *scratch, size_t scratch_n);
void ds_gemv_w(ds_kdtype dt, size_t in, size_t out, const void *W, const float *x, float beta, float *y);

/* A coded weight (BitDelta, kernels/cpu/bitpack.h): the product uses
 * W = W_b + g (2b - 1), with W_b the tensor passed as W (f32, f16 or bf16)
 * and the sign bits and scales below, without W ever being held whole: each
 * panel of rows of W is built in f32 in the scratch by ds_bitpack_apply
 * (float(W_b) + g (2b - 1) in f32, the values of an f32 W rebuilt from the
 * same base, bits and scales) and multiplied by cblas_sgemm, as the f16/bf16
 * panels above (mode DS_GEMM_EXACT whatever the mode in force). A rank keeps
 * W_b as stored plus 1/8 byte per weight instead of an f32 W (fit-scales'
 * student, docs/fit-scales.md). The scales are read at each call, so they
 * may change between calls. */
typedef struct ds_wcode {
    const uint64_t *bits; /* rows (out) x ds_bitpack_words(in) words */
    ds_scale_kind kind;
    const float *scale;   /* 1, out (per row) or in (per column) values */
} ds_wcode;

/* ds_gemm_xwt / ds_gemm_xw with W = W_b + g (2b - 1) (c not NULL; NULL: the
 * plain products). A scratch of at least `in` floats is used when given,
 * else one is allocated for the call. */
void ds_gemm_xwt_coded(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                       const ds_wcode *c, float beta, float *y, float *scratch, size_t scratch_n);
void ds_gemm_xw_coded(ds_kdtype dt, size_t N, size_t in, size_t out, const float *dy, const void *W,
                      const ds_wcode *c, float beta, float *dx, float *scratch, size_t scratch_n);
#endif
