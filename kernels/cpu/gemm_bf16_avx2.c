/* AVX2 weight-precision kernels (gemm_bf16.h): as gemm_bf16_avx512.c with
 * 8 lanes (F16C for f16), tiles of 4 rows of W x up to 2 rows of x (16
 * registers), the last in % 8 columns in scalar code. */
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_bf16_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>
#include "kernels/half.h"

#define INLINE static inline __attribute__((always_inline))

DS_TARGET_AVX2 INLINE __m256 ldw(ds_kdtype dt, const void *W, size_t i)
{
    const uint16_t *h = (const uint16_t *)W + i;
    switch (dt) {
    case DS_KDT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    case DS_KDT_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)h)), 16));
    default: return _mm256_loadu_ps((const float *)W + i);
    }
}

INLINE float wval(ds_kdtype dt, const void *W, size_t i)
{
    switch (dt) {
    case DS_KDT_BF16: return ds_bf16_to_f32(((const uint16_t *)W)[i]);
    case DS_KDT_F16: return ds_f16_to_f32(((const uint16_t *)W)[i]);
    default: return ((const float *)W)[i];
    }
}

DS_TARGET_AVX2 INLINE void conv(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ldw(dt, src, i));
    for (; i < n; i++) dst[i] = wval(dt, src, i);
}

DS_TARGET_AVX2 void ds_wconv_f32_avx2(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case DS_KDT_BF16: conv(DS_KDT_BF16, src, dst, n); break;
    case DS_KDT_F16: conv(DS_KDT_F16, src, dst, n); break;
    default: conv(DS_KDT_F32, src, dst, n); break;
    }
}

DS_TARGET_AVX2 INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

DS_TARGET_AVX2 INLINE void tile(ds_kdtype dt, const int WR, const int NR, size_t in, size_t out, const float *x,
                                const void *W, size_t o, size_t n, float beta, float *y)
{
    __m256 acc[4][2];
    for (int r = 0; r < WR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 w[4];
        for (int r = 0; r < WR; r++) w[r] = ldw(dt, W, (o + r) * in + k);
        for (int j = 0; j < NR; j++) {
            const __m256 xv = _mm256_loadu_ps(x + (n + j) * in + k);
            for (int r = 0; r < WR; r++) acc[r][j] = _mm256_fmadd_ps(w[r], xv, acc[r][j]);
        }
    }
    for (int j = 0; j < NR; j++)
        for (int r = 0; r < WR; r++) {
            float s = hsum(acc[r][j]);
            for (size_t kk = k; kk < in; kk++) s += x[(n + j) * in + kk] * wval(dt, W, (o + r) * in + kk);
            float *yo = y + (n + j) * out + o + r;
            *yo = beta != 0 ? beta * *yo + s : s;
        }
}

#define TILE_ROWS(dt, WR)                                                                                            \
    do {                                                                                                             \
        size_t n = 0;                                                                                                \
        for (; n + 2 <= N; n += 2) tile(dt, WR, 2, in, out, x, W, o, n, beta, y);                                    \
        if (n < N) tile(dt, WR, 1, in, out, x, W, o, n, beta, y);                                                    \
    } while (0)

DS_TARGET_AVX2 INLINE void direct(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                                  float beta, float *y)
{
    size_t o = 0;
    for (; o + 4 <= out; o += 4) TILE_ROWS(dt, 4);
    for (; o < out; o++) TILE_ROWS(dt, 1);
}

DS_TARGET_AVX2 void ds_gemm_xwt_direct_avx2(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x,
                                            const void *W, float beta, float *y)
{
    switch (dt) {
    case DS_KDT_BF16: direct(DS_KDT_BF16, N, in, out, x, W, beta, y); break;
    case DS_KDT_F16: direct(DS_KDT_F16, N, in, out, x, W, beta, y); break;
    default: direct(DS_KDT_F32, N, in, out, x, W, beta, y); break;
    }
}
#endif
