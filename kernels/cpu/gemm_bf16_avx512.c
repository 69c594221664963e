/* AVX-512 weight-precision kernels (gemm_bf16.h): the exact conversion of
 * f16/bf16 to f32 and the direct product, which converts 16 weights per
 * register (bf16: zero-extend and shift; f16: vcvtph2ps) and multiplies
 * them by f32 activations with FMAs, 4 rows of W x up to 4 rows of x per
 * tile so that W is read from memory once. (The vdpbf16ps product is
 * gemm_bf16_dp.c.) */
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_bf16_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

/* 16 weights from W[i..] as f32; lanes outside m read as 0. */
DS_TARGET_AVX512 INLINE __m512 ldw(ds_kdtype dt, const void *W, size_t i, __mmask16 m, int full)
{
    const uint16_t *h = (const uint16_t *)W + i;
    switch (dt) {
    case DS_KDT_F16:
        return _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)h) : _mm256_maskz_loadu_epi16(m, h));
    case DS_KDT_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(full ? _mm256_loadu_si256((const __m256i *)h) : _mm256_maskz_loadu_epi16(m, h)),
            16));
    default: return full ? _mm512_loadu_ps((const float *)W + i) : _mm512_maskz_loadu_ps(m, (const float *)W + i);
    }
}

DS_TARGET_AVX512 INLINE void conv(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ldw(dt, src, i, 0xffff, 1));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, ldw(dt, src, i, m, 0));
    }
}

DS_TARGET_AVX512 void ds_wconv_f32_avx512(ds_kdtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case DS_KDT_BF16: conv(DS_KDT_BF16, src, dst, n); break;
    case DS_KDT_F16: conv(DS_KDT_F16, src, dst, n); break;
    default: conv(DS_KDT_F32, src, dst, n); break;
    }
}

/* y[n..n+NR, o..o+WR] from rows o.. of W and rows n.. of x. */
DS_TARGET_AVX512 INLINE void tile(ds_kdtype dt, const int WR, const int NR, size_t in, size_t out, const float *x,
                                  const void *W, size_t o, size_t n, float beta, float *y)
{
    __m512 acc[4][4];
    for (int r = 0; r < WR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 16 <= in; k += 16) {
        __m512 w[4];
        for (int r = 0; r < WR; r++) w[r] = ldw(dt, W, (o + r) * in + k, 0xffff, 1);
        for (int j = 0; j < NR; j++) {
            const __m512 xv = _mm512_loadu_ps(x + (n + j) * in + k);
            for (int r = 0; r < WR; r++) acc[r][j] = _mm512_fmadd_ps(w[r], xv, acc[r][j]);
        }
    }
    if (k < in) {
        const __mmask16 m = (__mmask16)((1u << (in - k)) - 1);
        __m512 w[4];
        for (int r = 0; r < WR; r++) w[r] = ldw(dt, W, (o + r) * in + k, m, 0);
        for (int j = 0; j < NR; j++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (n + j) * in + k);
            for (int r = 0; r < WR; r++) acc[r][j] = _mm512_fmadd_ps(w[r], xv, acc[r][j]);
        }
    }
    for (int j = 0; j < NR; j++)
        for (int r = 0; r < WR; r++) {
            const float s = _mm512_reduce_add_ps(acc[r][j]);
            float *yo = y + (n + j) * out + o + r;
            *yo = beta != 0 ? beta * *yo + s : s;
        }
}

#define TILE_ROWS(dt, WR)                                                                                            \
    do {                                                                                                             \
        size_t n = 0;                                                                                                \
        for (; n + 4 <= N; n += 4) tile(dt, WR, 4, in, out, x, W, o, n, beta, y);                                    \
        switch (N - n) {                                                                                             \
        case 3: tile(dt, WR, 3, in, out, x, W, o, n, beta, y); break;                                               \
        case 2: tile(dt, WR, 2, in, out, x, W, o, n, beta, y); break;                                               \
        case 1: tile(dt, WR, 1, in, out, x, W, o, n, beta, y); break;                                               \
        default: break;                                                                                              \
        }                                                                                                            \
    } while (0)

/* One row of x (the one-token path, memory bound): 8 rows of W at a time,
 * each prefetched 1 KiB ahead -- more streams in flight than 4 rows give
 * (bench/gemm_bf16: ~1.5x the bytes per second on this machine). */
DS_TARGET_AVX512 INLINE void gemv8(ds_kdtype dt, size_t in, size_t out, const float *x, const void *W, size_t o,
                                   float beta, float *y)
{
    __m512 acc[8];
    const size_t es = dt == DS_KDT_F32 ? 4 : 2;
    for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 16 <= in; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        for (int r = 0; r < 8; r++) {
            if ((k & 31) == 0) _mm_prefetch((const char *)W + ((o + r) * in + k) * es + 1024, _MM_HINT_T0);
            acc[r] = _mm512_fmadd_ps(ldw(dt, W, (o + r) * in + k, 0xffff, 1), xv, acc[r]);
        }
    }
    if (k < in) {
        const __mmask16 m = (__mmask16)((1u << (in - k)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
        for (int r = 0; r < 8; r++) acc[r] = _mm512_fmadd_ps(ldw(dt, W, (o + r) * in + k, m, 0), xv, acc[r]);
    }
    for (int r = 0; r < 8; r++) {
        const float s = _mm512_reduce_add_ps(acc[r]);
        y[o + r] = beta != 0 ? beta * y[o + r] + s : s;
    }
}

DS_TARGET_AVX512 INLINE void direct(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x, const void *W,
                                    float beta, float *y)
{
    size_t o = 0;
    if (N == 1)
        for (; o + 8 <= out; o += 8) gemv8(dt, in, out, x, W, o, beta, y);
    for (; o + 4 <= out; o += 4) TILE_ROWS(dt, 4);
    for (; o < out; o++) TILE_ROWS(dt, 1);
}

DS_TARGET_AVX512 void ds_gemm_xwt_direct_avx512(ds_kdtype dt, size_t N, size_t in, size_t out, const float *x,
                                                const void *W, float beta, float *y)
{
    switch (dt) {
    case DS_KDT_BF16: direct(DS_KDT_BF16, N, in, out, x, W, beta, y); break;
    case DS_KDT_F16: direct(DS_KDT_F16, N, in, out, x, W, beta, y); break;
    default: direct(DS_KDT_F32, N, in, out, x, W, beta, y); break;
    }
}

#endif
