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
 * separately when P > 1: its scales then agree to rounding.
 *
 * Teacher first (docs/fit-scales.md "Teacher first"): a rank holds one model
 * at a time. ds_teacherpipe runs the teacher alone through the same stages
 * over every window first (its last stage hands each window's logits to the
 * caller, which caches them, ds_logit_cache); then a ds_fitpipe without a
 * teacher sends the student's hidden state only and its last stage reads a
 * row's logits back (ds_fitpipe_ref). The logits are the same floats, so the
 * results are the same bits as with both models held. */
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

/* Teacher first (docs/fit-scales.md "Teacher first"): where the last stage
 * gets a row's reference logits when no teacher is held. logits(arg, train,
 * row, buf) fills buf [T, vocab] with the teacher's logits of row `row` of
 * the current step (train 1) or of the comparison's windows (train 0);
 * non-zero: failure (the pass fails). nll[row]: the teacher's NLL sum of
 * comparison window `row` (ds_llama_loss_ce, as the combined mode computes
 * it), on the last stage. */
typedef struct {
    int (*logits)(void *arg, int train, int64_t row, float *buf);
    void *arg;
    const double *nll;
} ds_fitpipe_ref;

typedef struct {
    const ds_pipe *p;
    ds_fitscales *f;          /* its student is this rank's stage */
    const ds_llama *teacher;  /* this rank's stage of the teacher (same bounds), or NULL: ref */
    ds_fitpipe_ref ref;       /* without a teacher: the cached reference */
    int batch, T, max_rows;   /* rows per step, window, most rows of a group */
    ds_llama_act **sa;        /* max_rows student workspaces [1, T] (activations until the backward) */
    ds_llama_act *ta;         /* the teacher's forward-only workspace [1, T] (NULL without a teacher) */
    float *refbuf;            /* without a teacher, last stage: a row's reference logits [T, vocab] */
    int nh;                   /* hidden states per message: 2 (teacher, student) or 1 (student) */
    float *ring[DS_PIPE_DEPTH]; /* outgoing hidden states [nh, T, dim] */
    int *targets;             /* [T]: a window's next tokens */
    /* during a pass */
    const int *tokens;        /* windows [.., T] */
    int64_t row0;             /* the group's first row */
    int train;                /* 1: a step (objective with gradient), 0: comparison */
    float grad_scale;
    double *acc;              /* per row: [n_scales + 1] (step) or [4] (comparison) */
    int stride;
} ds_fitpipe;

/* Workspaces for steps of `batch` rows of T tokens on this stage. teacher
 * NULL: teacher first, the last stage's reference logits come from ref
 * (copied; NULL with a teacher) and the stages send the student's hidden
 * state [T, dim] only. */
void ds_fitpipe_init(ds_fitpipe *fp, const ds_pipe *p, ds_fitscales *f, const ds_llama *teacher,
                     const ds_fitpipe_ref *ref, int batch, int T);
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

/* ---- teacher first, phase 1: the teacher alone through the same stages,
 * forward only, each window one micro-batch, sending its hidden state
 * [T, dim]; the last stage hands each window's logits to a sink. */
typedef struct {
    const ds_pipe *p;
    const ds_llama *teacher;  /* this rank's stage */
    int T;
    ds_llama_act *ta;         /* forward-only workspace [1, T] */
    float *ring[DS_PIPE_DEPTH]; /* outgoing hidden states [T, dim] */
    int *targets;
    /* during a pass */
    const int *tokens;
    int64_t row0;
    int nll;                  /* 1: also the window's NLL sum (ds_llama_loss_ce) */
    int (*sink)(void *arg, int64_t row, const float *logits, double nll);
    void *arg;
} ds_teacherpipe;

void ds_teacherpipe_init(ds_teacherpipe *tp, const ds_pipe *p, const ds_llama *teacher, int T);
void ds_teacherpipe_free(ds_teacherpipe *tp);
/* Collective over comm: the teacher on n windows [n, T] (every rank passes
 * all of them), shared out across the groups as ds_fitpipe_step and
 * ds_fitpipe_compare share them (ds_shard_range); on the last stage,
 * sink(arg, row, logits [T, vocab], nll) for each of the group's rows in
 * order (nll: the window's NLL sum, tokens 2..T, when want_nll; else 0).
 * A non-zero sink fails the pass. Returns 0, or 1 when a stage failed
 * (every rank returns 1). */
int ds_teacherpipe_run(ds_teacherpipe *tp, MPI_Comm comm, const int *windows, int64_t n, int want_nll,
                       int (*sink)(void *arg, int64_t row, const float *logits, double nll), void *arg);

/* ---- the teacher's logits on disk: one slot of `floats` floats per
 * window, a file made with mkstemp in dir and unlinked at once (nothing is
 * left behind, even on a kill). */
typedef struct {
    int fd;
    int64_t floats, slots;
} ds_logit_cache;
/* 0, or ds_err set: DS_EXIT_OUTPUT when dir is missing, not a folder or not
 * writable. */
int ds_logit_cache_open(ds_logit_cache *lc, const char *dir, int64_t slots, int64_t floats);
/* Whether dir's file system has room (statvfs: blocks free to this user)
 * for bytes: 0, else ds_err (DS_EXIT_INPUT naming the folder and the bytes,
 * DS_EXIT_OUTPUT when dir is missing or not a writable folder). */
int ds_logit_cache_check_room(const char *dir, double bytes);
int ds_logit_cache_put(ds_logit_cache *lc, int64_t slot, const float *buf);
int ds_logit_cache_get(ds_logit_cache *lc, int64_t slot, float *buf);
void ds_logit_cache_close(ds_logit_cache *lc);
#endif
