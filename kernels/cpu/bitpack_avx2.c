/* AVX2 packing kernels. Same results as bitpack_ref.c bit for bit: the same
 * float32 operations per element, the same 16 double lanes for |delta| (four
 * registers of 4), the same rounding on output. Row tails (< 16 columns)
 * run the same vector step on a zero-padded copy. */
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

static size_t esize(ds_kdtype dt) { return dt == DS_KDT_F32 ? 4 : 2; }

DS_TARGET_AVX2 INLINE __m256 ld8(ds_kdtype dt, const void *p, size_t i)
{
    const __m128i *h = (const __m128i *)((const uint16_t *)p + i);
    switch (dt) {
    case DS_KDT_F16: return _mm256_cvtph_ps(_mm_loadu_si128(h));
    case DS_KDT_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(h)), 16));
    default: return _mm256_loadu_ps((const float *)p + i);
    }
}

/* Round to nearest even like kernels/half.h (NaN: quiet, sign kept). */
DS_TARGET_AVX2 INLINE void st8(ds_kdtype dt, void *p, size_t i, __m256 x)
{
    __m128i *h = (__m128i *)((uint16_t *)p + i);
    if (dt == DS_KDT_F32) {
        _mm256_storeu_ps((float *)p + i, x);
        return;
    }
    __m256i u = _mm256_castps_si256(x);
    if (dt == DS_KDT_BF16) {
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
        __m256i hi = _mm256_srli_epi32(u, 16);
        __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                        _mm256_and_si256(hi, _mm256_set1_epi32(1)));
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
        r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
        r = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128(h, _mm256_castsi256_si128(r));
    } else {
        __m128i r = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        __m128i nan = _mm_packs_epi32(_mm256_castsi256_si128(nan32),
                                      _mm256_extracti128_si256(nan32, 1));
        __m128i qnan = _mm_or_si128(_mm_and_si128(r, _mm_set1_epi16((short)0x8000)),
                                    _mm_set1_epi16(0x7e00));
        _mm_storeu_si128(h, _mm_blendv_epi8(r, qnan, nan));
    }
}

typedef struct {
    __m256d l0, l1, l2, l3; /* lanes 0-3, 4-7, 8-11, 12-15 */
} lanes16;

DS_TARGET_AVX2 INLINE __m256d add_col(double *col, __m256d a)
{
    __m256d c = _mm256_add_pd(_mm256_loadu_pd(col), a);
    _mm256_storeu_pd(col, c);
    return c;
}

/* 16 elements at wf[i..], wb[i..]: returns their 16 sign bits. */
DS_TARGET_AVX2 INLINE unsigned compress16(ds_kdtype dt, const void *wf, const void *wb,
                                          size_t i, lanes16 *L, double *col, int with_col)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 d0 = _mm256_sub_ps(ld8(dt, wf, i), ld8(dt, wb, i));
    __m256 d1 = _mm256_sub_ps(ld8(dt, wf, i + 8), ld8(dt, wb, i + 8));
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d0, zero, _CMP_GE_OQ)) |
                 (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d1, zero, _CMP_GE_OQ)) << 8;
    __m256 a0 = _mm256_and_ps(d0, absmask), a1 = _mm256_and_ps(d1, absmask);
    __m256d q0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a0));
    __m256d q1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a0, 1));
    __m256d q2 = _mm256_cvtps_pd(_mm256_castps256_ps128(a1));
    __m256d q3 = _mm256_cvtps_pd(_mm256_extractf128_ps(a1, 1));
    L->l0 = _mm256_add_pd(L->l0, q0);
    L->l1 = _mm256_add_pd(L->l1, q1);
    L->l2 = _mm256_add_pd(L->l2, q2);
    L->l3 = _mm256_add_pd(L->l3, q3);
    if (with_col) {
        add_col(col, q0);
        add_col(col + 4, q1);
        add_col(col + 8, q2);
        add_col(col + 12, q3);
    }
    return m;
}

/* One row. The tail runs on zero-padded copies: padded lanes give delta
 * +0.0, whose bits are masked off and whose |delta| adds +0.0 to a lane
 * that is never -0.0, i.e. leaves it unchanged. */
DS_TARGET_AVX2 INLINE void compress_row(ds_kdtype dt, const void *wf, const void *wb,
                                        size_t base, size_t cols, uint64_t *out,
                                        double *row_abs, double *col, int with_col)
{
    lanes16 L = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                 _mm256_setzero_pd()};
    uint64_t word = 0;
    size_t j = 0;
    for (; j + 16 <= cols; j += 16) {
        word |= (uint64_t)compress16(dt, wf, wb, base + j, &L, col + j, with_col) << (j & 63);
        if ((j & 63) == 48) {
            out[j >> 6] = word;
            word = 0;
        }
    }
    if (j < cols) {
        size_t left = cols - j, es = esize(dt);
        float tf[16] = {0}, tb[16] = {0};
        double tc[16] = {0};
        memcpy(tf, (const char *)wf + (base + j) * es, left * es);
        memcpy(tb, (const char *)wb + (base + j) * es, left * es);
        if (with_col) memcpy(tc, col + j, left * sizeof(double));
        unsigned m = compress16(dt, tf, tb, 0, &L, tc, with_col) & ((1u << left) - 1);
        if (with_col) memcpy(col + j, tc, left * sizeof(double));
        word |= (uint64_t)m << (j & 63);
    }
    if (cols & 63) out[cols >> 6] = word;
    if (row_abs) {
        double s[16];
        _mm256_storeu_pd(s, L.l0);
        _mm256_storeu_pd(s + 4, L.l1);
        _mm256_storeu_pd(s + 8, L.l2);
        _mm256_storeu_pd(s + 12, L.l3);
        *row_abs = ds_lanes_reduce16(s);
    }
}

DS_TARGET_AVX2 INLINE void compress_rows(ds_kdtype dt, const void *wf, const void *wb,
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

DS_TARGET_AVX2 void ds_bitpack_compress_avx2(ds_kdtype dt, const void *wf, const void *wb,
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

/* 8 outputs from base[i..] (when has_base), sign bits b (low 8), scales g. */
DS_TARGET_AVX2 INLINE void apply8(ds_kdtype out_dt, void *out, ds_kdtype in_dt,
                                  const void *wb, int has_base, size_t i, unsigned b, __m256 g)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)b), sel), sel);
    __m256 s = _mm256_blendv_ps(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)), g,
                                _mm256_castsi256_ps(on));
    if (has_base) s = _mm256_add_ps(ld8(in_dt, wb, i), s);
    st8(out_dt, out, i, s);
}

/* out = convert(base + g(2b - 1)); has_base = 0 gives expand (f32 out). */
DS_TARGET_AVX2 INLINE void apply_rows(ds_kdtype out_dt, void *out, ds_kdtype in_dt,
                                      const void *wb, int has_base, const uint64_t *bits,
                                      size_t rows, size_t cols, ds_scale_kind kind,
                                      const float *scale)
{
    size_t wpr = ds_bitpack_words(cols);
    if (cols == 0) return; /* scale may be empty: read nothing */
    for (size_t r = 0; r < rows; r++) {
        const uint64_t *brow = bits + r * wpr;
        __m256 grow = _mm256_set1_ps(kind == DS_SCALE_ROW ? scale[r] : scale[0]);
        size_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            unsigned b = (unsigned)(brow[j >> 6] >> (j & 63)) & 0xff;
            __m256 g = kind == DS_SCALE_COL ? _mm256_loadu_ps(scale + j) : grow;
            apply8(out_dt, out, in_dt, wb, has_base, r * cols + j, b, g);
        }
        if (j < cols) {
            size_t left = cols - j;
            float tin[8] = {0}, tout[8], tg[8] = {0};
            if (has_base)
                memcpy(tin, (const char *)wb + (r * cols + j) * esize(in_dt), left * esize(in_dt));
            __m256 g = grow;
            if (kind == DS_SCALE_COL) {
                memcpy(tg, scale + j, left * sizeof(float));
                g = _mm256_loadu_ps(tg);
            }
            unsigned b = (unsigned)(brow[j >> 6] >> (j & 63)) & 0xff;
            apply8(out_dt, tout, in_dt, tin, has_base, 0, b, g);
            memcpy((char *)out + (r * cols + j) * esize(out_dt), tout, left * esize(out_dt));
        }
    }
}

#define APPLY_CASE(o, i)                                                             \
    case (o) * 3 + (i):                                                              \
        apply_rows(o, out, i, wb, 1, bits, rows, cols, kind, scale);                 \
        break;

DS_TARGET_AVX2 void ds_bitpack_apply_avx2(ds_kdtype out_dt, void *out, ds_kdtype in_dt,
                                          const void *wb, const uint64_t *bits, size_t rows,
                                          size_t cols, ds_scale_kind kind, const float *scale)
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

DS_TARGET_AVX2 void ds_bitpack_expand_avx2(float *dst, const uint64_t *bits, size_t rows,
                                           size_t cols, ds_scale_kind kind, const float *scale)
{
    apply_rows(DS_KDT_F32, dst, DS_KDT_F32, NULL, 0, bits, rows, cols, kind, scale);
}
#endif
