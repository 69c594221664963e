/* Work distribution: size-balanced tensor ownership, contiguous ranges. */
#include "config.h"
#include "src/shard.h"
#include "src/ds.h"
#include <stdlib.h>

static const int64_t *sort_sizes;
static int cmp_desc(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_sizes[i] != sort_sizes[j]) return sort_sizes[i] > sort_sizes[j] ? -1 : 1;
    return i - j;
}

void ds_shard_by_size(int n, const int64_t *sizes, int nranks, int *owner)
{
    int *order = ds_malloc(sizeof(int) * (size_t)(n ? n : 1));
    int64_t *load = ds_calloc((size_t)nranks, sizeof(int64_t));
    for (int i = 0; i < n; i++) order[i] = i;
    sort_sizes = sizes;
    qsort(order, (size_t)n, sizeof(int), cmp_desc);
    for (int k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < nranks; r++)
            if (load[r] < load[best]) best = r;
        owner[order[k]] = best;
        load[best] += sizes[order[k]];
    }
    free(order);
    free(load);
}

void ds_shard_range(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi)
{
    int64_t base = n / nranks, rem = n % nranks;
    *lo = rank * base + (rank < rem ? rank : rem);
    *hi = *lo + base + (rank < rem ? 1 : 0);
}
