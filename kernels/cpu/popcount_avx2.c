/* AVX2 Hamming distances (nibble lookup with VPSHUFB, sums with VPSADBW)
 * and column bit counts (bit-select compares, one counter lane per bit). */
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>

DS_TARGET_AVX2 uint64_t ds_hamming_avx2(const uint64_t *a, const uint64_t *b, size_t nwords)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    while (i + 4 <= nwords) {
        /* Byte counts reach at most 8 per word-byte per step: 31 steps fit
         * in a byte before the horizontal sum. */
        __m256i bytes = _mm256_setzero_si256();
        for (int k = 0; k < 31 && i + 4 <= nwords; k++, i += 4) {
            __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i)),
                                         _mm256_loadu_si256((const __m256i *)(b + i)));
            __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
            __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
            bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(lo, hi));
        }
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(bytes, _mm256_setzero_si256()));
    }
    uint64_t h = (uint64_t)_mm256_extract_epi64(acc, 0) + (uint64_t)_mm256_extract_epi64(acc, 1) +
                 (uint64_t)_mm256_extract_epi64(acc, 2) + (uint64_t)_mm256_extract_epi64(acc, 3);
    for (; i < nwords; i++) h += (uint64_t)_mm_popcnt_u64(a[i] ^ b[i]);
    return h;
}

void ds_hamming_pairs_avx2(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                           uint64_t *out)
{
    ds_hamming_pairs_blocked(n, v, w0, w1, out, ds_hamming_avx2);
}

DS_TARGET_AVX2 void ds_count_ones_avx2(size_t n, const uint64_t *const *v, size_t w0,
                                       size_t w1, uint32_t *counts)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (size_t w = w0; w < w1; w++) {
        uint32_t *c = counts + 64 * (w - w0);
        __m256i acc[8];
        for (int q = 0; q < 8; q++) acc[q] = _mm256_loadu_si256((const __m256i *)(c + 8 * q));
        for (size_t u = 0; u < n; u++) {
            uint64_t x = v[u][w];
            for (int q = 0; q < 8; q++) {
                __m256i byte = _mm256_set1_epi32((int)((x >> (8 * q)) & 0xff));
                /* a set bit compares to -1: subtracting it counts one */
                acc[q] = _mm256_sub_epi32(
                    acc[q], _mm256_cmpeq_epi32(_mm256_and_si256(byte, sel), sel));
            }
        }
        for (int q = 0; q < 8; q++) _mm256_storeu_si256((__m256i *)(c + 8 * q), acc[q]);
    }
}
#endif
