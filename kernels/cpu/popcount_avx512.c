/* AVX-512 Hamming distances (VPOPCNTDQ) and column bit counts (AVX-512F
 * masked adds: one mask bit per user bit). */
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>

DS_TARGET_AVX512_POPCNT uint64_t ds_hamming_avx512(const uint64_t *a, const uint64_t *b,
                                                   size_t nwords)
{
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 16 <= nwords; i += 16) { /* two chains hide the popcount latency */
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_xor_si512(
                                          _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i))));
        acc1 = _mm512_add_epi64(
            acc1, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i + 8),
                                                       _mm512_loadu_si512(b + i + 8))));
    }
    for (; i < nwords; i += 8) {
        __mmask8 m = nwords - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (nwords - i)) - 1);
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_xor_si512(
                                          _mm512_maskz_loadu_epi64(m, a + i),
                                          _mm512_maskz_loadu_epi64(m, b + i))));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
}

void ds_hamming_pairs_avx512(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                             uint64_t *out)
{
    ds_hamming_pairs_blocked(n, v, w0, w1, out, ds_hamming_avx512);
}

DS_TARGET_AVX512 void ds_count_ones_avx512(size_t n, const uint64_t *const *v, size_t w0,
                                           size_t w1, uint32_t *counts)
{
    const __m512i one = _mm512_set1_epi32(1);
    for (size_t w = w0; w < w1; w++) {
        uint32_t *c = counts + 64 * (w - w0);
        __m512i c0 = _mm512_loadu_si512(c), c1 = _mm512_loadu_si512(c + 16);
        __m512i c2 = _mm512_loadu_si512(c + 32), c3 = _mm512_loadu_si512(c + 48);
        for (size_t u = 0; u < n; u++) {
            uint64_t x = v[u][w];
            c0 = _mm512_mask_add_epi32(c0, (__mmask16)x, c0, one);
            c1 = _mm512_mask_add_epi32(c1, (__mmask16)(x >> 16), c1, one);
            c2 = _mm512_mask_add_epi32(c2, (__mmask16)(x >> 32), c2, one);
            c3 = _mm512_mask_add_epi32(c3, (__mmask16)(x >> 48), c3, one);
        }
        _mm512_storeu_si512(c, c0);
        _mm512_storeu_si512(c + 16, c1);
        _mm512_storeu_si512(c + 32, c2);
        _mm512_storeu_si512(c + 48, c3);
    }
}
#endif
