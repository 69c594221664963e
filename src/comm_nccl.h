/* The NCCL side of the comm backend, free of MPI so that tests/gpu and
 * bench/gpu build it with gcc and nvcc alone (src/comm.c does the MPI part:
 * the unique id broadcast). Buffers may be host or device memory; host data
 * is staged through a device buffer in pieces of at most `stage` bytes. */
#ifndef DS_COMM_NCCL_H
#define DS_COMM_NCCL_H
#include <stddef.h>
#include <nccl.h>
#include <cuda_runtime.h>

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    int rank, size;
    void *stage;        /* device staging buffer (send + receive halves) */
    size_t stage_bytes; /* size of each half */
    char err[256];      /* the last failure */
} ds_nccl;

/* Join the communicator of `size` ranks named by id, as `rank`, on the
 * current CUDA device, with staging halves of stage_bytes. 0 or -1 (n->err). */
int ds_nccl_init(ds_nccl *n, ncclUniqueId id, int size, int rank, size_t stage_bytes);
void ds_nccl_free(ds_nccl *n);

/* The collectives of src/comm.h; 0 or -1 (message in n->err). */
int ds_nccl_allgather(ds_nccl *n, const void *send, void *recv, size_t bytes);
int ds_nccl_allreduce_sum(ds_nccl *n, ncclDataType_t t, const void *send, void *recv, size_t count);
int ds_nccl_broadcast(ds_nccl *n, void *buf, size_t bytes, int root);
#endif
