/* BitDelta scale distillation (docs/fit-scales.md): keep the base weights
 * and the sign bits fixed and fit the scales g so that the student
 * W = W_b + g(2b - 1) (plus its dense deltas) matches a teacher's logits:
 * KL(p_teacher || p_student) per token, or the logit MSE. Only the scales
 * are trained, with Adam (beta 0.9/0.999, eps 1e-8, bias-corrected).
 *
 * Scale gradient of a coded tensor t: dL/dg_t = sum_i (dL/dW_t)_i (2b_i - 1),
 * summed over the tensor, or over each row / column for per-row / per-column
 * scales. dL/dW comes from the engine's backward (src/model.h) for the coded
 * tensors only.
 *
 * A data-parallel step: every rank zeroes the scale gradients
 * (ds_fitscales_zero_grad), adds those of its rows of the batch
 * (ds_fitscales_accumulate), the caller sums f->grad across ranks, and every
 * rank takes the same Adam step (ds_fitscales_adam_step), so all ranks keep
 * identical scales. Math only: no file I/O, no MPI (the pipelined step is
 * src/fitscales_pipe.h). */
#ifndef DS_FITSCALES_H
#define DS_FITSCALES_H
#include <stdint.h>
#include "kernels/cpu/bitpack.h"
#include "src/model.h"

typedef enum { DS_FIT_KL = 0, DS_FIT_MSE = 1 } ds_fit_objective;

/* The objectives' names in enum order ("kl", "mse", NULL: a --objective
 * choice list). */
extern const char *const ds_fit_objective_names[];
/* "kl" / "mse"; 0 or -1 for an unknown name. */
int ds_fit_objective_parse(const char *s, ds_fit_objective *out);
const char *ds_fit_objective_name(ds_fit_objective o);

/* A coded tensor handed to ds_fitscales_init: the engine index of a 2-D
 * tensor, its scale kind, packed signs (rows x ceil(cols/64) words,
 * kernels/cpu/bitpack.h) and initial scales (1, rows or cols values). */
typedef struct {
    int index;
    ds_scale_kind kind;
    const uint64_t *bits;
    const float *scales;
} ds_fit_coded;

typedef struct {
    int index;
    ds_scale_kind kind;
    int64_t rows, cols, n_scales;
    int64_t off;    /* first scale in ds_fitscales.scales */
    uint64_t *bits; /* own copy (NULL: a tensor the student, a pipeline stage, does not hold) */
    float *base;    /* W_b: the student's tensor when ds_fitscales_init ran (NULL: not held) */
} ds_fit_tensor;

typedef struct {
    ds_llama *student; /* borrowed; its coded tensors are rewritten */
    ds_fit_objective objective;
    int n;
    ds_fit_tensor *t;
    int64_t n_scales;
    float *scales;   /* all scales, tensor after tensor */
    double *grad;    /* dL/dg, same layout */
    double *m, *v;   /* Adam moments */
    int64_t step;    /* Adam steps taken */
    double lr, beta1, beta2, eps;
    ds_llama_grads g; /* dL/dW of the coded tensors */
} ds_fitscales;

/* Take the student's current coded tensors as W_b (the caller has loaded
 * the base and added the dense deltas), copy bits and scales, and rebuild
 * W = W_b + g(2b - 1). Every c[k].index must be a distinct 2-D tensor.
 * The student may be a pipeline stage (ds_llama_init_stage): the tensors it
 * does not hold keep their scales (every stage has every scale, in the same
 * layout) but no bits or base (c[k].bits may be NULL there), and are left
 * out of the rebuild and of the gradients. */
void ds_fitscales_init(ds_fitscales *f, ds_llama *student, int n, const ds_fit_coded *c,
                       ds_fit_objective objective, double lr);
void ds_fitscales_free(ds_fitscales *f);

/* Rewrite the student's coded tensors from f->scales (ds_bitpack_apply). */
void ds_fitscales_rebuild(ds_fitscales *f);

/* The objective on the last forward of a (student logits vs ref_logits):
 * the SUM over positions (per-token KL, or per-token mean squared logit
 * error), dL/dlogits * grad_scale written for a backward pass
 * (grad_scale 0: value only). */
double ds_fitscales_objective(ds_fit_objective o, ds_llama_act *a, const float *ref_logits, float grad_scale,
                              int64_t *count);

/* gs[k] += sum over the elements of scale k of dW_i (2b_i - 1), for a
 * rows x cols tensor with packed signs bits and scales of the given kind
 * (double accumulation). */
void ds_fitscales_reduce(const float *dW, const uint64_t *bits, int64_t rows, int64_t cols, ds_scale_kind kind,
                         double *gs);

void ds_fitscales_zero_grad(ds_fitscales *f);
/* Forward the student on tokens [B, T], the objective against ref_logits
 * [B*T, vocab] (scaled by grad_scale, e.g. 1 / (global batch tokens)),
 * backward, and ADD the scale gradients into f->grad. B = 0 adds nothing.
 * Returns the objective's sum over the B*T positions (unscaled). */
double ds_fitscales_accumulate(ds_fitscales *f, ds_llama_act *a, const int *tokens, int B, int T,
                               const float *ref_logits, float grad_scale);
/* The pieces of ds_fitscales_accumulate, for a backward the caller runs
 * (a pipeline stage, src/fitscales_pipe.h): zero dL/dW of the coded tensors
 * held (f->g), and add their scale gradients from f->g into gs (laid out
 * as f->grad: scales of tensors not held are left alone). */
void ds_fitscales_zero_dw(ds_fitscales *f);
void ds_fitscales_fold(const ds_fitscales *f, double *gs);
/* One Adam step on every scale from f->grad, then rebuild the student. */
void ds_fitscales_adam_step(ds_fitscales *f);
#endif
