/* Memory a job will need, checked before it allocates (issue 15 item 11;
 * docs/robustness.md "Sizes that cannot fit"): a size that cannot fit is
 * refused up front with the memory it would need, instead of growing until
 * the kernel kills the job or a malloc fails. */
#ifndef DS_MEMBUDGET_H
#define DS_MEMBUDGET_H
#include <stdint.h>
#include "src/ctx.h"

/* (The bytes of the model's workspace: ds_llama_act_bytes, src/model.h.
 * Measured: finetune at batch 64 and 256, estimate 368 and 1471 MiB, peak
 * RSS 411 and 1539 MiB including the model and the program.) */

/* The memory of this node: physical pages x page size (sysconf). */
double ds_mem_node_bytes(void);

/* Collective: every rank needs bytes (its own estimate); the ranks that
 * share a node (MPI_COMM_TYPE_SHARED) together must fit in the node's
 * memory. Else DS_EXIT_INPUT: "<what>: needs X GiB per rank (N rank(s) on
 * this node: Y GiB), more than this node's Z GiB of memory<hint>". */
int ds_mem_check(const ds_ctx *ctx, double bytes, const char *what, const char *hint);
/* --mem-per-rank: from now on ds_mem_check compares each rank's bytes with
 * this limit instead of the node's memory (bytes <= 0: back to the node). */
void ds_mem_set_per_rank(double bytes);
/* Collective: the memory one rank may use: the --mem-per-rank limit, else
 * the node's memory divided by the ranks on the node. */
double ds_mem_rank_budget(const ds_ctx *ctx);
#endif
