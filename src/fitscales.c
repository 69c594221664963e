/* BitDelta scale distillation: scale gradients from the engine's dL/dW and
 * Adam on the scales (src/fitscales.h). */
#include "config.h"
#include "src/fitscales.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

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

/* Rows of the ±1 sign matrix expanded at a time (a panel of at most
 * PANEL_FLOATS floats). */
#define PANEL_FLOATS ((int64_t)1 << 18)

/* The f32 scratch of at least n floats (grown as needed). */
static float *scratch(float **p, size_t *cap, size_t n)
{
    if (n > *cap) {
        free(*p);
        *p = ds_malloc(n * sizeof(float));
        *cap = n;
    }
    return *p;
}

/* The 8 signs (+1 for a set bit, -1 else, lowest bit first) of every byte. */
static float sign_lut[256][8];

static void sign_lut_init(void)
{
    for (int v = 0; v < 256; v++)
        for (int k = 0; k < 8; k++) sign_lut[v][k] = (v >> k) & 1 ? 1.0f : -1.0f;
}

/* Rows [o0, o0 + r) of S = 2B - 1 of t as f32 into panel [r, cols], a byte
 * of bits (8 signs) at a time. */
static void sign_panel(const ds_fit_tensor *t, int64_t o0, int64_t r, float *panel)
{
    const int64_t wpr = (int64_t)ds_bitpack_words((size_t)t->cols), cols = t->cols;
    for (int64_t o = 0; o < r; o++) {
        const uint64_t *b = t->bits + (o0 + o) * wpr;
        float *p = panel + o * cols;
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) memcpy(p + j, sign_lut[(b[j >> 6] >> (j & 63)) & 255], 8 * sizeof(float));
        for (; j < cols; j++) p[j] = (b[j >> 6] >> (j & 63)) & 1 ? 1.0f : -1.0f;
    }
}

/* The backward's hook (src/model.h) for a coded tensor: its scale
 * gradients from dy [N, out] and x [N, in] without dW. dL/dg = sum over the
 * scale's elements of (dy^T x)_oi S_oi:
 *   per tensor / row: z = x S^T [N, out], dL/dg_o = sum_n dy[n,o] z[n,o]
 *     (summed over o per tensor);
 *   per column: u = dy S [N, in], dL/dg_i = sum_n x[n,i] u[n,i].
 * S is expanded from the bits panel by panel; sums in double. */
static void scale_hook(void *arg, int i, const float *dy, const float *x, int N, int in, int out)
{
    ds_fitscales *f = arg;
    const ds_fit_tensor *t = &f->t[f->k_of[i]];
    double *gs = f->gs + t->off;
    const int64_t R = PANEL_FLOATS / in > 0 ? PANEL_FLOATS / in : 1;
    float *panel = scratch(&f->panel, &f->panel_cap, (size_t)(R < out ? R : out) * (size_t)in);
    if (t->kind == DS_SCALE_COL) {
        float *u = scratch(&f->z, &f->z_cap, (size_t)N * (size_t)in);
        for (int64_t o0 = 0; o0 < out; o0 += R) {
            const int64_t r = out - o0 < R ? out - o0 : R;
            sign_panel(t, o0, r, panel);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, (int)r, 1.0f, dy + o0, out, panel, in,
                        o0 ? 1.0f : 0.0f, u, in);
        }
        for (int j = 0; j < in; j++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)x[(int64_t)n * in + j] * u[(int64_t)n * in + j];
            gs[j] += s;
        }
        return;
    }
    float *z = scratch(&f->z, &f->z_cap, (size_t)N * (size_t)(R < out ? R : out));
    for (int64_t o0 = 0; o0 < out; o0 += R) {
        const int64_t r = out - o0 < R ? out - o0 : R;
        sign_panel(t, o0, r, panel);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)r, in, 1.0f, x, in, panel, in, 0.0f, z, (int)r);
        for (int64_t o = 0; o < r; o++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dy[(int64_t)n * out + o0 + o] * z[(int64_t)n * r + o];
            gs[t->kind == DS_SCALE_ROW ? o0 + o : 0] += s;
        }
    }
}

/* t->base = w (numel floats): in bf16 when every value is one (the base of
 * a bf16 checkpoint, widened to f32 on loading: its low 16 bits are zero),
 * so half the memory and the same rebuild; else in f32. */
static void base_copy(ds_fit_tensor *t, const float *w, size_t numel)
{
    int bf16 = 1;
    for (size_t i = 0; i < numel && bf16; i++) {
        uint32_t u;
        memcpy(&u, &w[i], sizeof u);
        bf16 = (u & 0xffffu) == 0;
    }
    t->base_dt = bf16 ? DS_KDT_BF16 : DS_KDT_F32;
    t->base = ds_malloc(numel * (bf16 ? 2 : 4) + 1);
    if (!bf16) {
        memcpy(t->base, w, numel * sizeof(float));
        return;
    }
    uint16_t *b = t->base;
    for (size_t i = 0; i < numel; i++) {
        uint32_t u;
        memcpy(&u, &w[i], sizeof u);
        b[i] = (uint16_t)(u >> 16);
    }
}

void ds_fitscales_init(ds_fitscales *f, ds_llama *student, int n, const ds_fit_coded *c,
                       ds_fit_objective objective, double lr)
{
    memset(f, 0, sizeof *f);
    if (sign_lut[0][0] == 0) sign_lut_init(); /* (the same values if two threads race) */
    f->student = student;
    f->objective = objective;
    f->n = n;
    f->t = ds_calloc((size_t)(n ? n : 1), sizeof *f->t);
    f->lr = lr;
    f->beta1 = 0.9;
    f->beta2 = 0.999;
    f->eps = 1e-8;
    unsigned char *want = ds_calloc((size_t)student->n_tensors, 1), *hooked = ds_calloc((size_t)student->n_tensors, 1);
    f->k_of = ds_malloc(sizeof(int) * (size_t)student->n_tensors);
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
        /* a linear held in f16/bf16: W_b in place, W built in the products */
        t->coded = t->index > 0 && student->tinfo[t->index].dtype != DS_DTYPE_F32;
        if (!t->coded) base_copy(t, student->w[t->index], numel);
        f->k_of[t->index] = k;
        /* a linear's scale gradient comes from the backward's hook, without
         * dW; the embeddings' (a gather) from a dW buffer */
        if (t->index == 0) want[0] = 1;
        else hooked[t->index] = 1;
    }
    size_t ns = (size_t)(f->n_scales ? f->n_scales : 1);
    f->scales = ds_malloc(ns * sizeof(float));
    f->grad = ds_calloc(ns, sizeof(double));
    f->m = ds_calloc(ns, sizeof(double));
    f->v = ds_calloc(ns, sizeof(double));
    for (int k = 0; k < n; k++) {
        ds_fit_tensor *t = &f->t[k];
        memcpy(f->scales + t->off, c[k].scales, (size_t)t->n_scales * sizeof(float));
        if (!t->coded) continue;
        t->code = (ds_wcode){t->bits, t->kind, f->scales + t->off};
        ds_llama_set_code(student, t->index, &t->code);
    }
    ds_llama_grads_init_hook(&f->g, student, want, hooked, scale_hook, f);
    free(want);
    free(hooked);
    ds_fitscales_rebuild(f);
}

void ds_fitscales_free(ds_fitscales *f)
{
    for (int k = 0; k < f->n; k++) {
        if (f->t[k].coded && f->student->code) f->student->code[f->t[k].index] = NULL;
        free(f->t[k].bits);
        free(f->t[k].base);
    }
    free(f->t);
    free(f->k_of);
    free(f->panel);
    free(f->z);
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
        ds_bitpack_apply(DS_KDT_F32, f->student->w[t->index], t->base_dt, t->base, t->bits, (size_t)t->rows,
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
    ds_fitscales_backward_begin(f, f->grad);
    ds_llama_backward(f->student, a, &f->g);
    ds_fitscales_backward_end(f);
    return loss;
}

void ds_fitscales_backward_begin(ds_fitscales *f, double *gs)
{
    f->gs = gs;
    ds_llama_grads_zero(&f->g); /* the coded embeddings' dW, if any */
}

void ds_fitscales_backward_end(ds_fitscales *f)
{
    for (int k = 0; k < f->n; k++) {
        const ds_fit_tensor *t = &f->t[k];
        if (t->base && f->g.g[t->index])
            ds_fitscales_reduce(f->g.g[t->index], t->bits, t->rows, t->cols, t->kind, f->gs + t->off);
    }
    f->gs = NULL;
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
