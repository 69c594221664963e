/* AVX-512 twins of kernels/cpu/bitstat.h: the 64 x 64 bit transpose with
 * VPERMB byte transposes, GF2P8AFFINEQB 8 x 8 bit transposes and a qword
 * transpose across eight registers; keep with BMI2 pdep (BMI2 alone, for
 * the avx2 variant too); the masked sums
 * with one masked add per 8 lanes. */
#include "kernels/cpu/bitstat.h"
#include "kernels/cpu/bitstat_impl.h"
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>

#define DS_TARGET_BITSTAT \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,gfni,popcnt,bmi,bmi2")))

DS_TARGET_BITSTAT void ds_bit_transpose64_avx512(uint64_t a[64])
{
    /* Word 8R + r, byte C, bit c is bit (8C + c) of row 8R + r. */
    __m512i x[8];
    uint8_t rev[64], tr[64];
    for (int C = 0; C < 8; C++)
        for (int s = 0; s < 8; s++) {
            rev[8 * C + s] = (uint8_t)(8 * (7 - s) + C); /* qword C, byte s <- word 7 - s, byte C */
            tr[8 * C + s] = (uint8_t)(8 * s + C);        /* plain 8 x 8 byte transpose */
        }
    const __m512i irev = _mm512_loadu_si512(rev), itr = _mm512_loadu_si512(tr);
    const __m512i units = _mm512_set1_epi64(0x8040201008040201ll);
    for (int R = 0; R < 8; R++) {
        __m512i v = _mm512_permutexvar_epi8(irev, _mm512_loadu_si512(a + 8 * R));
        /* byte c, bit r of qword C: bit (8C + c) of row 8R + r */
        x[R] = _mm512_gf2p8affine_epi64_epi8(units, v, 0);
    }
    /* qword transpose across the registers: y[C] qword R = x[R] qword C */
    for (int d = 1; d < 8; d <<= 1) {
        int64_t i0[8], i1[8];
        for (int C = 0; C < 8; C++) {
            i0[C] = C & d ? 8 + (C ^ d) : C;
            i1[C] = C & d ? 8 + C : C | d;
        }
        const __m512i v0 = _mm512_loadu_si512(i0), v1 = _mm512_loadu_si512(i1);
        for (int R = 0; R < 8; R++) {
            if (R & d) continue;
            const __m512i p = x[R], q = x[R | d];
            x[R] = _mm512_permutex2var_epi64(p, v0, q);
            x[R | d] = _mm512_permutex2var_epi64(p, v1, q);
        }
    }
    /* word 8C + c, byte R = x[C] qword R, byte c */
    for (int C = 0; C < 8; C++) _mm512_storeu_si512(a + 8 * C, _mm512_permutexvar_epi8(itr, x[C]));
}

#define DS_TARGET_BMI2 __attribute__((target("popcnt,bmi,bmi2,lzcnt")))

static inline __attribute__((always_inline)) DS_TARGET_BMI2 uint64_t rank_bits_pdep(uint64_t x, long a, long b)
{
    /* branchless: which side of a coordinate is kept is data dependent */
    a = a < 0 ? 0 : a;
    b = b > 64 ? 64 : b;
    const long len = b > a ? b - a : 0;
    const uint64_t range = _bzhi_u64(~0ull, (unsigned)len) << (a > 63 ? 63 : a);
    return _pdep_u64(range, x);
}

/* BMI2 only (no AVX-512 instructions): also used when the variant is avx2. */
DS_TARGET_BMI2 void ds_bitstat_keep_bmi2(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi,
                                            uint64_t *K)
{
    ds_bitstat_keep_with(n, T, ncoord, lo, hi, K, rank_bits_pdep);
}

DS_TARGET_BITSTAT void ds_bitstat_accum_avx512(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg,
                                               double acc[64])
{
    __m512d s[8];
    for (int g = 0; g < 8; g++) s[g] = _mm512_loadu_pd(acc + 8 * g);
    for (size_t q = 0; q < nq; q++) {
        const __m512d v = _mm512_set1_pd(m[q]);
        const uint64_t p = pos[q], n = neg[q];
        if (!(p | n)) continue;
        for (int g = 0; g < 8; g++) {
            s[g] = _mm512_mask_add_pd(s[g], (__mmask8)(p >> (8 * g)), s[g], v);
            s[g] = _mm512_mask_sub_pd(s[g], (__mmask8)(n >> (8 * g)), s[g], v);
        }
    }
    for (int g = 0; g < 8; g++) _mm512_storeu_pd(acc + 8 * g, s[g]);
}
#endif
