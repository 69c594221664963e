/* NCCL collectives with host or device buffers (see src/comm_nccl.h). */
#include "src/comm_nccl.h"
#include <stdint.h>
#include <stdio.h>

static int fail_cuda(ds_nccl *n, const char *what, cudaError_t e)
{
    snprintf(n->err, sizeof n->err, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

static int fail_nccl(ds_nccl *n, const char *what, ncclResult_t r)
{
    snprintf(n->err, sizeof n->err, "%s: %s", what, ncclGetErrorString(r));
    return -1;
}

#define CU(what, call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) return fail_cuda(n, what, e_); } while (0)
#define NC(what, call) do { ncclResult_t r_ = (call); if (r_ != ncclSuccess) return fail_nccl(n, what, r_); } while (0)

/* Device (or managed) memory goes to NCCL as it is; host memory is staged. */
static int on_device(const void *p)
{
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

int ds_nccl_init(ds_nccl *n, ncclUniqueId id, int size, int rank, size_t stage_bytes)
{
    n->comm = NULL;
    n->stream = NULL;
    n->stage = NULL;
    n->err[0] = '\0';
    n->rank = rank;
    n->size = size;
    /* An allgather piece is stage_bytes / size bytes per rank: keep it >= 1. */
    n->stage_bytes = stage_bytes < (size_t)size ? (size_t)size : stage_bytes;
    CU("cudaStreamCreate", cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CU("cudaMalloc (NCCL staging buffer)", cudaMalloc(&n->stage, 2 * n->stage_bytes));
    NC("ncclCommInitRank", ncclCommInitRank(&n->comm, size, id, rank));
    return 0;
}

void ds_nccl_free(ds_nccl *n)
{
    if (n->comm) {
        ncclCommFinalize(n->comm);
        ncclCommDestroy(n->comm);
    }
    if (n->stage) cudaFree(n->stage);
    if (n->stream) cudaStreamDestroy(n->stream);
    n->comm = NULL;
    n->stage = NULL;
    n->stream = NULL;
}

static int wait_stream(ds_nccl *n, const char *what)
{
    CU(what, cudaStreamSynchronize(n->stream));
    return 0;
}

int ds_nccl_allreduce_sum(ds_nccl *n, ncclDataType_t t, const void *send, void *recv, size_t count)
{
    const size_t es = t == ncclFloat64 ? 8 : 4;
    if (count == 0) return 0;
    if (on_device(send) && on_device(recv)) {
        NC("ncclAllReduce", ncclAllReduce(send, recv, count, t, ncclSum, n->comm, n->stream));
        return wait_stream(n, "ncclAllReduce");
    }
    const size_t piece = n->stage_bytes / es;
    for (size_t off = 0; off < count; off += piece) {
        size_t len = count - off < piece ? count - off : piece;
        CU("allreduce staging", cudaMemcpyAsync(n->stage, (const char *)send + off * es, len * es, cudaMemcpyDefault, n->stream));
        NC("ncclAllReduce", ncclAllReduce(n->stage, n->stage, len, t, ncclSum, n->comm, n->stream));
        CU("allreduce staging", cudaMemcpyAsync((char *)recv + off * es, n->stage, len * es, cudaMemcpyDefault, n->stream));
        if (wait_stream(n, "ncclAllReduce")) return -1;
    }
    return 0;
}

int ds_nccl_allgather(ds_nccl *n, const void *send, void *recv, size_t bytes)
{
    if (bytes == 0) return 0;
    if (on_device(send) && on_device(recv)) {
        NC("ncclAllGather", ncclAllGather(send, recv, bytes, ncclUint8, n->comm, n->stream));
        return wait_stream(n, "ncclAllGather");
    }
    char *in = n->stage, *out = (char *)n->stage + n->stage_bytes;
    const size_t piece = n->stage_bytes / (size_t)n->size;
    for (size_t off = 0; off < bytes; off += piece) {
        size_t len = bytes - off < piece ? bytes - off : piece;
        CU("allgather staging", cudaMemcpyAsync(in, (const char *)send + off, len, cudaMemcpyDefault, n->stream));
        NC("ncclAllGather", ncclAllGather(in, out, len, ncclUint8, n->comm, n->stream));
        /* Rank r's piece lands at recv + r * bytes + off. */
        CU("allgather staging", cudaMemcpy2DAsync((char *)recv + off, bytes, out, len, len, (size_t)n->size,
                                                  cudaMemcpyDefault, n->stream));
        if (wait_stream(n, "ncclAllGather")) return -1;
    }
    return 0;
}

int ds_nccl_broadcast(ds_nccl *n, void *buf, size_t bytes, int root)
{
    if (bytes == 0) return 0;
    if (on_device(buf)) {
        NC("ncclBroadcast", ncclBroadcast(buf, buf, bytes, ncclUint8, root, n->comm, n->stream));
        return wait_stream(n, "ncclBroadcast");
    }
    for (size_t off = 0; off < bytes; off += n->stage_bytes) {
        size_t len = bytes - off < n->stage_bytes ? bytes - off : n->stage_bytes;
        if (n->rank == root)
            CU("broadcast staging", cudaMemcpyAsync(n->stage, (char *)buf + off, len, cudaMemcpyDefault, n->stream));
        NC("ncclBroadcast", ncclBroadcast(n->stage, n->stage, len, ncclUint8, root, n->comm, n->stream));
        CU("broadcast staging", cudaMemcpyAsync((char *)buf + off, n->stage, len, cudaMemcpyDefault, n->stream));
        if (wait_stream(n, "ncclBroadcast")) return -1;
    }
    return 0;
}
