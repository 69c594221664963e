/* Memory a job will need (src/membudget.h). */
#include "config.h"
#include "src/membudget.h"
#include <unistd.h>

double ds_mem_node_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size : 0;
}

static double per_rank_limit; /* --mem-per-rank, bytes; 0: the node's memory shared */

void ds_mem_set_per_rank(double bytes) { per_rank_limit = bytes > 0 ? bytes : 0; }

double ds_mem_rank_budget(const ds_ctx *ctx)
{
    if (per_rank_limit > 0) return per_rank_limit;
    MPI_Comm node;
    int n = 1;
    MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    return ds_mem_node_bytes() / n;
}

int ds_mem_check(const ds_ctx *ctx, double bytes, const char *what, const char *hint)
{
    const double gib = 1024.0 * 1024.0 * 1024.0;
    if (per_rank_limit > 0) {
        int rc = 0;
        if (bytes > per_rank_limit)
            rc = ds_err(DS_EXIT_INPUT, "%s: needs %.1f GiB per rank, more than --mem-per-rank %.1f GiB%s", what,
                        bytes / gib, per_rank_limit / gib, hint ? hint : "");
        return ds_ctx_agree(ctx, rc);
    }
    MPI_Comm node;
    MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
    double sum = 0;
    int n = 1;
    MPI_Allreduce(&bytes, &sum, 1, MPI_DOUBLE, MPI_SUM, node);
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    const double have = ds_mem_node_bytes();
    int rc = 0;
    if (have > 0 && sum > have)
        rc = ds_err(DS_EXIT_INPUT, "%s: needs %.1f GiB per rank (%d rank(s) on this node: %.1f GiB), more than this node's %.1f GiB of memory%s",
                    what, bytes / gib, n, sum / gib, have / gib, hint ? hint : "");
    return ds_ctx_agree(ctx, rc);
}
