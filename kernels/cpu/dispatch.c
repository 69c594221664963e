/* CPU feature detection and the active kernel variant. */
#include "kernels/cpu/dispatch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/bitpack_impl.h"
#ifdef DS_KERNELS_X86
#include <cpuid.h>
#endif

static const char *const simd_names[DS_SIMD_COUNT] = {"ref", "avx2", "avx512"};

static const ds_kernel_table table_ref = {
    ds_bitpack_compress_ref, ds_bitpack_apply_ref, ds_bitpack_expand_ref,
    ds_hamming_ref,          ds_hamming_pairs_ref, ds_count_ones_ref,
};
#ifdef DS_KERNELS_X86
static const ds_kernel_table table_avx2 = {
    ds_bitpack_compress_avx2, ds_bitpack_apply_avx2, ds_bitpack_expand_avx2,
    ds_hamming_avx2,          ds_hamming_pairs_avx2, ds_count_ones_avx2,
};
static const ds_kernel_table table_avx512 = {
    ds_bitpack_compress_avx512, ds_bitpack_apply_avx512, ds_bitpack_expand_avx512,
    ds_hamming_avx512,          ds_hamming_pairs_avx512, ds_count_ones_avx512,
};
/* AVX-512 CPUs before Ice Lake lack VPOPCNTDQ: AVX2's lookup popcount there. */
static const ds_kernel_table table_avx512_nopopcnt = {
    ds_bitpack_compress_avx512, ds_bitpack_apply_avx512, ds_bitpack_expand_avx512,
    ds_hamming_avx2,            ds_hamming_pairs_avx2,   ds_count_ones_avx512,
};

static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

int ds_simd_supported(ds_simd v)
{
    switch (v) {
    case DS_SIMD_REF: return 1;
#ifdef DS_KERNELS_X86
    /* __builtin_cpu_supports also checks that the OS saves the wide registers. */
    case DS_SIMD_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi2") &&
               cpu_has_f16c();
    case DS_SIMD_AVX512:
        return ds_simd_supported(DS_SIMD_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
#endif
    default: return 0;
    }
}

ds_simd ds_simd_best(void)
{
    for (int v = DS_SIMD_COUNT - 1; v > DS_SIMD_REF; v--)
        if (ds_simd_supported((ds_simd)v)) return (ds_simd)v;
    return DS_SIMD_REF;
}

const char *ds_simd_name(ds_simd v)
{
    return (unsigned)v < DS_SIMD_COUNT ? simd_names[v] : "unknown";
}

int ds_simd_parse(const char *s, ds_simd *v)
{
    for (int i = 0; i < DS_SIMD_COUNT; i++)
        if (strcmp(s, simd_names[i]) == 0) {
            *v = (ds_simd)i;
            return 0;
        }
    return -1;
}

/* -1 until the first kernel call (or ds_simd_force); atomics because any
 * thread may make that first call. */
static int active = -1;

static ds_simd simd_from_env(void)
{
    ds_simd best = ds_simd_best(), v;
    const char *e = getenv("DS_SIMD");
    if (!e || !*e) return best;
    if (ds_simd_parse(e, &v) != 0) {
        fprintf(stderr, "deltasoup: DS_SIMD=%s is not ref, avx2 or avx512; using %s\n", e,
                ds_simd_name(best));
        return best;
    }
    if (!ds_simd_supported(v)) {
        fprintf(stderr, "deltasoup: DS_SIMD=%s: this CPU cannot run it; using %s\n", e,
                ds_simd_name(best));
        return best;
    }
    return v;
}

ds_simd ds_simd_active(void)
{
    int a = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (a < 0) {
        int want = (int)simd_from_env(), expect = -1;
        /* A concurrent ds_simd_force wins over the environment. */
        if (!__atomic_compare_exchange_n(&active, &expect, want, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            want = expect;
        a = want;
    }
    return (ds_simd)a;
}

int ds_simd_force(ds_simd v)
{
    if (!ds_simd_supported(v)) return -1;
    __atomic_store_n(&active, (int)v, __ATOMIC_RELEASE);
    return 0;
}

const ds_kernel_table *ds_kernels(void)
{
    switch (ds_simd_active()) {
#ifdef DS_KERNELS_X86
    case DS_SIMD_AVX2: return &table_avx2;
    case DS_SIMD_AVX512:
        return __builtin_cpu_supports("avx512vpopcntdq") ? &table_avx512
                                                         : &table_avx512_nopopcnt;
#endif
    default: return &table_ref;
    }
}
