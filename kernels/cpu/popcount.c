/* Hamming distances and column bit counts: reference versions and the
 * dispatching entry points. */
#include "kernels/cpu/popcount.h"
#include "kernels/cpu/bitpack_impl.h"

uint64_t ds_hamming_ref(const uint64_t *a, const uint64_t *b, size_t nwords)
{
    uint64_t h = 0;
    for (size_t i = 0; i < nwords; i++) h += (uint64_t)__builtin_popcountll(a[i] ^ b[i]);
    return h;
}

void ds_hamming_pairs_ref(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                          uint64_t *out)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            out[i * n + j] += ds_hamming_ref(v[i] + w0, v[j] + w0, w1 - w0);
}

void ds_count_ones_ref(size_t n, const uint64_t *const *v, size_t w0, size_t w1,
                       uint32_t *counts)
{
    for (size_t w = w0; w < w1; w++) {
        uint32_t *c = counts + 64 * (w - w0);
        for (size_t u = 0; u < n; u++) {
            uint64_t x = v[u][w];
            for (int k = 0; k < 64; k++) c[k] += (uint32_t)((x >> k) & 1);
        }
    }
}

uint64_t ds_hamming(const uint64_t *a, const uint64_t *b, size_t nwords)
{
    return ds_kernels()->hamming(a, b, nwords);
}

void ds_hamming_pairs(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint64_t *out)
{
    ds_kernels()->hamming_pairs(n, v, w0, w1, out);
}

void ds_count_ones(size_t n, const uint64_t *const *v, size_t w0, size_t w1, uint32_t *counts)
{
    ds_kernels()->count_ones(n, v, w0, w1, counts);
}
