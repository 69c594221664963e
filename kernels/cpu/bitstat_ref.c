/* Portable reference twins of kernels/cpu/bitstat.h. */
#include "kernels/cpu/bitstat.h"
#include <string.h>
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

void ds_bitstat_tab16(size_t n, const double *m, double tab[256])
{
    for (size_t g = 0; g < 16; g++) {
        tab[16 * g] = 0.0;
        for (unsigned x = 1; x < 16; x++) {
            const size_t q = 4 * g + (size_t)__builtin_ctz(x);
            tab[16 * g + x] = tab[16 * g + (x & (x - 1))] + (q < n ? m[q] : 0.0);
        }
    }
}

static double tab_sum(const double tab[256], uint64_t x)
{
    double s = 0.0;
    for (unsigned g = 0; g < 16; g++, x >>= 4) s += tab[16 * g + (x & 15u)];
    return s;
}

void ds_bitstat_tabsum_ref(size_t ncoord, const double tab[256], const uint64_t *T, const uint64_t *K, double div,
                           float *out)
{
    for (size_t c = 0; c < ncoord; c++)
        out[c] = (float)((tab_sum(tab, K[c] & T[c]) - tab_sum(tab, K[c] & ~T[c])) / div);
}

/* a + b + c = s + 2 carry, bit by bit */
static inline void full_add(uint64_t a, uint64_t b, uint64_t c, uint64_t *s, uint64_t *carry)
{
    const uint64_t u = a ^ b;
    *s = u ^ c;
    *carry = (a & b) | (u & c);
}

void ds_poscount_add_ref(ds_poscount *pc, const uint64_t K[64])
{
    for (int l = 0; l < 8; l++) {
        /* the 8 words of lane l as one 4-bit count per position: s1 + 2 s2 + 4 s4 + 8 s8 */
        uint64_t sa, ca, sb, cb, s1, cc, t2, t4a;
        full_add(K[l], K[8 + l], K[16 + l], &sa, &ca);
        full_add(K[24 + l], K[32 + l], K[40 + l], &sb, &cb);
        full_add(sa, sb, K[48 + l], &s1, &cc);
        const uint64_t cd = s1 & K[56 + l];
        s1 ^= K[56 + l];
        full_add(ca, cb, cc, &t2, &t4a);
        const uint64_t s2 = t2 ^ cd, t4b = t2 & cd;
        const uint64_t in[4] = {s1, s2, t4a ^ t4b, t4a & t4b};
        uint64_t carry = 0;
        for (int p = 0; p < DS_POSCOUNT_PLANES; p++) {
            uint64_t sum;
            full_add(pc->pl[p][l], p < 4 ? in[p] : 0, carry, &sum, &carry);
            pc->pl[p][l] = sum;
        }
    }
    pc->adds++;
}

void ds_poscount_flush_ref(ds_poscount *pc, uint64_t cnt[64])
{
    for (int p = 0; p < DS_POSCOUNT_PLANES; p++)
        for (int l = 0; l < 8; l++)
            for (uint64_t w = pc->pl[p][l]; w; w &= w - 1) cnt[__builtin_ctzll(w)] += (uint64_t)1 << p;
    memset(pc, 0, sizeof *pc);
}
