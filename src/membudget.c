/* Memory a job will need (src/membudget.h). */
#include "config.h"
#include "src/membudget.h"
#include <unistd.h>

double ds_llama_act_bytes(const ds_config *c, int64_t max_b, int64_t max_t)
{
    const double D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, H = c->n_heads;
    const double KVD = D / H * c->n_kv_heads, B = (double)max_b, T = (double)max_t, N = B * T;
    /* as allocated by ds_llama_act_new, in floats (tokens: ints) */
    double f = (L + 1) * N * D        /* x */
               + 5 * L * N * D         /* xn1, q, att, xmid, xn2 */
               + 2 * L * N             /* rs1, rs2 */
               + 2 * L * N * KVD       /* k, v */
               + L * B * H * T * T     /* P */
               + 3 * L * N * F         /* h1, h3, act */
               + N * D + N             /* xf, rsf */
               + 2 * N * V             /* logits, dlogits */
               + 4 * N * D             /* dx, dxn, dq, datt */
               + 2 * N * KVD           /* dk, dv */
               + 2 * N * F             /* dh1, dh3 */
               + T * T;                /* dP */
    return 4.0 * f + 4.0 * N;
}

double ds_mem_node_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size : 0;
}

int ds_mem_check(const ds_ctx *ctx, double bytes, const char *what, const char *hint)
{
    MPI_Comm node;
    MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
    double sum = 0;
    int n = 1;
    MPI_Allreduce(&bytes, &sum, 1, MPI_DOUBLE, MPI_SUM, node);
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    const double have = ds_mem_node_bytes(), gib = 1024.0 * 1024.0 * 1024.0;
    int rc = 0;
    if (have > 0 && sum > have)
        rc = ds_err(DS_EXIT_INPUT, "%s: needs %.1f GiB per rank (%d rank(s) on this node: %.1f GiB), more than this node's %.1f GiB of memory%s",
                    what, bytes / gib, n, sum / gib, have / gib, hint ? hint : "");
    return ds_ctx_agree(ctx, rc);
}
