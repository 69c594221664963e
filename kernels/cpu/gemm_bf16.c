/* The weight-precision kernels (gemm_bf16.h): dispatch to the active
 * variant. No BLAS here: src/gemm_w.c combines these with cblas_sgemm. */
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm_bf16_impl.h"

void ds_wconv_f32(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    switch (ds_simd_active()) {
#ifdef DS_KERNELS_X86
    case DS_SIMD_AVX2: ds_wconv_f32_avx2(dt, src, dst, n); return;
    case DS_SIMD_AVX512: ds_wconv_f32_avx512(dt, src, dst, n); return;
#endif
    default: ds_wconv_f32_ref(dt, src, dst, n); return;
    }
}

void ds_gemm_xwt_direct(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W, float beta,
                        float *y)
{
    switch (ds_simd_active()) {
#ifdef DS_KERNELS_X86
    case DS_SIMD_AVX2: ds_gemm_xwt_direct_avx2(dt, N, in, out, x, W, beta, y); return;
    case DS_SIMD_AVX512: ds_gemm_xwt_direct_avx512(dt, N, in, out, x, W, beta, y); return;
#endif
    default: ds_gemm_xwt_ref(dt, N, in, out, x, W, beta, y); return;
    }
}
