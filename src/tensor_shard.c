/* The sharding plan of the tensor jobs (src/tensor_shard.h). */
#include "src/tensor_shard.h"
#include <stdlib.h>
#include "src/shard.h"

void ds_tensor_shard_plan(ds_tensor_shard *p, const ds_ctx *ctx, int n, const ds_tinfo *t0, size_t stride,
                          ds_weigh w)
{
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    p->owner = ds_malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    p->mine = 0;
    p->biggest = 0;
    p->total = 0;
    for (int i = 0; i < n; i++) {
        const ds_tinfo *t = (const ds_tinfo *)(const void *)((const char *)t0 + (size_t)i * stride);
        sizes[i] = w == DS_WEIGH_BYTES ? (int64_t)ds_tinfo_bytes(t) : ds_tinfo_numel(t);
        p->biggest = sizes[i] > p->biggest ? sizes[i] : p->biggest;
        p->total += sizes[i];
    }
    ds_shard_by_size(n, sizes, ctx->size, p->owner);
    for (int i = 0; i < n; i++) p->mine += p->owner[i] == ctx->rank;
    free(sizes);
}

void ds_tensor_shard_free(ds_tensor_shard *p)
{
    free(p->owner);
    p->owner = NULL;
}
