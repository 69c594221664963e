/* fit-scales through a pipeline (docs/fit-scales.md "Pipelined"): the
 * student and the teacher are split at the same layer bounds (src/pipeline.h,
 * ds_llama_init_stage), each rank holds one stage of both. The groups share
 * out the rows of a batch (ds_shard_range over the groups); each row (one
 * window of T tokens) is one micro-batch. A step:
 *   forward (ds_pipe_forward): each stage runs the teacher (forward only) and
 *     the student on the micro-batch and sends both hidden states [2, T, dim]
 *     to the next stage; the last stage has the teacher's logits, computes
 *     the student's and the objective with its gradient;
 *   backward (ds_pipe_backward, reverse order): each stage runs
 *     ds_llama_backward_stage from the next stage's dL/dx and folds dL/dW of
 *     the coded tensors it holds into that row's scale gradients (in double);
 *   one all-reduce (MPI_SUM over every rank) of a [rows, n_scales + 1] array
 *     (row r's scale gradients and objective, zero where another rank owns
 *     them), then the rows are added in row order.
 * Every row's arithmetic is the same whatever the split (a micro-batch of one
 * window has the same shapes everywhere; a chain of stages does the whole
 * model's operations in order), and every entry of the array has one
 * non-zero contribution, so the gradient, the objective and the held-out
 * comparison are equal bit for bit at any P and number of groups (for the
 * same OpenBLAS threads per rank). The one exception: a 1-bit coded tied
 * embedding (compress --bits-for model.embed_tokens.weight on a tied model),
 * whose two gradient parts (first stage: embedding, last: head) are folded
 * separately when P > 1: its scales then agree to rounding. */
#ifndef DS_FITSCALES_PIPE_H
#define DS_FITSCALES_PIPE_H
#include <mpi.h>
#include "src/fitscales.h"
#include "src/pipeline.h"

/* KL, logit MSE and both NLLs of a student against its teacher on token
 * windows (per token; NLL per predicted token, tokens 2..T of a window). */
typedef struct {
    double kl, mse, nll, nll_teacher;
    int64_t tokens, predicted;
} ds_fit_compare;

typedef struct {
    const ds_pipe *p;
    ds_fitscales *f;          /* its student is this rank's stage */
    const ds_llama *teacher;  /* this rank's stage of the teacher (same bounds) */
    int batch, T, max_rows;   /* rows per step, window, most rows of a group */
    ds_llama_act **sa;        /* max_rows student workspaces [1, T] (activations until the backward) */
    ds_llama_act *ta;         /* the teacher's forward-only workspace [1, T] */
    float *ring[DS_PIPE_DEPTH]; /* outgoing hidden states [2, T, dim] */
    int *targets;             /* [T]: a window's next tokens */
    /* during a pass */
    const int *tokens;        /* windows [.., T] */
    int64_t row0;             /* the group's first row */
    int train;                /* 1: a step (objective with gradient), 0: comparison */
    float grad_scale;
    double *acc;              /* per row: [n_scales + 1] (step) or [4] (comparison) */
    int stride;
} ds_fitpipe;

/* Workspaces for steps of `batch` rows of T tokens on this stage. */
void ds_fitpipe_init(ds_fitpipe *fp, const ds_pipe *p, ds_fitscales *f, const ds_llama *teacher, int batch, int T);
void ds_fitpipe_free(ds_fitpipe *fp);

/* Collective over comm (every rank of the pipeline's groups): one step's
 * scale gradients into f->grad (all scales, on every rank; grad_scale
 * applied), from the batch's windows tokens [batch, T] (every rank passes
 * all of them; a group uses its share). *objective: the sum of the
 * objective over the batch's positions (unscaled). flag: this rank's value,
 * returned summed over the ranks (e.g. "a signal came"). Returns 0, or 1
 * when a stage failed (every rank returns 1). */
int ds_fitpipe_step(ds_fitpipe *fp, MPI_Comm comm, const int *tokens, float grad_scale, double *objective,
                    double *flag);

/* Collective over comm: the student against the teacher on n windows
 * [n, T], shared out across the groups, each window one micro-batch; the
 * per-window sums are all-reduced and added in window order. */
int ds_fitpipe_compare(ds_fitpipe *fp, MPI_Comm comm, const int *windows, int64_t n, ds_fit_compare *out);
#endif
