/* Pipeline plan and schedule drivers (src/pipeline.h). */
#include "src/pipeline.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "src/ds.h"

double ds_pipe_partition(int n_layers, const double *layer_bytes, double extra_first, double extra_last, int P,
                         int *bounds)
{
    if (P < 1 || P > n_layers) return -1;
    const int L = n_layers;
    /* prefix sums; best[k][j]: the smallest largest-stage cost of layers
     * [0, j) in k stages (stage 0 carries extra_first); cut[k][j] the start
     * of the last of those stages. The last stage adds extra_last at the end. */
    double *pre = ds_malloc(sizeof(double) * (size_t)(L + 1));
    pre[0] = 0;
    for (int l = 0; l < L; l++) pre[l + 1] = pre[l] + layer_bytes[l];
    double *best = ds_malloc(sizeof(double) * (size_t)(P + 1) * (size_t)(L + 1));
    int *cut = ds_malloc(sizeof(int) * (size_t)(P + 1) * (size_t)(L + 1));
#define B(k, j) best[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
#define C(k, j) cut[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
    for (int j = 1; j <= L; j++) B(1, j) = extra_first + pre[j], C(1, j) = 0;
    for (int k = 2; k <= P; k++)
        for (int j = k; j <= L; j++) {
            double b = -1;
            int c = k - 1;
            /* the last of the k stages holds layers [i, j); scanning i from
             * the right keeps, on ties, the split with fewer layers first */
            for (int i = j - 1; i >= k - 1; i--) {
                double stage = pre[j] - pre[i] + (k == P && j == L ? extra_last : 0);
                double m = B(k - 1, i) > stage ? B(k - 1, i) : stage;
                if (b < 0 || m < b) b = m, c = i;
            }
            B(k, j) = b, C(k, j) = c;
        }
    double result;
    if (P == 1) {
        result = extra_first + pre[L] + extra_last;
        bounds[0] = 0, bounds[1] = L;
    } else {
        result = B(P, L);
        bounds[P] = L;
        for (int k = P; k >= 1; k--) bounds[k - 1] = C(k, bounds[k]);
    }
#undef B
#undef C
    free(pre);
    free(best);
    free(cut);
    return result;
}

void ds_pipe_init(ds_pipe *p, MPI_Comm comm, int P, int n_layers, const double *layer_bytes, double extra_first,
                  double extra_last)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(p, 0, sizeof *p);
    p->P = P;
    p->groups = size / P;
    p->group = rank / P;
    p->stage = rank % P;
    p->first = p->stage == 0;
    p->last = p->stage == P - 1;
    p->bounds = ds_malloc(sizeof(int) * (size_t)(P + 1));
    ds_pipe_partition(n_layers, layer_bytes, extra_first, extra_last, P, p->bounds);
    p->l0 = p->bounds[p->stage];
    p->l1 = p->bounds[p->stage + 1];
    MPI_Comm_split(comm, p->group, p->stage, &p->group_comm);
    MPI_Comm_split(comm, p->stage, p->group, &p->dp_comm);
}

void ds_pipe_free(ds_pipe *p)
{
    if (!p->bounds) return;
    MPI_Comm_free(&p->group_comm);
    MPI_Comm_free(&p->dp_comm);
    free(p->bounds);
    memset(p, 0, sizeof *p);
}

enum { TAG_DATA = 1, TAG_FAIL = 2 };

/* One direction of the schedule: receive from `from` (or nothing when
 * from < 0), compute, send to `to` (or nothing when to < 0). Every stage
 * receives and sends exactly one message per micro-batch, a failed stage
 * included (it discards what it receives and sends TAG_FAIL), so no send is
 * left unmatched and no stage waits forever. */
static int run(const ds_pipe *p, int n_mb, int backward, const ds_pipe_stage *s)
{
    const int from = backward ? (p->last ? -1 : p->stage + 1) : (p->first ? -1 : p->stage - 1);
    const int to = backward ? (p->first ? -1 : p->stage - 1) : (p->last ? -1 : p->stage + 1);
    MPI_Request req[DS_PIPE_DEPTH];
    for (int k = 0; k < DS_PIPE_DEPTH; k++) req[k] = MPI_REQUEST_NULL;
    float *rbuf = NULL;
    size_t rcap = 0;
    int failed = 0;
    static const float none = 0;
    for (int i = 0; i < n_mb; i++) {
        const int mb = backward ? n_mb - 1 - i : i;
        const float *in = NULL;
        int64_t n_in = 0;
        if (from >= 0) {
            MPI_Status st;
            int count = 0;
            MPI_Probe(from, MPI_ANY_TAG, p->group_comm, &st);
            MPI_Get_count(&st, MPI_FLOAT, &count);
            if ((size_t)count > rcap) {
                free(rbuf);
                rcap = (size_t)count;
                rbuf = ds_malloc(sizeof(float) * rcap);
            }
            MPI_Recv(rbuf, count, MPI_FLOAT, from, st.MPI_TAG, p->group_comm, MPI_STATUS_IGNORE);
            if (st.MPI_TAG == TAG_FAIL) failed = 1;
            in = rbuf, n_in = count;
        }
        /* the send DS_PIPE_DEPTH micro-batches ago is complete before the
         * callback may reuse its buffer */
        MPI_Request *r = &req[i % DS_PIPE_DEPTH];
        MPI_Wait(r, MPI_STATUS_IGNORE);
        const float *out = NULL;
        int64_t n_out = 0;
        if (!failed) {
            out = backward ? s->backward(s->arg, mb, in, n_in, &n_out) : s->forward(s->arg, mb, in, n_in, &n_out);
            if (n_out < 0 || (to >= 0 && (!out || n_out > INT_MAX))) failed = 1;
        }
        if (to >= 0) {
            if (failed)
                MPI_Isend(&none, 0, MPI_FLOAT, to, TAG_FAIL, p->group_comm, r);
            else
                MPI_Isend(out, (int)n_out, MPI_FLOAT, to, TAG_DATA, p->group_comm, r);
        }
    }
    MPI_Waitall(DS_PIPE_DEPTH, req, MPI_STATUSES_IGNORE);
    free(rbuf);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, p->group_comm);
    return any;
}

int ds_pipe_forward(const ds_pipe *p, int n_mb, const ds_pipe_stage *s) { return run(p, n_mb, 0, s); }

int ds_pipe_backward(const ds_pipe *p, int n_mb, const ds_pipe_stage *s) { return run(p, n_mb, 1, s); }
