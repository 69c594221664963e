/* fit-scales through a pipeline (src/fitscales_pipe.h). */
#include "config.h"
#include "src/fitscales_pipe.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "src/shard.h"

void ds_fitpipe_init(ds_fitpipe *fp, const ds_pipe *p, ds_fitscales *f, const ds_llama *teacher,
                     const ds_fitpipe_ref *ref, int batch, int T)
{
    memset(fp, 0, sizeof *fp);
    fp->p = p;
    fp->f = f;
    fp->teacher = teacher;
    if (!teacher && ref) fp->ref = *ref;
    fp->nh = teacher ? 2 : 1;
    const int D = f->student->cfg.dim;
    fp->batch = batch;
    fp->T = T;
    fp->max_rows = (batch + p->groups - 1) / p->groups; /* ds_shard_range's largest share */
    if (fp->max_rows < 1) fp->max_rows = 1;
    fp->sa = ds_calloc((size_t)fp->max_rows, sizeof *fp->sa);
    for (int r = 0; r < fp->max_rows; r++) fp->sa[r] = ds_llama_act_new(f->student, 1, T);
    if (teacher) fp->ta = ds_llama_act_new_fwd(teacher, 1, T);
    else if (p->last) fp->refbuf = ds_malloc(sizeof(float) * (size_t)T * (size_t)f->student->cfg.vocab_size);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) fp->ring[k] = ds_malloc(sizeof(float) * (size_t)fp->nh * T * D);
    fp->targets = ds_malloc(sizeof(int) * (size_t)T);
}

void ds_fitpipe_free(ds_fitpipe *fp)
{
    if (!fp->sa) return;
    for (int r = 0; r < fp->max_rows; r++) ds_llama_act_free(fp->sa[r]);
    free(fp->sa);
    if (fp->ta) ds_llama_act_free(fp->ta);
    free(fp->refbuf);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) free(fp->ring[k]);
    free(fp->targets);
    memset(fp, 0, sizeof *fp);
}

/* A window's next tokens into targets [T] (the last position predicts
 * nothing): the NLL sums of row_losses and of the teacher's phase. */
static void window_targets(int *targets, const int *tok, int T)
{
    memcpy(targets, tok + 1, sizeof(int) * (size_t)(T - 1));
    targets[T - 1] = -1;
}

/* The last stage, after both forwards of the row: the objective (a step:
 * with its gradient in the student's workspace) or the comparison's sums. */
static void row_losses(ds_fitpipe *fp, ds_llama_act *sa, const int *tok, int64_t row, const float *ref, double *acc)
{
    const int T = fp->T;
    if (fp->train) {
        acc[fp->f->n_scales] = ds_fitscales_objective(fp->f->objective, sa, ref, fp->grad_scale, NULL);
        return;
    }
    window_targets(fp->targets, tok, T);
    /* teacher first: the sum phase 1 computed the same way on the same logits */
    acc[3] = fp->ta ? ds_llama_loss_ce(fp->ta, fp->targets, 0, NULL) : fp->ref.nll[row];
    acc[0] = ds_llama_loss_kl(sa, ref, NULL, 0, NULL);
    acc[1] = ds_llama_loss_mse(sa, ref, NULL, 0, NULL);
    acc[2] = ds_llama_loss_ce(sa, fp->targets, 0, NULL);
}

/* Forward of micro-batch mb (row row0 + mb): the teacher and the student on
 * this stage; in = [teacher hidden | student hidden] from the previous one
 * (teacher first: the student's only, the last stage reads the reference). */
static float *fwd(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out)
{
    ds_fitpipe *fp = arg;
    const int T = fp->T, D = fp->f->student->cfg.dim;
    const int64_t row = fp->row0 + mb, n = (int64_t)T * D;
    if (!fp->p->first && n_in != fp->nh * n) {
        *n_out = -1; /* a message of another shape: the stages disagree */
        return NULL;
    }
    const int *tok = fp->tokens + row * T;
    ds_llama_act *sa = fp->sa[fp->train ? mb : 0];
    const float *ht = NULL;
    if (fp->teacher) ht = ds_llama_forward_stage(fp->teacher, fp->ta, tok, in, 1, T);
    const float *hs = ds_llama_forward_stage(fp->f->student, sa, tok, in ? in + (fp->nh - 1) * n : NULL, 1, T);
    if (fp->p->last) {
        if (!fp->teacher) {
            if (fp->ref.logits(fp->ref.arg, fp->train, row, fp->refbuf)) {
                *n_out = -1;
                return NULL;
            }
            ht = fp->refbuf;
        }
        row_losses(fp, sa, tok, row, ht, fp->acc + row * fp->stride);
        *n_out = 0;
        return NULL;
    }
    float *out = fp->ring[mb % DS_PIPE_DEPTH];
    if (fp->teacher) memcpy(out, ht, sizeof(float) * (size_t)n);
    memcpy(out + (fp->nh - 1) * n, hs, sizeof(float) * (size_t)n);
    *n_out = fp->nh * n;
    return out;
}

/* Backward of micro-batch mb: dL/dW of the coded tensors held here, folded
 * into the row's scale gradients; dL/dx for the previous stage. */
static float *bwd(void *arg, int mb, const float *dout, int64_t n, int64_t *n_in)
{
    ds_fitpipe *fp = arg;
    const int64_t nx = (int64_t)fp->T * fp->f->student->cfg.dim;
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

/* ---- teacher first, phase 1 */
void ds_teacherpipe_init(ds_teacherpipe *tp, const ds_pipe *p, const ds_llama *teacher, int T)
{
    memset(tp, 0, sizeof *tp);
    tp->p = p;
    tp->teacher = teacher;
    tp->T = T;
    tp->ta = ds_llama_act_new_fwd(teacher, 1, T); /* as ds_fitpipe's teacher workspace */
    for (int k = 0; k < DS_PIPE_DEPTH; k++) tp->ring[k] = ds_malloc(sizeof(float) * (size_t)T * teacher->cfg.dim);
    tp->targets = ds_malloc(sizeof(int) * (size_t)T);
}

void ds_teacherpipe_free(ds_teacherpipe *tp)
{
    if (!tp->ta) return;
    ds_llama_act_free(tp->ta);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) free(tp->ring[k]);
    free(tp->targets);
    memset(tp, 0, sizeof *tp);
}

static float *teacher_fwd(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out)
{
    ds_teacherpipe *tp = arg;
    const int T = tp->T;
    const int64_t row = tp->row0 + mb, n = (int64_t)T * tp->teacher->cfg.dim;
    if (!tp->p->first && n_in != n) {
        *n_out = -1;
        return NULL;
    }
    const int *tok = tp->tokens + row * T;
    const float *h = ds_llama_forward_stage(tp->teacher, tp->ta, tok, in, 1, T);
    if (tp->p->last) {
        double nll = 0;
        if (tp->nll) { /* as row_losses' acc[3] */
            window_targets(tp->targets, tok, T);
            nll = ds_llama_loss_ce(tp->ta, tp->targets, 0, NULL);
        }
        *n_out = tp->sink(tp->arg, row, h, nll) ? -1 : 0;
        return NULL;
    }
    float *out = tp->ring[mb % DS_PIPE_DEPTH];
    memcpy(out, h, sizeof(float) * (size_t)n);
    *n_out = n;
    return out;
}

int ds_teacherpipe_run(ds_teacherpipe *tp, MPI_Comm comm, const int *windows, int64_t n, int want_nll,
                       int (*sink)(void *arg, int64_t row, const float *logits, double nll), void *arg)
{
    int64_t lo, hi;
    ds_shard_range(n, tp->p->group, tp->p->groups, &lo, &hi);
    tp->tokens = windows;
    tp->row0 = lo;
    tp->nll = want_nll;
    tp->sink = sink;
    tp->arg = arg;
    ds_pipe_stage st = {teacher_fwd, NULL, tp};
    int bad = ds_pipe_forward(tp->p, (int)(hi - lo), &st);
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
    return bad != 0;
}

/* ---- the logit cache */
static int cache_dir_ok(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return ds_err(DS_EXIT_OUTPUT, "--scratch %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return ds_err(DS_EXIT_OUTPUT, "--scratch %s: not a folder", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return ds_err(DS_EXIT_OUTPUT, "--scratch %s: cannot write in it: %s", dir, strerror(errno));
    return 0;
}

int ds_logit_cache_check_room(const char *dir, double bytes)
{
    int rc = cache_dir_ok(dir);
    if (rc) return rc;
    struct statvfs v;
    if (statvfs(dir, &v) != 0) return ds_err(DS_EXIT_OUTPUT, "--scratch %s: statvfs: %s", dir, strerror(errno));
    const double room = (double)v.f_bavail * (double)v.f_frsize;
    if (room < bytes)
        return ds_err(DS_EXIT_INPUT,
                      "--scratch %s: the teacher's logits need %.0f bytes (%.2f GiB), the folder has %.0f free "
                      "(use --scratch on a larger file system, or lower --steps, --batch, --seq-len or --samples)",
                      dir, bytes, bytes / 1073741824.0, room);
    return 0;
}

int ds_logit_cache_open(ds_logit_cache *lc, const char *dir, int64_t slots, int64_t floats)
{
    memset(lc, 0, sizeof *lc);
    lc->fd = -1;
    int rc = cache_dir_ok(dir);
    if (rc) return rc;
    char path[4200];
    snprintf(path, sizeof path, "%s/deltasoup-teacher-logits.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return ds_err(DS_EXIT_OUTPUT, "--scratch %s: cannot create a file there: %s", dir, strerror(errno));
    unlink(path); /* gone from the folder: freed when closed or killed */
    lc->fd = fd;
    lc->slots = slots;
    lc->floats = floats;
    return 0;
}

/* The byte offset of a slot, after checking it. */
static int slot_at(const ds_logit_cache *lc, int64_t slot, size_t *len, uint64_t *off)
{
    if (slot < 0 || slot >= lc->slots) return ds_err(DS_EXIT_FAIL, "teacher logit cache: slot %lld out of range", (long long)slot);
    *len = sizeof(float) * (size_t)lc->floats;
    *off = (uint64_t)slot * *len;
    return 0;
}

int ds_logit_cache_put(ds_logit_cache *lc, int64_t slot, const float *buf)
{
    size_t len = 0;
    uint64_t off = 0;
    int rc = slot_at(lc, slot, &len, &off);
    if (!rc && ds_pwrite_all(lc->fd, buf, len, off) != 0)
        rc = ds_err(DS_EXIT_OUTPUT, "teacher logit cache: write failed: %s", errno ? strerror(errno) : "no room");
    return rc;
}

int ds_logit_cache_get(ds_logit_cache *lc, int64_t slot, float *buf)
{
    size_t len = 0;
    uint64_t off = 0;
    int rc = slot_at(lc, slot, &len, &off);
    if (!rc && ds_pread_all(lc->fd, buf, len, off) != 0)
        rc = ds_err(DS_EXIT_INPUT, "teacher logit cache: read failed: %s", errno ? strerror(errno) : "short file");
    return rc;
}

void ds_logit_cache_close(ds_logit_cache *lc)
{
    if (lc->fd >= 0) close(lc->fd);
    lc->fd = -1;
}
