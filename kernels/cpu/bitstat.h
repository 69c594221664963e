/* Bit-level order statistics of 1-bit values (src/aggregate.c's trimmed
 * mean and median): the building blocks on blocks of 64 coordinates x up to
 * 64 users per word. Portable _ref twins and AVX-512 (GFNI, VBMI, BMI2)
 * variants chosen at run time through kernels/cpu/dispatch.h (DS_SIMD); all
 * variants give bit-identical results. */
#ifndef DS_KERNELS_CPU_BITSTAT_H
#define DS_KERNELS_CPU_BITSTAT_H
#include <stddef.h>
#include <stdint.h>

/* In-place transpose of a 64 x 64 bit matrix: afterwards bit j of a[i] is
 * bit i of a[j] before. */
void ds_bit_transpose64(uint64_t a[64]);
void ds_bit_transpose64_ref(uint64_t a[64]);

/* Kept masks of a trimmed block. n users in ascending order (positions
 * q = 0..n-1), nw = ceil(n / 64) words of 64 positions. T[64 j + c] has bit
 * q set when the user at position 64 j + q has value +m (b' = 1) at
 * coordinate c (c < ncoord <= 64); bits of positions >= n are ignored. In
 * the value order (clear bits by descending position, then set bits by
 * ascending position) the values of rank lo..hi are kept: K[64 j + c] gets
 * the kept positions (set and clear) of coordinate c. */
void ds_bitstat_keep(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K);
void ds_bitstat_keep_ref(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K);

/* Signed masked sums, in position order: for q = 0..nq-1, acc[c] += m[q]
 * for every bit c of pos[q], then acc[c] -= m[q] for every bit c of neg[q]
 * (pos[q] & neg[q] == 0). Each lane is a chain of double additions in q
 * order, the same in every variant. */
void ds_bitstat_accum(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg, double acc[64]);
void ds_bitstat_accum_ref(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg, double acc[64]);

/* Exact sums through nibble tables, for callers that have checked that
 * every signed sum of the m's is exact in double (then the order of the
 * additions cannot change a result, and these equal accum's chains bit for
 * bit). tab16 fills tab[16 g + x] with the sum of m[4 g + i] over the set
 * bits i of x (g = 0..15; m[q] for q >= n counts as 0). tabsum sets, for
 * c < ncoord, out[c] = (float)((S(K[c] & T[c]) - S(K[c] & ~T[c])) / div),
 * where S(x) sums tab[16 g + (nibble g of x)] over the 16 nibbles of x. */
void ds_bitstat_tab16(size_t n, const double *m, double tab[256]);
void ds_bitstat_tabsum(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K, double div, float *out);
void ds_bitstat_tabsum_ref(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K, double div,
                           float *out);

/* Counts by position over many 64 x 64 blocks (the kept values of each
 * user in the trimmed mean): add counts the set bits of each position q
 * among the 64 words K[0..63] into bit-sliced counters (plane p of lane l
 * holds bit p of the count of q among K[l], K[l + 8], ..., K[l + 56] since
 * the last flush; at most DS_POSCOUNT_ADDS adds between flushes, as each
 * add is up to 8 per lane); flush adds the counts into cnt[64] and clears
 * the counters. Portable twin and an AVX-512 variant (VPTERNLOG adders,
 * VPMOVM2B for the flush), the same counts. */
#define DS_POSCOUNT_PLANES 8
#define DS_POSCOUNT_ADDS 31
typedef struct {
    uint64_t pl[DS_POSCOUNT_PLANES][8];
    int adds;
} ds_poscount;
void ds_poscount_add(ds_poscount *pc, const uint64_t K[64]);
void ds_poscount_flush(ds_poscount *pc, uint64_t cnt[64]);
void ds_poscount_add_ref(ds_poscount *pc, const uint64_t K[64]);
void ds_poscount_flush_ref(ds_poscount *pc, uint64_t cnt[64]);

/* The variant in use: "ref" or "avx512" (avx2 uses the _ref twins but
 * pdep for keep). */
const char *ds_bitstat_variant(void);
#endif
