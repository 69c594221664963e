/* The sharding plan of the tensor jobs (import, export, compress, apply,
 * poison): tensors go to ranks by size (ds_shard_by_size), weighed in bytes
 * or in elements; each rank then reads and writes only its own. */
#ifndef DS_TENSOR_SHARD_H
#define DS_TENSOR_SHARD_H
#include <stddef.h>
#include <stdint.h>
#include "src/ctx.h"

typedef enum { DS_WEIGH_BYTES, DS_WEIGH_ELEMENTS } ds_weigh;

typedef struct {
    int *owner;      /* owner[i]: the rank of tensor i */
    int mine;        /* how many tensors this rank owns */
    int64_t biggest; /* the largest weight (bytes or elements), over all tensors */
    int64_t total;   /* the sum of the weights */
} ds_tensor_shard;

/* Plan n tensors over ctx's ranks. Tensor i is the ds_tinfo at
 * (const char *)t0 + i * stride: stride sizeof(ds_tinfo) for an array of
 * them, sizeof(entry) with t0 = &entries[0].t for the member of an array of
 * structs. The same sizes give the same plan on every rank. Free with
 * ds_tensor_shard_free. */
void ds_tensor_shard_plan(ds_tensor_shard *p, const ds_ctx *ctx, int n, const ds_tinfo *t0, size_t stride,
                          ds_weigh w);
void ds_tensor_shard_free(ds_tensor_shard *p);
#endif
