/* Dispatch of kernels/cpu/bitstat.h: the AVX-512 twins when the active
 * variant (kernels/cpu/dispatch.h, DS_SIMD) is avx512 and the CPU has GFNI,
 * VBMI and VPOPCNTDQ; pdep (BMI2) for keep from avx2 on; else the _ref twins. */
#include "kernels/cpu/bitstat.h"
#include "kernels/cpu/bitpack_impl.h"
#include "kernels/cpu/dispatch.h"

#ifdef DS_KERNELS_X86
void ds_bit_transpose64_avx512(uint64_t a[64]);
void ds_bitstat_keep_bmi2(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K);
void ds_bitstat_keep_avx512(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K);
void ds_bitstat_accum_avx512(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg, double acc[64]);
void ds_bitstat_tabsum_avx512(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K, double div,
                              float *out);
void ds_poscount_add_avx512(ds_poscount *pc, const uint64_t K[64]);
void ds_poscount_flush_avx512(ds_poscount *pc, uint64_t cnt[64]);
#endif

/* 0 ref, 1 pdep only (avx2), 2 avx512 */
static int level(void)
{
#ifdef DS_KERNELS_X86
    const ds_simd v = ds_simd_active();
    if (v == DS_SIMD_AVX512 && __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("avx512vpopcntdq"))
        return 2;
    return v >= DS_SIMD_AVX2;
#else
    return 0;
#endif
}

void ds_bit_transpose64(uint64_t a[64])
{
#ifdef DS_KERNELS_X86
    if (level() == 2) {
        ds_bit_transpose64_avx512(a);
        return;
    }
#endif
    ds_bit_transpose64_ref(a);
}

void ds_bitstat_keep(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K)
{
#ifdef DS_KERNELS_X86
    const int l = level();
    if (l == 2) {
        ds_bitstat_keep_avx512(n, T, ncoord, lo, hi, K);
        return;
    }
    if (l == 1) {
        ds_bitstat_keep_bmi2(n, T, ncoord, lo, hi, K);
        return;
    }
#endif
    ds_bitstat_keep_ref(n, T, ncoord, lo, hi, K);
}

void ds_bitstat_accum(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg, double acc[64])
{
#ifdef DS_KERNELS_X86
    if (level() == 2) {
        ds_bitstat_accum_avx512(nq, m, pos, neg, acc);
        return;
    }
#endif
    ds_bitstat_accum_ref(nq, m, pos, neg, acc);
}

void ds_bitstat_tabsum(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K, double div, float *out)
{
#ifdef DS_KERNELS_X86
    if (level() == 2) {
        ds_bitstat_tabsum_avx512(ncoord, tab, T, K, div, out);
        return;
    }
#endif
    ds_bitstat_tabsum_ref(ncoord, tab, T, K, div, out);
}

void ds_poscount_add(ds_poscount *pc, const uint64_t K[64])
{
#ifdef DS_KERNELS_X86
    if (level() == 2) {
        ds_poscount_add_avx512(pc, K);
        return;
    }
#endif
    ds_poscount_add_ref(pc, K);
}

void ds_poscount_flush(ds_poscount *pc, uint64_t cnt[64])
{
#ifdef DS_KERNELS_X86
    if (level() == 2) {
        ds_poscount_flush_avx512(pc, cnt);
        return;
    }
#endif
    ds_poscount_flush_ref(pc, cnt);
}

const char *ds_bitstat_variant(void)
{
    static const char *const names[] = {"ref", "avx2", "avx512"};
    return names[level()];
}
