/* Internal to kernels/cpu/bitstat*.c: the keep loop shared by the variants,
 * which differ only in how a rank range of set bits is selected. */
#ifndef DS_KERNELS_CPU_BITSTAT_IMPL_H
#define DS_KERNELS_CPU_BITSTAT_IMPL_H
#include <stddef.h>
#include <stdint.h>

/* rank_bits(x, a, b): the set bits of x whose rank lies in [a, b). */
typedef uint64_t (*ds_rank_bits_fn)(uint64_t x, long a, long b);

static inline uint64_t ds_bitstat_valid(size_t n, size_t j)
{
    return n - 64 * j >= 64 ? ~0ull : (1ull << (n - 64 * j)) - 1;
}

/* Set bits of rank [lo1, hi1] and clear bits of rank [lo0, hi0] (counted
 * across the words) are kept; the clear bits of the value order are in
 * descending position, so their rank range is c0 - 1 - hi .. c0 - 1 - lo. */
static inline __attribute__((always_inline)) void
ds_bitstat_keep_with(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K,
                     ds_rank_bits_fn rank_bits)
{
    const size_t nw = (n + 63) / 64;
    if (nw == 1) { /* up to 64 users: one word per coordinate */
        const uint64_t v = ds_bitstat_valid(n, 0);
        for (size_t c = 0; c < ncoord; c++) {
            const uint64_t x1 = T[c] & v;
            const long c0 = (long)n - __builtin_popcountll(x1);
            K[c] = rank_bits(x1, (long)lo - c0, (long)hi - c0 + 1) | rank_bits(~x1 & v, c0 - 1 - (long)hi, c0 - (long)lo);
        }
        return;
    }
    for (size_t c = 0; c < ncoord; c++) {
        long c1 = 0;
        for (size_t j = 0; j < nw; j++) c1 += __builtin_popcountll(T[64 * j + c] & ds_bitstat_valid(n, j));
        const long c0 = (long)n - c1;
        const long a1 = (long)lo - c0, b1 = (long)hi - c0 + 1, a0 = c0 - 1 - (long)hi, b0 = c0 - (long)lo;
        long seen1 = 0, seen0 = 0;
        for (size_t j = 0; j < nw; j++) {
            const uint64_t v = ds_bitstat_valid(n, j), x1 = T[64 * j + c] & v, x0 = ~x1 & v;
            K[64 * j + c] = rank_bits(x1, a1 - seen1, b1 - seen1) | rank_bits(x0, a0 - seen0, b0 - seen0);
            seen1 += __builtin_popcountll(x1);
            seen0 += __builtin_popcountll(x0);
        }
    }
}
#endif
