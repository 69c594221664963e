/* AVX-512 twins of kernels/cpu/bitstat.h: the 64 x 64 bit transpose with
 * VPERMB byte transposes, GF2P8AFFINEQB 8 x 8 bit transposes and a qword
 * transpose across eight registers; keep with BMI2 pdep (BMI2 alone, for
 * the avx2 variant too); the masked sums
 * with one masked add per 8 lanes. */
#include "kernels/cpu/bitstat.h"
#include <string.h>
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

#define DS_TARGET_BITSTAT_POPCNT                                                                    \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,popcnt,bmi,bmi2")))

/* Up to 64 users: the rank ranges of 8 coordinates at a time in vectors
 * (VPOPCNTQ; [a, b) as (1 << b) - 1 minus (1 << a) - 1, VPSLLVQ giving 0 for
 * shifts of 64), then two pdep per coordinate. More users: keep_bmi2. */
DS_TARGET_BITSTAT_POPCNT void ds_bitstat_keep_avx512(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi,
                                                     uint64_t *K)
{
    if (n > 64) {
        ds_bitstat_keep_bmi2(n, T, ncoord, lo, hi, K);
        return;
    }
    const uint64_t v = ds_bitstat_valid(n, 0);
    const __m512i vv = _mm512_set1_epi64((long long)v), one = _mm512_set1_epi64(1), zero = _mm512_setzero_si512();
    const __m512i vn = _mm512_set1_epi64((long long)n), vlo = _mm512_set1_epi64((long long)lo);
    const __m512i vhi1 = _mm512_set1_epi64((long long)hi + 1);
    uint64_t r1[8], r0[8];
    for (size_t c = 0; c < ncoord; c += 8) {
        const size_t nc = ncoord - c < 8 ? ncoord - c : 8;
        const __mmask8 lm = (__mmask8)((1u << nc) - 1);
        /* whole vectors unmasked (masked loads in every iteration are slow) */
        const __m512i x1 = _mm512_and_si512(nc == 8 ? _mm512_loadu_si512(T + c) : _mm512_maskz_loadu_epi64(lm, T + c), vv);
        const __m512i c0 = _mm512_sub_epi64(vn, _mm512_popcnt_epi64(x1));
        const __m512i a1 = _mm512_max_epi64(_mm512_sub_epi64(vlo, c0), zero);
        const __m512i b1 = _mm512_max_epi64(_mm512_sub_epi64(vhi1, c0), zero);
        const __m512i a0 = _mm512_max_epi64(_mm512_sub_epi64(c0, vhi1), zero); /* c0 - 1 - hi */
        const __m512i b0 = _mm512_max_epi64(_mm512_sub_epi64(c0, vlo), zero);
#define LOWBITS(t) _mm512_sub_epi64(_mm512_sllv_epi64(one, t), one)
        _mm512_storeu_si512(r1, _mm512_andnot_si512(LOWBITS(a1), LOWBITS(b1)));
        _mm512_storeu_si512(r0, _mm512_andnot_si512(LOWBITS(a0), LOWBITS(b0)));
#undef LOWBITS
        for (size_t i = 0; i < nc; i++) {
            const uint64_t x = T[c + i] & v;
            K[c + i] = _pdep_u64(r1[i], x) | _pdep_u64(r0[i], ~x & v);
        }
    }
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

#define DS_TARGET_TABSUM __attribute__((target("avx512f,avx512dq,avx512vl")))

/* 8 coordinates per vector: each nibble of K & T and of K & ~T indexes its
 * group's 16-entry table (two registers) with VPERMT2PD, which reads only
 * the low 4 bits of each index. Two partial sums per side (exact). */
DS_TARGET_TABSUM void ds_bitstat_tabsum_avx512(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K,
                                               double div, float *out)
{
    __m512d lo[16], hi[16];
    for (int g = 0; g < 16; g++) lo[g] = _mm512_loadu_pd(tab + 16 * g), hi[g] = _mm512_loadu_pd(tab + 16 * g + 8);
    const __m512d vdiv = _mm512_set1_pd(div);
    for (size_t c = 0; c < ncoord; c += 8) {
        const size_t nc = ncoord - c < 8 ? ncoord - c : 8;
        const __mmask8 lm = (__mmask8)((1u << nc) - 1);
        const __m512i k = nc == 8 ? _mm512_loadu_si512(K + c) : _mm512_maskz_loadu_epi64(lm, K + c);
        const __m512i t = nc == 8 ? _mm512_loadu_si512(T + c) : _mm512_maskz_loadu_epi64(lm, T + c);
        __m512i a = _mm512_and_si512(k, t), b = _mm512_andnot_si512(t, k);
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
        for (int g = 0; g < 16; g += 2) {
            a0 = _mm512_add_pd(a0, _mm512_permutex2var_pd(lo[g], a, hi[g]));
            b0 = _mm512_add_pd(b0, _mm512_permutex2var_pd(lo[g], b, hi[g]));
            a = _mm512_srli_epi64(a, 4), b = _mm512_srli_epi64(b, 4);
            a1 = _mm512_add_pd(a1, _mm512_permutex2var_pd(lo[g + 1], a, hi[g + 1]));
            b1 = _mm512_add_pd(b1, _mm512_permutex2var_pd(lo[g + 1], b, hi[g + 1]));
            a = _mm512_srli_epi64(a, 4), b = _mm512_srli_epi64(b, 4);
        }
        const __m512d r = _mm512_div_pd(_mm512_sub_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(b0, b1)), vdiv);
        _mm256_mask_storeu_ps(out + c, lm, _mm512_cvtpd_ps(r));
    }
}

#define DS_TARGET_POSCOUNT __attribute__((target("avx512f,avx512bw,avx512vl")))

/* a + b + c = sum + 2 carry with two VPTERNLOGQ */
#define FULL_ADD(a, b, c, s, k)                                                                                        \
    do {                                                                                                               \
        const __m512i a_ = (a), b_ = (b), c_ = (c);                                                                    \
        s = _mm512_ternarylogic_epi64(a_, b_, c_, 0x96);                                                               \
        k = _mm512_ternarylogic_epi64(a_, b_, c_, 0xe8);                                                               \
    } while (0)

DS_TARGET_POSCOUNT void ds_poscount_add_avx512(ds_poscount *pc, const uint64_t K[64])
{
    __m512i x[8];
    for (int j = 0; j < 8; j++) x[j] = _mm512_loadu_si512(K + 8 * j);
    __m512i sa, ca, sb, cb, s1, cc, t2, t4a;
    FULL_ADD(x[0], x[1], x[2], sa, ca);
    FULL_ADD(x[3], x[4], x[5], sb, cb);
    FULL_ADD(sa, sb, x[6], s1, cc);
    const __m512i cd = _mm512_and_si512(s1, x[7]);
    s1 = _mm512_xor_si512(s1, x[7]);
    FULL_ADD(ca, cb, cc, t2, t4a);
    const __m512i in[4] = {s1, _mm512_xor_si512(t2, cd), _mm512_xor_si512(t4a, _mm512_and_si512(t2, cd)),
                           _mm512_and_si512(t4a, _mm512_and_si512(t2, cd))};
    __m512i carry = _mm512_setzero_si512();
    for (int p = 0; p < DS_POSCOUNT_PLANES; p++) {
        __m512i sum;
        const __m512i a = _mm512_loadu_si512(pc->pl[p]);
        FULL_ADD(a, p < 4 ? in[p] : _mm512_setzero_si512(), carry, sum, carry);
        _mm512_storeu_si512(pc->pl[p], sum);
    }
    pc->adds++;
}

/* Per lane, each plane's bits as bytes (VPMOVM2B) weighted 2^p: a lane's
 * counts are at most 8 x 31 < 256, so they fit bytes; lanes summed in 16 bits. */
DS_TARGET_POSCOUNT void ds_poscount_flush_avx512(ds_poscount *pc, uint64_t cnt[64])
{
    __m512i lo16 = _mm512_setzero_si512(), hi16 = lo16; /* positions 0-31, 32-63 */
    for (int l = 0; l < 8; l++) {
        __m512i b = _mm512_setzero_si512();
        for (int p = 0; p < DS_POSCOUNT_PLANES; p++)
            b = _mm512_add_epi8(b, _mm512_maskz_mov_epi8(_cvtu64_mask64(pc->pl[p][l]), _mm512_set1_epi8((char)(1 << p))));
        lo16 = _mm512_add_epi16(lo16, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(b)));
        hi16 = _mm512_add_epi16(hi16, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(b, 1)));
    }
    uint16_t c16[64];
    _mm512_storeu_si512(c16, lo16);
    _mm512_storeu_si512(c16 + 32, hi16);
    for (int q = 0; q < 64; q++) cnt[q] += c16[q];
    memset(pc, 0, sizeof *pc);
}
#endif
