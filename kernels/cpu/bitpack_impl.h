/* Internal to kernels/cpu: the per-variant kernel table and helpers shared
 * by the variant files. Not for callers outside kernels/cpu. */
#ifndef DS_KERNELS_CPU_BITPACK_IMPL_H
#define DS_KERNELS_CPU_BITPACK_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/bitpack.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/popcount.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DS_KERNELS_X86 1
#define DS_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,popcnt,bmi,bmi2")))
#define DS_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,popcnt,bmi,bmi2")))
#define DS_TARGET_AVX512_POPCNT                                                            \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,avx2,fma," \
                          "f16c,popcnt,bmi,bmi2")))
#endif

typedef void (*ds_compress_fn)(ds_kdtype dt, const void *wf, const void *wb, size_t rows,
                               size_t cols, uint64_t *bits, double *row_abs, double *col_abs);
typedef void (*ds_apply_fn)(ds_kdtype out_dt, void *out, ds_kdtype in_dt, const void *wb,
                            const uint64_t *bits, size_t rows, size_t cols, ds_scale_kind kind,
                            const float *scale);
typedef void (*ds_expand_fn)(float *dst, const uint64_t *bits, size_t rows, size_t cols,
                             ds_scale_kind kind, const float *scale);
typedef uint64_t (*ds_hamming_fn)(const uint64_t *a, const uint64_t *b, size_t nwords);
typedef void (*ds_hamming_pairs_fn)(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                                    uint64_t *out);
typedef void (*ds_count_ones_fn)(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                                 uint32_t *counts);

typedef struct {
    ds_compress_fn compress;
    ds_apply_fn apply;
    ds_expand_fn expand;
    ds_hamming_fn hamming;
    ds_hamming_pairs_fn hamming_pairs;
    ds_count_ones_fn count_ones;
} ds_kernel_table;

/* The table of the active variant (dispatch.c). */
const ds_kernel_table *ds_kernels(void);

#ifdef DS_KERNELS_X86
void ds_bitpack_compress_avx2(ds_kdtype, const void *, const void *, size_t, size_t, uint64_t *,
                              double *, double *);
void ds_bitpack_apply_avx2(ds_kdtype, void *, ds_kdtype, const void *, const uint64_t *, size_t,
                           size_t, ds_scale_kind, const float *);
void ds_bitpack_expand_avx2(float *, const uint64_t *, size_t, size_t, ds_scale_kind,
                            const float *);
uint64_t ds_hamming_avx2(const uint64_t *, const uint64_t *, size_t);
void ds_hamming_pairs_avx2(size_t, const uint64_t *const *, size_t, size_t, uint64_t *);
void ds_count_ones_avx2(size_t, const uint64_t *const *, size_t, size_t, uint32_t *);

void ds_bitpack_compress_avx512(ds_kdtype, const void *, const void *, size_t, size_t,
                                uint64_t *, double *, double *);
void ds_bitpack_apply_avx512(ds_kdtype, void *, ds_kdtype, const void *, const uint64_t *,
                             size_t, size_t, ds_scale_kind, const float *);
void ds_bitpack_expand_avx512(float *, const uint64_t *, size_t, size_t, ds_scale_kind,
                              const float *);
uint64_t ds_hamming_avx512(const uint64_t *, const uint64_t *, size_t);
void ds_hamming_pairs_avx512(size_t, const uint64_t *const *, size_t, size_t, uint64_t *);
void ds_count_ones_avx512(size_t, const uint64_t *const *, size_t, size_t, uint32_t *);
#endif

/* The fixed combination of the 16 lane sums (the contract, see bitpack.h):
 * s[k] += s[k+8], then s[k] += s[k+4], s[k] += s[k+2], s[0] + s[1]. */
static inline double ds_lanes_reduce16(double s[16])
{
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) s[k] += s[k + w];
    return s[0];
}

/* Word block for the pairwise Hamming kernels: 512 words (4 KiB) per user,
 * so a few dozen users' blocks stay in L2 while every pair is visited. */
#define DS_PAIRS_BLOCK 512

/* Pairwise Hamming counts over [w0, w1) in blocks, with a given two-vector
 * kernel (shared by the variants so that they differ only in the kernel). */
static inline void ds_hamming_pairs_blocked(size_t n, const uint64_t *const *v, size_t w0,
                                            size_t w1, uint64_t *out, ds_hamming_fn h)
{
    for (size_t b0 = w0; b0 < w1; b0 += DS_PAIRS_BLOCK) {
        size_t len = w1 - b0 < DS_PAIRS_BLOCK ? w1 - b0 : DS_PAIRS_BLOCK;
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) out[i * n + j] += h(v[i] + b0, v[j] + b0, len);
    }
}
#endif
