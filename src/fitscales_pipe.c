/* fit-scales through a pipeline (src/fitscales_pipe.h). */
#include "config.h"
#include "src/fitscales_pipe.h"
#include <stdlib.h>
#include <string.h>
#include "src/shard.h"

void ds_fitpipe_init(ds_fitpipe *fp, const ds_pipe *p, ds_fitscales *f, const ds_llama *teacher, int batch, int T)
{
    memset(fp, 0, sizeof *fp);
    fp->p = p;
    fp->f = f;
    fp->teacher = teacher;
    fp->batch = batch;
    fp->T = T;
    fp->max_rows = (batch + p->groups - 1) / p->groups; /* ds_shard_range's largest share */
    if (fp->max_rows < 1) fp->max_rows = 1;
    fp->sa = ds_calloc((size_t)fp->max_rows, sizeof *fp->sa);
    for (int r = 0; r < fp->max_rows; r++) fp->sa[r] = ds_llama_act_new(f->student, 1, T);
    fp->ta = ds_llama_act_new_fwd(teacher, 1, T);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) fp->ring[k] = ds_malloc(sizeof(float) * 2 * (size_t)T * teacher->cfg.dim);
    fp->targets = ds_malloc(sizeof(int) * (size_t)T);
}

void ds_fitpipe_free(ds_fitpipe *fp)
{
    if (!fp->sa) return;
    for (int r = 0; r < fp->max_rows; r++) ds_llama_act_free(fp->sa[r]);
    free(fp->sa);
    ds_llama_act_free(fp->ta);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) free(fp->ring[k]);
    free(fp->targets);
    memset(fp, 0, sizeof *fp);
}

/* The last stage, after both forwards of the row: the objective (a step:
 * with its gradient in the student's workspace) or the comparison's sums. */
static void row_losses(ds_fitpipe *fp, ds_llama_act *sa, const int *tok, const float *ref, double *acc)
{
    const int T = fp->T;
    if (fp->train) {
        acc[fp->f->n_scales] = ds_fitscales_objective(fp->f->objective, sa, ref, fp->grad_scale, NULL);
        return;
    }
    memcpy(fp->targets, tok + 1, sizeof(int) * (size_t)(T - 1));
    fp->targets[T - 1] = -1; /* the last position predicts nothing */
    acc[3] = ds_llama_loss_ce(fp->ta, fp->targets, 0, NULL);
    acc[0] = ds_llama_loss_kl(sa, ref, NULL, 0, NULL);
    acc[1] = ds_llama_loss_mse(sa, ref, NULL, 0, NULL);
    acc[2] = ds_llama_loss_ce(sa, fp->targets, 0, NULL);
}

/* Forward of micro-batch mb (row row0 + mb): the teacher and the student on
 * this stage; in = [teacher hidden | student hidden] from the previous one. */
static float *fwd(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out)
{
    ds_fitpipe *fp = arg;
    const int T = fp->T, D = fp->teacher->cfg.dim;
    const int64_t row = fp->row0 + mb, n = (int64_t)T * D;
    if (!fp->p->first && n_in != 2 * n) {
        *n_out = -1; /* a message of another shape: the stages disagree */
        return NULL;
    }
    const int *tok = fp->tokens + row * T;
    ds_llama_act *sa = fp->sa[fp->train ? mb : 0];
    const float *ht = ds_llama_forward_stage(fp->teacher, fp->ta, tok, in, 1, T);
    const float *hs = ds_llama_forward_stage(fp->f->student, sa, tok, in ? in + n : NULL, 1, T);
    if (fp->p->last) {
        row_losses(fp, sa, tok, ht, fp->acc + row * fp->stride);
        *n_out = 0;
        return NULL;
    }
    float *out = fp->ring[mb % DS_PIPE_DEPTH];
    memcpy(out, ht, sizeof(float) * (size_t)n);
    memcpy(out + n, hs, sizeof(float) * (size_t)n);
    *n_out = 2 * n;
    return out;
}

/* Backward of micro-batch mb: dL/dW of the coded tensors held here, folded
 * into the row's scale gradients; dL/dx for the previous stage. */
static float *bwd(void *arg, int mb, const float *dout, int64_t n, int64_t *n_in)
{
    ds_fitpipe *fp = arg;
    const int64_t nx = (int64_t)fp->T * fp->teacher->cfg.dim;
    if (!fp->p->last && n != nx) {
        *n_in = -1;
        return NULL;
    }
    ds_fitscales_backward_begin(fp->f, fp->acc + (fp->row0 + mb) * fp->stride);
    float *dx = ds_llama_backward_stage(fp->f->student, fp->sa[mb], &fp->f->g, dout);
    ds_fitscales_backward_end(fp->f);
    *n_in = dx ? nx : 0;
    return dx;
}

/* Collective: the group's rows [lo, hi) of n through the stages. */
static int pass(ds_fitpipe *fp, int64_t n, int backward)
{
    int64_t lo, hi;
    ds_shard_range(n, fp->p->group, fp->p->groups, &lo, &hi);
    fp->row0 = lo;
    ds_pipe_stage st = {fwd, bwd, fp};
    int bad = ds_pipe_forward(fp->p, (int)(hi - lo), &st);
    if (backward && !bad) bad = ds_pipe_backward(fp->p, (int)(hi - lo), &st);
    return bad;
}

int ds_fitpipe_step(ds_fitpipe *fp, MPI_Comm comm, const int *tokens, float grad_scale, double *objective,
                    double *flag)
{
    ds_fitscales *f = fp->f;
    const int B = fp->batch;
    fp->stride = (int)f->n_scales + 1;
    /* rows x (scales, objective), then the failure count and the flag */
    const size_t len = (size_t)B * (size_t)fp->stride + 2;
    fp->acc = ds_calloc(len, sizeof(double));
    fp->tokens = tokens;
    fp->train = 1;
    fp->grad_scale = grad_scale;
    fp->acc[len - 2] = pass(fp, B, 1);
    fp->acc[len - 1] = *flag;
    MPI_Allreduce(MPI_IN_PLACE, fp->acc, (int)len, MPI_DOUBLE, MPI_SUM, comm);
    ds_fitscales_zero_grad(f);
    double obj = 0;
    for (int r = 0; r < B; r++) {
        const double *a = fp->acc + (size_t)r * fp->stride;
        for (int64_t i = 0; i < f->n_scales; i++) f->grad[i] += a[i];
        obj += a[f->n_scales];
    }
    *objective = obj;
    *flag = fp->acc[len - 1];
    const int bad = fp->acc[len - 2] > 0;
    free(fp->acc);
    fp->acc = NULL;
    return bad;
}

int ds_fitpipe_compare(ds_fitpipe *fp, MPI_Comm comm, const int *windows, int64_t n, ds_fit_compare *out)
{
    fp->stride = 4;
    const size_t len = (size_t)n * 4 + 1;
    fp->acc = ds_calloc(len, sizeof(double));
    fp->tokens = windows;
    fp->train = 0;
    fp->acc[len - 1] = pass(fp, n, 0);
    MPI_Allreduce(MPI_IN_PLACE, fp->acc, (int)len, MPI_DOUBLE, MPI_SUM, comm);
    double s[4] = {0, 0, 0, 0};
    for (int64_t w = 0; w < n; w++)
        for (int k = 0; k < 4; k++) s[k] += fp->acc[w * 4 + k];
    const int bad = fp->acc[len - 1] > 0;
    free(fp->acc);
    fp->acc = NULL;
    const int T = fp->T;
    out->tokens = n * T;
    out->predicted = n * (T - 1);
    const double nt = out->tokens ? (double)out->tokens : 1, np = out->predicted ? (double)out->predicted : 1;
    out->kl = s[0] / nt;
    out->mse = s[1] / nt;
    out->nll = s[2] / np;
    out->nll_teacher = s[3] / np;
    return bad;
}
