/* Collective communication behind one interface, for the jobs that combine
 * per-rank partial results (aggregate, fit-scales). Backends:
 *   DS_COMM_MPI  (default, always built): host buffers, the job's MPI
 *                communicator.
 *   DS_COMM_NCCL (builds with NCCL): one rank per GPU; buffers may be host
 *                or device memory (host data is staged through the GPU).
 *                The NCCL unique id is made on rank 0 and broadcast over MPI.
 * Results are those of an allreduce on this number of ranks: a job whose
 * output must not depend on the rank count gathers and sums in a fixed
 * order instead (ds_comm_allgather).
 * Collectives are called by every rank with the same sizes; a failure
 * inside one aborts the job (the other ranks would wait forever). */
#ifndef DS_COMM_H
#define DS_COMM_H
#include <stddef.h>
#include "src/ctx.h"

typedef enum { DS_COMM_MPI = 0, DS_COMM_NCCL = 1 } ds_comm_backend;

typedef struct ds_comm ds_comm;

/* "mpi" or "nccl" (for a --comm option); 0, or DS_EXIT_USAGE with ds_err set. */
int ds_comm_backend_parse(const char *s, ds_comm_backend *out);
const char *ds_comm_backend_name(ds_comm_backend b);

/* Collective: a communicator over ctx's ranks. 0, or (on every rank) a
 * ds_exit code with ds_err set: NCCL asked for in a build without it
 * (DS_EXIT_USAGE), or no GPU for a rank (DS_EXIT_FAIL). With NCCL each rank
 * uses the GPU ds_device_bind chose (local rank modulo the GPU count). */
int ds_comm_init(ds_comm **out, const ds_ctx *ctx, ds_comm_backend backend);
ds_comm_backend ds_comm_backend_of(const ds_comm *c);

/* recv (size * bytes) = every rank's `bytes` bytes of send, in rank order. */
void ds_comm_allgather(ds_comm *c, const void *send, void *recv, size_t bytes);
/* recv[i] = sum over ranks of send[i]; send == recv is allowed (in place). */
void ds_comm_allreduce_sum_f32(ds_comm *c, const float *send, float *recv, size_t n);
void ds_comm_allreduce_sum_f64(ds_comm *c, const double *send, double *recv, size_t n);
/* buf's bytes on `root` go to every rank. */
void ds_comm_broadcast(ds_comm *c, void *buf, size_t bytes, int root);

/* Collective (NCCL tears down together); NULL is fine. */
void ds_comm_free(ds_comm *c);

/* The largest piece one MPI call moves; a test lowers it to exercise the
 * splitting of large buffers (counts of MPI calls are int). */
void ds_comm_set_max_chunk(ds_comm *c, size_t bytes);
#endif
