/* Internal to kernels/cpu: the SIMD variants of gemm_bf16.h. */
#ifndef DS_KERNELS_CPU_GEMM_BF16_IMPL_H
#define DS_KERNELS_CPU_GEMM_BF16_IMPL_H
#include "kernels/cpu/gemm_bf16.h"

void ds_wconv_f32_avx2(ds_kdtype dt, const void *src, float *dst, size_t n);
void ds_gemm_xwt_direct_avx2(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                             float beta, float *y);
void ds_wconv_f32_avx512(ds_kdtype dt, const void *src, float *dst, size_t n);
void ds_gemm_xwt_direct_avx512(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                               float beta, float *y);
#endif
