/* The bf16 x bf16 product of gemm_bf16.h on AVX512-BF16 (vdpbf16ps), and
 * its portable twin.
 *
 * Layout. x is rounded to bf16 (round to nearest even, kernels/half.h's
 * ds_f32_to_bf16) and packed once per call in panels of 16 rows: for each
 * pair of columns (2p, 2p+1) one 64-byte vector whose lane l holds the
 * pair of row 16*panel + l (rows past N and the column past an odd `in` are
 * 0), grouped by blocks of DP_KC pairs:
 *     xp[panel * XS + kb * DP_KC * 16 + p * 16 + l],  uint32 pairs
 * (KB = blocks of DP_KC pairs, the last one holds only its pairs;
 * XS = KB * DP_KC * 16 + 16, see DP_WST).
 * W is not transposed: a pair (W[o][2p], W[o][2p+1]) is one 32-bit word of
 * the row-major checkpoint layout, broadcast to every lane. For each block
 * of DP_NC rows of W and DP_KC pairs the rows are copied into a per-thread
 * buffer (zero-padded to whole pairs and to DP_NR rows, DP_WST words a row), so
 * that the micro-kernel reads every operand at offsets known when compiled.
 *
 * Micro-kernel: DP_MR panels (16 * DP_MR rows of x) x DP_NR rows of W in
 * DP_MR * DP_NR zmm accumulators (lane = row of x, register = row of W),
 * over one block of pairs, then added into y (transposed through a small
 * stack buffer). Loops: rows of W in blocks of DP_NC (their packed copy
 * stays in L2), pairs in blocks of DP_KC, panels of x, micro-panels of W.
 *
 * Every y element is computed the same way wherever it sits (tile, tail,
 * thread, chunk of rows): per block of pairs, zero + the pairs in increasing
 * order (each vdpbf16ps: two exact bf16 x bf16 products added to the f32
 * lane, rounded to nearest even; denormal inputs and results flushed to
 * zero by the instruction), then y = (beta*y + block 0) + block 1 + ...
 * So results do not depend on the threads or on how rows are batched. */
#include <string.h>
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/half.h"

/* The blocking (measured on Zen 5, docs/model.md; -D overrides for tuning). */
#ifndef DP_MR
#define DP_MR 2     /* panels of 16 rows of x per micro-kernel */
#endif
#ifndef DP_NR
#define DP_NR 12    /* rows of W per micro-kernel */
#endif
#ifndef DP_KC
#define DP_KC 1024  /* pairs per block (2048 columns of x) */
#endif
#ifndef DP_NC
#define DP_NC 48    /* rows of W per packed block (a multiple of DP_NR) */
#endif

/* Words from one packed row of W to the next, from one panel of x to the
 * next: one cache line more than the data, so that the streams of a
 * micro-kernel do not all map to the same set of the L1 cache. */
#define DP_WST (DP_KC + 16)
static size_t kblocks(size_t in) { return ((in + 1) / 2 + DP_KC - 1) / DP_KC; }
static size_t xstride(size_t in) { return kblocks(in) * DP_KC * 16 + 16; }

size_t ds_gemm_dp_xbytes(size_t N, size_t in) { return (N + 15) / 16 * xstride(in) * 4; }

size_t ds_gemm_dp_wbytes(void) { return (size_t)DP_NC * DP_WST * 4; }

void ds_gemm_xwt_dp_ref(size_t N, size_t in, size_t out, const float *x, const uint16_t *W, float beta, float *y)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            float s = 0;
            for (size_t k = 0; k < in; k++)
                s += ds_bf16_to_f32(ds_f32_to_bf16(x[n * in + k])) * ds_bf16_to_f32(W[o * in + k]);
            float *yo = y + n * out + o;
            *yo = beta != 0 ? beta * *yo + s : s;
        }
}

#ifdef DS_KERNELS_X86
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))
#define DS_TARGET_DP __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

int ds_gemm_dp_available(void)
{
    return ds_simd_active() == DS_SIMD_AVX512 && __builtin_cpu_supports("avx512bf16");
}

/* ds_f32_to_bf16 on 16 lanes, the result in the low half of each lane. */
DS_TARGET_DP INLINE __m512i rne16(__m512 v)
{
    const __m512i u = _mm512_castps_si512(v);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), one))),
        16);
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* Transpose 16 x 16 32-bit words in r. */
DS_TARGET_DP INLINE void tr16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
            t[8 * h + 4 + i] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0xdd);
    }
}

/* 32 columns k0.. of row xr (valid columns: kn) as 16 bf16 pairs. */
DS_TARGET_DP INLINE __m512i pairs16(const float *xr, size_t kn)
{
    __m512 a, b;
    if (kn >= 32) {
        a = _mm512_loadu_ps(xr);
        b = _mm512_loadu_ps(xr + 16);
    } else {
        const __mmask16 ma = (__mmask16)(kn >= 16 ? 0xffff : (1u << kn) - 1);
        const __mmask16 mb = (__mmask16)(kn > 16 ? (1u << (kn - 16)) - 1 : 0);
        a = _mm512_maskz_loadu_ps(ma, xr);
        b = _mm512_maskz_loadu_ps(mb, xr + 16);
    }
    const __m512i lo = rne16(a), hi = rne16(b);
    /* words 0, 2, .., 30 of lo then of hi: the 32 bf16 in order */
    const __m512i idx = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26,
                                         24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_epi16(lo, idx, hi);
}

DS_TARGET_DP void ds_gemm_dp_pack_x(size_t N, size_t in, const float *x, void *xpv)
{
    uint32_t *xp = xpv;
    const size_t XS = xstride(in), P = (in + 1) / 2;
    for (size_t pn = 0; pn < (N + 15) / 16; pn++) {
        const size_t rows = N - pn * 16 < 16 ? N - pn * 16 : 16;
        for (size_t p0 = 0; p0 < P; p0 += 16) { /* 16 pairs of 16 rows */
            __m512i r[16];
            for (size_t l = 0; l < 16; l++)
                r[l] = l < rows ? pairs16(x + (pn * 16 + l) * in + 2 * p0, in - 2 * p0) : _mm512_setzero_si512();
            tr16(r);
            const size_t np = P - p0 < 16 ? P - p0 : 16;
            uint32_t *d = xp + pn * XS + p0 / DP_KC * DP_KC * 16 + (p0 % DP_KC) * 16;
            for (size_t p = 0; p < np; p++) _mm512_storeu_si512(d + p * 16, r[p]);
        }
    }
}

/* Rows o0..o0+nr of W, pairs kb*DP_KC.. (np of them) -> wp [DP_NC][DP_WST]
 * words, rows past nr and the odd column zero. */
static void pack_w(const uint16_t *W, size_t in, size_t o0, size_t nr, size_t kb, size_t np, uint32_t *wp)
{
    const size_t k0 = kb * DP_KC * 2, kn = in - k0 < 2 * np ? in - k0 : 2 * np;
    for (size_t r = 0; r < (nr + DP_NR - 1) / DP_NR * DP_NR; r++) {
        uint32_t *d = wp + r * DP_WST;
        if (r >= nr) {
            memset(d, 0, np * 4);
            continue;
        }
        memcpy(d, W + (o0 + r) * in + k0, kn * 2);
        if (kn & 1) ((uint16_t *)d)[kn] = 0;
    }
}

/* y[0..rows, 0..nr) (+)= the MR x NR tile over np pairs. */
DS_TARGET_DP INLINE void micro(const int MR, const int NR, size_t np, const uint32_t *xa, size_t xstride,
                               const uint32_t *wp, int add, float beta, float *y, size_t ldy, size_t rows, size_t nr)
{
    __m512 acc[DP_MR][DP_NR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < np; p++) {
        __m512i xv[DP_MR];
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_si512(xa + i * xstride + p * 16);
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) {
            const __m512i b = _mm512_set1_epi32((int)wp[j * DP_WST + p]);
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[i], (__m512bh)b);
        }
    }
    /* lane l of acc[i][j] is y[16 i + l][j] */
    float t[DP_NR * 16] __attribute__((aligned(64)));
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) _mm512_store_ps(t + j * 16, acc[i][j]);
        for (size_t l = 0; l < 16 && (size_t)i * 16 + l < rows; l++) {
            float *yr = y + (i * 16 + l) * ldy;
            __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, t + l, 4);
            if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yr), v);
            else if (beta != 0) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, yr), v);
            _mm512_mask_storeu_ps(yr, m, v);
        }
    }
}

#define MICRO_CASE(MR, NR) micro(MR, NR, np, xa, xs, wp, add, beta, yt, ldy, rows, nr)

DS_TARGET_DP void ds_gemm_dp_run(size_t N, size_t in, size_t out, const void *xpv, const uint16_t *W, float beta,
                                 float *y, size_t ldy, void *wbuf)
{
    const uint32_t *xp = xpv;
    uint32_t *wb = wbuf;
    const size_t KB = kblocks(in), P = (in + 1) / 2, panels = (N + 15) / 16, xs = xstride(in);
    for (size_t o0 = 0; o0 < out; o0 += DP_NC) {
        const size_t nc = out - o0 < DP_NC ? out - o0 : DP_NC;
        for (size_t kb = 0; kb < KB; kb++) {
            const size_t np = P - kb * DP_KC < DP_KC ? P - kb * DP_KC : DP_KC;
            const int add = kb > 0;
            pack_w(W, in, o0, nc, kb, np, wb);
            for (size_t pn = 0; pn < panels; pn += DP_MR) {
                const uint32_t *xa = xp + pn * xs + kb * DP_KC * 16;
                const size_t rows = N - pn * 16 < DP_MR * 16 ? N - pn * 16 : DP_MR * 16;
                for (size_t o = 0; o < nc; o += DP_NR) {
                    const uint32_t *wp = wb + o * DP_WST;
                    const size_t nr = nc - o < DP_NR ? nc - o : DP_NR;
                    float *yt = y + pn * 16 * ldy + o0 + o;
                    switch ((rows + 15) / 16) {
#if DP_MR >= 4
                    case 4: MICRO_CASE(4, DP_NR); break;
#endif
#if DP_MR >= 3
                    case 3: MICRO_CASE(3, DP_NR); break;
#endif
                    case 2: MICRO_CASE(2, DP_NR); break;
                    default: MICRO_CASE(1, DP_NR); break;
                    }
                }
            }
        }
    }
}
#else
int ds_gemm_dp_available(void) { return 0; }
void ds_gemm_dp_pack_x(size_t N, size_t in, const float *x, void *xp) { (void)N, (void)in, (void)x, (void)xp; }
void ds_gemm_dp_run(size_t N, size_t in, size_t out, const void *xp, const uint16_t *W, float beta, float *y,
                    size_t ldy, void *wbuf)
{
    (void)N, (void)in, (void)out, (void)xp, (void)W, (void)beta, (void)y, (void)ldy, (void)wbuf;
}
#endif
