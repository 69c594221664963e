/* BitDelta scale distillation (docs/fit-scales.md): keep the base weights
 * and the sign bits fixed and fit the scales g so that the student
 * W = W_b + g(2b - 1) (plus its dense deltas) matches a teacher's logits:
 * KL(p_teacher || p_student) per token, or the logit MSE. Only the scales
 * are trained, with Adam (beta 0.9/0.999, eps 1e-8, bias-corrected).
 *
 * Scale gradient of a coded tensor t: dL/dg_t = sum_i (dL/dW_t)_i (2b_i - 1),
 * summed over the tensor, or over each row / column for per-row / per-column
 * scales. The engine's backward (src/model.h) hands the factors of dL/dW of
 * a coded linear y = x W^T to a hook, which reduces them at once without
 * forming dW: with S = 2B - 1, dL/dg = sum_{n,o} dy[n,o] (x S^T)[n,o] (per
 * tensor; per row: the sum over n for each o), or sum_{n,i} x[n,i]
 * (dy S)[n,i] per column i. So no f32 gradient buffer of the model is held
 * (only a coded embedding, a gather, folds its dW: ds_fitscales_reduce).
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
#include "src/gemm_w.h"
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
    void *base;     /* W_b: the student's tensor when ds_fitscales_init ran (NULL: not held, or coded), */
    ds_kdtype base_dt; /* in bf16 when every value is one (a bf16 checkpoint's), else f32 */
    int coded;      /* 1: the student holds W_b as stored (f16/bf16) and its products build W
                     * from the bits (ds_llama_set_code with `code`): no f32 W, no copy, no rebuild */
    ds_wcode code;
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
    ds_llama_grads g; /* the backward's hook for the coded tensors (dW only for a coded embedding) */
    int *k_of;        /* engine index -> coded tensor k */
    double *gs;       /* during a backward: where its scale gradients go */
    float *panel, *z; /* the hook's scratch */
    size_t panel_cap, z_cap;
} ds_fitscales;

/* Take the student's current coded tensors as W_b (the caller has loaded
 * the base and added the dense deltas), copy bits and scales, and rebuild
 * W = W_b + g(2b - 1). Every c[k].index must be a distinct 2-D tensor.
 * A linear (not the embeddings) that the student holds in f16 or bf16 stays
 * as it is: the student's products with it build W = W_b + g(2b - 1) panel
 * by panel from the bits and the current scales (ds_llama_set_code; the
 * same f32 values as a rebuilt f32 W, multiplied in panels, so equal to
 * the f32 student's to the rounding of the sums: docs/fit-scales.md). An
 * f32 student tensor is rebuilt in f32 from a copy of its base (in bf16
 * when every value is one). ds_fitscales_free makes the student's tensors
 * plain again; free f before the student.
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
/* Around a backward the caller runs with f->g (ds_fitscales_accumulate, a
 * pipeline stage: src/fitscales_pipe.h): the scale gradients of the coded
 * tensors the student holds are ADDED into gs (laid out as f->grad; the
 * scales of tensors not held are left alone). A coded linear's come from
 * the backward's hook (dy and x of the product, reduced at once: no dW of
 * the tensor is formed, docs/fit-scales.md); a coded embedding's from its
 * dW, folded by _end. */
void ds_fitscales_backward_begin(ds_fitscales *f, double *gs);
void ds_fitscales_backward_end(ds_fitscales *f);
/* One Adam step on every scale from f->grad, then rebuild the student. */
void ds_fitscales_adam_step(ds_fitscales *f);
#endif
