/* Memory a job will need, checked before it allocates (issue 15 item 11;
 * docs/robustness.md "Sizes that cannot fit"): a size that cannot fit is
 * refused up front with the memory it would need, instead of growing until
 * the kernel kills the job or a malloc fails. */
#ifndef DS_MEMBUDGET_H
#define DS_MEMBUDGET_H
#include <stdint.h>
#include "src/ctx.h"

/* Bytes of ds_llama_act_new(m, max_b, max_t) for a model of config c (the
 * forward activations and the backward buffers of src/model.c; kept in step
 * with it; measured: finetune at batch 64 and 256, estimate 368 and 1471 MiB,
 * peak RSS 411 and 1539 MiB including the model and the program). */
double ds_llama_act_bytes(const ds_config *c, int64_t max_b, int64_t max_t);

/* The memory of this node: physical pages x page size (sysconf). */
double ds_mem_node_bytes(void);

/* Collective: every rank needs bytes (its own estimate); the ranks that
 * share a node (MPI_COMM_TYPE_SHARED) together must fit in the node's
 * memory. Else DS_EXIT_INPUT: "<what>: needs X GiB per rank (N rank(s) on
 * this node: Y GiB), more than this node's Z GiB of memory<hint>". */
int ds_mem_check(const ds_ctx *ctx, double bytes, const char *what, const char *hint);
#endif
