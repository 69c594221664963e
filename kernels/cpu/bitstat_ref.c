/* Portable reference twins of kernels/cpu/bitstat.h. */
#include "kernels/cpu/bitstat.h"
#include "kernels/cpu/bitstat_impl.h"

void ds_bit_transpose64_ref(uint64_t a[64])
{
    /* recursive block swap, Hacker's Delight 7-3 */
    uint64_t m = 0x00000000FFFFFFFFull;
    for (unsigned j = 32; j; j >>= 1, m ^= m << j)
        for (unsigned k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            const uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k] ^= t << j;
            a[k | j] ^= t;
        }
}

/* Bits of x whose rank among the set bits lies in [a, b): the portable pdep
 * of a rank range. */
static uint64_t rank_bits_ref(uint64_t x, long a, long b)
{
    uint64_t out = 0;
    for (long r = 0; x && r < b; r++, x &= x - 1)
        if (r >= a) out |= x & (0 - x);
    return out;
}

void ds_bitstat_keep_ref(size_t n, const uint64_t *T, size_t ncoord, size_t lo, size_t hi, uint64_t *K)
{
    ds_bitstat_keep_with(n, T, ncoord, lo, hi, K, rank_bits_ref);
}

void ds_bitstat_accum_ref(size_t nq, const double *m, const uint64_t *pos, const uint64_t *neg, double acc[64])
{
    for (size_t q = 0; q < nq; q++) {
        const double v = m[q];
        for (uint64_t x = pos[q]; x; x &= x - 1) acc[__builtin_ctzll(x)] += v;
        for (uint64_t x = neg[q]; x; x &= x - 1) acc[__builtin_ctzll(x)] -= v;
    }
}
