/* Layers sharded across ranks (docs/model.md "Pipeline"): the ranks of a
 * job are split into groups of P consecutive ranks; rank r is stage r % P of
 * group r / P. Each stage holds a contiguous slice of the decoder layers,
 * balanced by bytes (embeddings on the first stage, final norm and head on
 * the last), and only those weights. Micro-batches flow through the stages
 * of a group with point-to-point messages (GPipe: every forward, then every
 * backward in reverse order; several micro-batches in flight, so the
 * stages overlap); the groups share out documents, items or deltas as
 * data-parallel ranks do, through dp_comm.
 *
 * This file holds the plan (partition and communicators) and the schedule
 * drivers, which know nothing of the model: a stage is a pair of callbacks
 * that turn the activations received from the previous stage into those
 * sent to the next (forward), and the gradient received from the next into
 * the one sent to the previous (backward). */
#ifndef DS_PIPELINE_H
#define DS_PIPELINE_H
#include <mpi.h>
#include <stdint.h>

typedef struct {
    int P;              /* stages per group */
    int groups;         /* number of groups (size / P) */
    int group, stage;   /* this rank's */
    int first, last;    /* stage == 0, stage == P - 1 */
    int l0, l1;         /* this stage's decoder layers [l0, l1) */
    int *bounds;        /* P + 1 layer bounds of every stage */
    MPI_Comm group_comm; /* the P ranks of this group; rank = stage */
    MPI_Comm dp_comm;    /* this stage of every group; rank = group */
} ds_pipe;

/* Split n_layers layers into P contiguous stages that minimise the largest
 * stage's bytes: layer_bytes[l] per layer, extra_first on stage 0 (the
 * embeddings), extra_last on stage P-1 (final norm and head). Every stage
 * gets at least one layer (needs 1 <= P <= n_layers). Among equal splits
 * the one chosen is fixed (each prefix of stages split at its own least
 * largest stage, the later stages taking as few layers as that allows), so
 * every rank computes the same plan. bounds: P + 1 entries, bounds[0] = 0,
 * bounds[P] = n_layers. Returns the largest stage's bytes, or -1 when P is
 * out of range. */
double ds_pipe_partition(int n_layers, const double *layer_bytes, double extra_first, double extra_last, int P,
                         int *bounds);

/* Collective over comm: the plan for P stages per group (P must divide the
 * size of comm and be <= n_layers; checked by the caller), partitioned as
 * ds_pipe_partition. Free with ds_pipe_free. */
void ds_pipe_init(ds_pipe *p, MPI_Comm comm, int P, int n_layers, const double *layer_bytes, double extra_first,
                  double extra_last);
void ds_pipe_free(ds_pipe *p);

/* A stage's work for micro-batch mb (0 .. n_mb-1).
 * forward: in holds n_in floats from the previous stage (in = NULL, n_in = 0
 *   on the first stage); returns the activations to send to the next stage
 *   and sets *n_out (the last stage returns NULL). The returned buffer must
 *   stay valid and unchanged until this stage's callback for micro-batch
 *   mb + DS_PIPE_DEPTH is called (the driver keeps at most DS_PIPE_DEPTH
 *   sends in flight and completes the oldest before that call, so a ring
 *   of DS_PIPE_DEPTH buffers indexed by mb % DS_PIPE_DEPTH is enough). in
 *   is valid during the call only.
 * backward: dout holds n floats from the next stage (NULL, 0 on the last
 *   stage, which starts from its loss); returns the gradient to send to the
 *   previous stage and sets *n_in (the first stage returns NULL); the same
 *   lifetime rule.
 * A callback reports failure by returning NULL with *n set to -1: the driver
 * then tells the other stages (they stop at their next message) and returns
 * non-zero. */
typedef struct {
    float *(*forward)(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out);
    float *(*backward)(void *arg, int mb, const float *dout, int64_t n, int64_t *n_in);
    void *arg;
} ds_pipe_stage;

/* Sends a stage keeps in flight before it waits for the oldest. */
#define DS_PIPE_DEPTH 2

/* Collective over the group: run the forward of micro-batches 0..n_mb-1
 * through the stages (every stage of the group must call it with the same
 * n_mb). Returns 0, or 1 when any stage failed (every stage returns 1). */
int ds_pipe_forward(const ds_pipe *p, int n_mb, const ds_pipe_stage *s);
/* The same for the backward, micro-batches n_mb-1 .. 0. */
int ds_pipe_backward(const ds_pipe *p, int n_mb, const ds_pipe_stage *s);
#endif
