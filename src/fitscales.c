/* BitDelta scale distillation: scale gradients from the engine's dL/dW and
 * Adam on the scales (src/fitscales.h). */
#include "config.h"
#include "src/fitscales.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const ds_fit_objective_names[] = {"kl", "mse", NULL};

int ds_fit_objective_parse(const char *s, ds_fit_objective *out)
{
    for (int i = 0; ds_fit_objective_names[i]; i++)
        if (strcmp(s, ds_fit_objective_names[i]) == 0) {
            *out = (ds_fit_objective)i;
            return 0;
        }
    return -1;
}

const char *ds_fit_objective_name(ds_fit_objective o) { return ds_fit_objective_names[o == DS_FIT_MSE]; }

void ds_fitscales_init(ds_fitscales *f, ds_llama *student, int n, const ds_fit_coded *c,
                       ds_fit_objective objective, double lr)
{
    memset(f, 0, sizeof *f);
    f->student = student;
    f->objective = objective;
    f->n = n;
    f->t = ds_calloc((size_t)(n ? n : 1), sizeof *f->t);
    f->lr = lr;
    f->beta1 = 0.9;
    f->beta2 = 0.999;
    f->eps = 1e-8;
    unsigned char *want = ds_calloc((size_t)student->n_tensors, 1);
    for (int k = 0; k < n; k++) {
        ds_fit_tensor *t = &f->t[k];
        const ds_tinfo *ti = &student->tinfo[c[k].index];
        t->index = c[k].index;
        t->kind = c[k].kind;
        t->rows = ti->shape[0];
        t->cols = ti->shape[1];
        t->n_scales = t->kind == DS_SCALE_TENSOR ? 1 : t->kind == DS_SCALE_ROW ? t->rows : t->cols;
        t->off = f->n_scales;
        f->n_scales += t->n_scales;
        if (!ds_llama_holds(student, t->index)) continue; /* another pipeline stage's: its scales only */
        size_t words = (size_t)t->rows * ds_bitpack_words((size_t)t->cols), numel = (size_t)(t->rows * t->cols);
        t->bits = ds_malloc(words * sizeof(uint64_t) + 1);
        memcpy(t->bits, c[k].bits, words * sizeof(uint64_t));
        t->base = ds_malloc(numel * sizeof(float) + 1);
        memcpy(t->base, student->w[t->index], numel * sizeof(float));
        want[t->index] = 1;
    }
    size_t ns = (size_t)(f->n_scales ? f->n_scales : 1);
    f->scales = ds_malloc(ns * sizeof(float));
    f->grad = ds_calloc(ns, sizeof(double));
    f->m = ds_calloc(ns, sizeof(double));
    f->v = ds_calloc(ns, sizeof(double));
    for (int k = 0; k < n; k++)
        memcpy(f->scales + f->t[k].off, c[k].scales, (size_t)f->t[k].n_scales * sizeof(float));
    ds_llama_grads_init(&f->g, student, want);
    free(want);
    ds_fitscales_rebuild(f);
}

void ds_fitscales_free(ds_fitscales *f)
{
    for (int k = 0; k < f->n; k++) {
        free(f->t[k].bits);
        free(f->t[k].base);
    }
    free(f->t);
    free(f->scales);
    free(f->grad);
    free(f->m);
    free(f->v);
    ds_llama_grads_free(&f->g);
    memset(f, 0, sizeof *f);
}

void ds_fitscales_rebuild(ds_fitscales *f)
{
    for (int k = 0; k < f->n; k++) {
        const ds_fit_tensor *t = &f->t[k];
        if (!t->base) continue; /* not held here */
        ds_bitpack_apply(DS_KDT_F32, f->student->w[t->index], DS_KDT_F32, t->base, t->bits, (size_t)t->rows,
                         (size_t)t->cols, t->kind, f->scales + t->off);
    }
}

double ds_fitscales_objective(ds_fit_objective o, ds_llama_act *a, const float *ref_logits, float grad_scale,
                              int64_t *count)
{
    return o == DS_FIT_MSE ? ds_llama_loss_mse(a, ref_logits, NULL, grad_scale, count)
                           : ds_llama_loss_kl(a, ref_logits, NULL, grad_scale, count);
}

void ds_fitscales_reduce(const float *dW, const uint64_t *bits, int64_t rows, int64_t cols, ds_scale_kind kind,
                         double *gs)
{
    const int64_t wpr = (int64_t)ds_bitpack_words((size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dW + r * cols;
        const uint64_t *b = bits + r * wpr;
        if (kind == DS_SCALE_COL) {
            for (int64_t j = 0; j < cols; j++) {
                const double x = d[j];
                gs[j] += (b[j >> 6] >> (j & 63)) & 1 ? x : -x;
            }
            continue;
        }
        /* sum over the row = 2 * (sum where b = 1) - (sum of all) */
        double pos = 0, all = 0;
        for (int64_t j = 0; j < cols; j++) {
            const double x = d[j];
            all += x;
            pos += (double)((b[j >> 6] >> (j & 63)) & 1) * x;
        }
        gs[kind == DS_SCALE_ROW ? r : 0] += 2 * pos - all;
    }
}

void ds_fitscales_zero_grad(ds_fitscales *f) { memset(f->grad, 0, (size_t)f->n_scales * sizeof(double)); }

double ds_fitscales_accumulate(ds_fitscales *f, ds_llama_act *a, const int *tokens, int B, int T,
                               const float *ref_logits, float grad_scale)
{
    if (B <= 0) return 0;
    ds_llama_forward(f->student, a, tokens, B, T);
    double loss = ds_fitscales_objective(f->objective, a, ref_logits, grad_scale, NULL);
    ds_fitscales_zero_dw(f);
    ds_llama_backward(f->student, a, &f->g);
    ds_fitscales_fold(f, f->grad);
    return loss;
}

void ds_fitscales_zero_dw(ds_fitscales *f)
{
    /* Only the coded tensors' dL/dW is wanted; zero just those. */
    for (int k = 0; k < f->n; k++)
        if (f->t[k].base) memset(f->g.g[f->t[k].index], 0, (size_t)(f->t[k].rows * f->t[k].cols) * sizeof(float));
}

void ds_fitscales_fold(const ds_fitscales *f, double *gs)
{
    for (int k = 0; k < f->n; k++) {
        const ds_fit_tensor *t = &f->t[k];
        if (t->base) ds_fitscales_reduce(f->g.g[t->index], t->bits, t->rows, t->cols, t->kind, gs + t->off);
    }
}

void ds_fitscales_adam_step(ds_fitscales *f)
{
    f->step++;
    const double c1 = 1 - pow(f->beta1, (double)f->step), c2 = 1 - pow(f->beta2, (double)f->step);
    for (int64_t i = 0; i < f->n_scales; i++) {
        const double g = f->grad[i];
        f->m[i] = f->beta1 * f->m[i] + (1 - f->beta1) * g;
        f->v[i] = f->beta2 * f->v[i] + (1 - f->beta2) * g * g;
        f->scales[i] = (float)(f->scales[i] - f->lr * (f->m[i] / c1) / (sqrt(f->v[i] / c2) + f->eps));
    }
    ds_fitscales_rebuild(f);
}
