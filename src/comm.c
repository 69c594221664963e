/* The comm interface (src/comm.h): MPI backend here, NCCL through
 * src/comm_nccl.c when the build has it. */
#include "config.h"
#include "src/comm.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "src/device.h"
#ifdef DS_HAVE_NCCL
#include "src/comm_nccl.h"
/* Device staging for host buffers: 2 x 64 MiB per rank. */
#define DS_NCCL_STAGE ((size_t)64 << 20)
#endif

struct ds_comm {
    ds_comm_backend backend;
    ds_ctx ctx;
    size_t max_chunk; /* bytes per MPI call */
#ifdef DS_HAVE_NCCL
    ds_nccl nccl;
#endif
};

int ds_comm_backend_parse(const char *s, ds_comm_backend *out)
{
    if (strcmp(s, "mpi") == 0) *out = DS_COMM_MPI;
    else if (strcmp(s, "nccl") == 0) *out = DS_COMM_NCCL;
    else return ds_err(DS_EXIT_USAGE, "--comm: unknown backend '%s' (mpi or nccl)", s);
    return 0;
}

const char *ds_comm_backend_name(ds_comm_backend b) { return b == DS_COMM_NCCL ? "nccl" : "mpi"; }

ds_comm_backend ds_comm_backend_of(const ds_comm *c) { return c->backend; }

void ds_comm_set_max_chunk(ds_comm *c, size_t bytes) { c->max_chunk = bytes < 8 ? 8 : bytes; }

#ifdef DS_HAVE_NCCL
static int nccl_init(ds_comm *c)
{
    int gpu, rc = ds_device_bind(&c->ctx, 1, &gpu);
    if (rc) return rc;
    ncclUniqueId id;
    if (c->ctx.rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) rc = ds_err(DS_EXIT_FAIL, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    rc = ds_ctx_agree(&c->ctx, rc);
    if (rc) return rc;
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, c->ctx.comm);
    /* The other ranks are inside ncclCommInitRank now: a failure cannot be
     * agreed on any more. */
    if (ds_nccl_init(&c->nccl, id, c->ctx.size, c->ctx.rank, DS_NCCL_STAGE))
        ds_die("rank %d (GPU %d): %s", c->ctx.rank, gpu, c->nccl.err);
    return 0;
}
#endif

int ds_comm_init(ds_comm **out, const ds_ctx *ctx, ds_comm_backend backend)
{
    *out = NULL;
    ds_comm *c = ds_calloc(1, sizeof *c);
    c->backend = backend;
    c->ctx = *ctx;
    c->max_chunk = (size_t)1 << 30;
    int rc = 0;
    if (backend == DS_COMM_NCCL) {
#ifdef DS_HAVE_NCCL
        rc = nccl_init(c);
#else
        rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_USAGE, "--comm nccl: this build has no NCCL (configure --with-nccl)"));
#endif
    } else if (backend != DS_COMM_MPI) {
        rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_USAGE, "unknown comm backend %d", (int)backend));
    }
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ds_comm_free(ds_comm *c)
{
    if (!c) return;
#ifdef DS_HAVE_NCCL
    if (c->backend == DS_COMM_NCCL) ds_nccl_free(&c->nccl);
#endif
    free(c);
}

#ifdef DS_HAVE_NCCL
#define NCCL_OR_DIE(c, call) \
    do { if ((call) != 0) ds_die("rank %d: %s", (c)->ctx.rank, (c)->nccl.err); } while (0)
#endif

void ds_comm_allgather(ds_comm *c, const void *send, void *recv, size_t bytes)
{
#ifdef DS_HAVE_NCCL
    if (c->backend == DS_COMM_NCCL) {
        NCCL_OR_DIE(c, ds_nccl_allgather(&c->nccl, send, recv, bytes));
        return;
    }
#endif
    /* Pieces of at most max_chunk bytes; a resized type puts rank r's piece
     * at recv + r * bytes + off (extents are MPI_Aint, counts int). */
    for (size_t off = 0; off < bytes; off += c->max_chunk) {
        size_t len = bytes - off < c->max_chunk ? bytes - off : c->max_chunk;
        MPI_Datatype piece, spaced;
        MPI_Type_contiguous((int)len, MPI_BYTE, &piece);
        MPI_Type_create_resized(piece, 0, (MPI_Aint)bytes, &spaced);
        MPI_Type_commit(&spaced);
        MPI_Allgather((const char *)send + off, (int)len, MPI_BYTE, (char *)recv + off, 1, spaced, c->ctx.comm);
        MPI_Type_free(&spaced);
        MPI_Type_free(&piece);
    }
}

static void mpi_allreduce(ds_comm *c, const void *send, void *recv, size_t n, size_t es, MPI_Datatype t)
{
    const size_t step = c->max_chunk / es;
    for (size_t off = 0; off < n; off += step) {
        size_t len = n - off < step ? n - off : step;
        const void *s = send == recv ? MPI_IN_PLACE : (const char *)send + off * es;
        MPI_Allreduce(s, (char *)recv + off * es, (int)len, t, MPI_SUM, c->ctx.comm);
    }
}

void ds_comm_allreduce_sum_f32(ds_comm *c, const float *send, float *recv, size_t n)
{
#ifdef DS_HAVE_NCCL
    if (c->backend == DS_COMM_NCCL) {
        NCCL_OR_DIE(c, ds_nccl_allreduce_sum(&c->nccl, ncclFloat32, send, recv, n));
        return;
    }
#endif
    mpi_allreduce(c, send, recv, n, sizeof *send, MPI_FLOAT);
}

void ds_comm_allreduce_sum_f64(ds_comm *c, const double *send, double *recv, size_t n)
{
#ifdef DS_HAVE_NCCL
    if (c->backend == DS_COMM_NCCL) {
        NCCL_OR_DIE(c, ds_nccl_allreduce_sum(&c->nccl, ncclFloat64, send, recv, n));
        return;
    }
#endif
    mpi_allreduce(c, send, recv, n, sizeof *send, MPI_DOUBLE);
}

void ds_comm_broadcast(ds_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->ctx.size) ds_die("ds_comm_broadcast: root %d of %d ranks", root, c->ctx.size);
#ifdef DS_HAVE_NCCL
    if (c->backend == DS_COMM_NCCL) {
        NCCL_OR_DIE(c, ds_nccl_broadcast(&c->nccl, buf, bytes, root));
        return;
    }
#endif
    for (size_t off = 0; off < bytes; off += c->max_chunk) {
        size_t len = bytes - off < c->max_chunk ? bytes - off : c->max_chunk;
        MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, c->ctx.comm);
    }
}
