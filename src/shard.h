/* Work distribution across ranks. */
#ifndef DS_SHARD_H
#define DS_SHARD_H
#include <stdint.h>

/* Size-balanced: items sorted by size (largest first, ties by index) go one
 * by one to the least-loaded rank (ties: lowest rank). owner[i] receives the
 * rank of item i. Deterministic for given sizes and nranks. */
void ds_shard_by_size(int n, const int64_t *sizes, int nranks, int *owner);

/* Contiguous block of [0, n) for rank r of size ranks: [*lo, *hi). */
void ds_shard_range(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi);
#endif
