/* Run-time choice of the CPU kernel variant (portable reference, AVX2,
 * AVX-512). Every public kernel in bitpack.h / popcount.h dispatches through
 * the active variant; all variants give bit-identical results.
 * The first kernel call picks the variant from the environment variable
 * DS_SIMD=ref|avx2|avx512 when set, else the best one this CPU supports. */
#ifndef DS_KERNELS_CPU_DISPATCH_H
#define DS_KERNELS_CPU_DISPATCH_H

typedef enum {
    DS_SIMD_REF = 0,    /* portable C */
    DS_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C + POPCNT (Haswell and later) */
    DS_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL/DQ (Skylake-X and later); VPOPCNTDQ used when present */
    DS_SIMD_COUNT
} ds_simd;

/* 1 when this CPU (and this build) can run variant v, else 0. */
int ds_simd_supported(ds_simd v);
/* The best supported variant. */
ds_simd ds_simd_best(void);
/* The variant the kernels use now (resolves DS_SIMD on first use). */
ds_simd ds_simd_active(void);
/* Use variant v from now on, for all threads; 0, or -1 (nothing changed)
 * when this CPU cannot run it. */
int ds_simd_force(ds_simd v);
/* "ref", "avx2", "avx512". */
const char *ds_simd_name(ds_simd v);
/* Parse a name as above; 0 ok, -1 unknown. */
int ds_simd_parse(const char *s, ds_simd *v);
#endif
