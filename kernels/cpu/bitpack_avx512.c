/* AVX-512 (F/BW/VL/DQ) packing kernels. Same results as bitpack_ref.c bit
 * for bit: the same float32 operations per element, the same 16 double
 * lanes for |delta| (two registers of 8), the same rounding on output. */
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

/* 16 elements from p[i..], lanes outside m read as 0.0f. Whole vectors take
 * plain loads: masked loads in every iteration ran these loops at less than
 * half the speed of AVX2's (9.4 against 20.5 GB/s for compress on an AMD
 * EPYC, bench/signpack.sh). */
DS_TARGET_AVX512 INLINE __m512 ld16(ds_kdtype dt, const void *p, size_t i, __mmask16 m)
{
    const int full = m == (__mmask16)0xffff;
    if (dt == DS_KDT_F32) return full ? _mm512_loadu_ps((const float *)p + i) : _mm512_maskz_loadu_ps(m, (const float *)p + i);
    const uint16_t *h = (const uint16_t *)p + i;
    const __m256i raw = full ? _mm256_loadu_si256((const __m256i *)h) : _mm256_maskz_loadu_epi16(m, h);
    if (dt == DS_KDT_F16) return _mm512_cvtph_ps(raw);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16)); /* bf16 */
}

/* Round to nearest even like kernels/half.h (NaN: quiet, sign kept), then
 * store the lanes in m. */
DS_TARGET_AVX512 INLINE void st16(ds_kdtype dt, void *p, size_t i, __m512 x, __mmask16 m)
{
    uint16_t *h = (uint16_t *)p + i;
    const int full = m == (__mmask16)0xffff;
    if (dt == DS_KDT_F32) {
        if (full) _mm512_storeu_ps((float *)p + i, x);
        else _mm512_mask_storeu_ps((float *)p + i, m, x);
        return;
    }
    __m512i u = _mm512_castps_si512(x);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    if (dt == DS_KDT_BF16) {
        __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                        _mm512_and_si512(hi, _mm512_set1_epi32(1)));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
        r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
        if (full) _mm256_storeu_si256((__m256i *)h, _mm512_cvtepi32_epi16(r));
        else _mm256_mask_storeu_epi16(h, m, _mm512_cvtepi32_epi16(r));
    } else {
        __m256i r = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i qnan = _mm256_or_si256(_mm256_and_si256(r, _mm256_set1_epi16((short)0x8000)),
                                       _mm256_set1_epi16(0x7e00));
        if (full) _mm256_storeu_si256((__m256i *)h, _mm256_mask_blend_epi16(nan, r, qnan));
        else _mm256_mask_storeu_epi16(h, m, _mm256_mask_blend_epi16(nan, r, qnan));
    }
}

/* One row of compress. Tail lanes load as 0 - 0 = +0.0: their bits are
 * masked off, and adding +0.0 leaves a lane unchanged (a lane is never
 * -0.0), so the lane sums stay those of the reference. */
DS_TARGET_AVX512 INLINE void compress_row(ds_kdtype dt, const void *wf, const void *wb,
                                          size_t base, size_t cols, uint64_t *out,
                                          double *row_abs, double *col, int with_col)
{
    const __m512 zero = _mm512_setzero_ps();
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    uint64_t word = 0;
    for (size_t j = 0; j < cols; j += 16) {
        __mmask16 m = cols - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - j)) - 1);
        __m512 d = _mm512_sub_ps(ld16(dt, wf, base + j, m), ld16(dt, wb, base + j, m));
        __mmask16 ge = _mm512_mask_cmp_ps_mask(m, d, zero, _CMP_GE_OQ);
        __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(d), absmask));
        __m512d alo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
        __m512d ahi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1));
        lo = _mm512_add_pd(lo, alo);
        hi = _mm512_add_pd(hi, ahi);
        if (with_col) {
            __mmask8 m0 = (__mmask8)m, m1 = (__mmask8)(m >> 8);
            _mm512_mask_storeu_pd(col + j, m0,
                                  _mm512_add_pd(_mm512_maskz_loadu_pd(m0, col + j), alo));
            _mm512_mask_storeu_pd(col + j + 8, m1,
                                  _mm512_add_pd(_mm512_maskz_loadu_pd(m1, col + j + 8), ahi));
        }
        word |= (uint64_t)ge << (j & 63);
        if ((j & 63) == 48 || j + 16 >= cols) {
            out[j >> 6] = word;
            word = 0;
        }
    }
    if (row_abs) {
        double s[16];
        _mm512_storeu_pd(s, lo);
        _mm512_storeu_pd(s + 8, hi);
        *row_abs = ds_lanes_reduce16(s);
    }
}

DS_TARGET_AVX512 INLINE void compress_rows(ds_kdtype dt, const void *wf, const void *wb,
                                           size_t rows, size_t cols, uint64_t *bits,
                                           double *row_abs, double *col_abs)
{
    size_t wpr = ds_bitpack_words(cols);
    for (size_t r = 0; r < rows; r++) {
        double *ra = row_abs ? row_abs + r : NULL;
        if (col_abs)
            compress_row(dt, wf, wb, r * cols, cols, bits + r * wpr, ra, col_abs, 1);
        else
            compress_row(dt, wf, wb, r * cols, cols, bits + r * wpr, ra, NULL, 0);
    }
}

DS_TARGET_AVX512 void ds_bitpack_compress_avx512(ds_kdtype dt, const void *wf, const void *wb,
                                                 size_t rows, size_t cols, uint64_t *bits,
                                                 double *row_abs, double *col_abs)
{
    switch (dt) { /* constant dtypes: one specialised loop each */
    case DS_KDT_F16:
        compress_rows(DS_KDT_F16, wf, wb, rows, cols, bits, row_abs, col_abs);
        break;
    case DS_KDT_BF16:
        compress_rows(DS_KDT_BF16, wf, wb, rows, cols, bits, row_abs, col_abs);
        break;
    default: compress_rows(DS_KDT_F32, wf, wb, rows, cols, bits, row_abs, col_abs); break;
    }
}

/* out = convert(base + g(2b - 1)); has_base = 0 gives expand (f32 out). */
DS_TARGET_AVX512 INLINE void apply_rows(ds_kdtype out_dt, void *out, ds_kdtype in_dt,
                                        const void *wb, int has_base, const uint64_t *bits,
                                        size_t rows, size_t cols, ds_scale_kind kind,
                                        const float *scale)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    size_t wpr = ds_bitpack_words(cols);
    if (cols == 0) return; /* scale may be empty: read nothing */
    for (size_t r = 0; r < rows; r++) {
        const uint64_t *brow = bits + r * wpr;
        __m512 grow = _mm512_set1_ps(kind == DS_SCALE_ROW ? scale[r] : scale[0]);
        for (size_t j = 0; j < cols; j += 16) {
            __mmask16 m =
                cols - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - j)) - 1);
            __mmask16 b = (__mmask16)(brow[j >> 6] >> (j & 63));
            __m512 g = kind != DS_SCALE_COL ? grow
                       : m == (__mmask16)0xffff ? _mm512_loadu_ps(scale + j) : _mm512_maskz_loadu_ps(m, scale + j);
            __m512 s = _mm512_mask_blend_ps(b, _mm512_xor_ps(g, sign), g);
            if (has_base) s = _mm512_add_ps(ld16(in_dt, wb, r * cols + j, m), s);
            st16(out_dt, out, r * cols + j, s, m);
        }
    }
}

#define APPLY_CASE(o, i)                                                             \
    case (o) * 3 + (i):                                                              \
        apply_rows(o, out, i, wb, 1, bits, rows, cols, kind, scale);                 \
        break;

DS_TARGET_AVX512 void ds_bitpack_apply_avx512(ds_kdtype out_dt, void *out, ds_kdtype in_dt,
                                              const void *wb, const uint64_t *bits,
                                              size_t rows, size_t cols, ds_scale_kind kind,
                                              const float *scale)
{
    switch ((int)out_dt * 3 + (int)in_dt) {
        APPLY_CASE(DS_KDT_F32, DS_KDT_F32)
        APPLY_CASE(DS_KDT_F32, DS_KDT_F16)
        APPLY_CASE(DS_KDT_F32, DS_KDT_BF16)
        APPLY_CASE(DS_KDT_F16, DS_KDT_F32)
        APPLY_CASE(DS_KDT_F16, DS_KDT_F16)
        APPLY_CASE(DS_KDT_F16, DS_KDT_BF16)
        APPLY_CASE(DS_KDT_BF16, DS_KDT_F32)
        APPLY_CASE(DS_KDT_BF16, DS_KDT_F16)
        APPLY_CASE(DS_KDT_BF16, DS_KDT_BF16)
    default: break;
    }
}

DS_TARGET_AVX512 void ds_bitpack_expand_avx512(float *dst, const uint64_t *bits, size_t rows,
                                               size_t cols, ds_scale_kind kind,
                                               const float *scale)
{
    apply_rows(DS_KDT_F32, dst, DS_KDT_F32, NULL, 0, bits, rows, cols, kind, scale);
}
#endif
