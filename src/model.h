/* Llama engine on CPU: batched forward and backward with OpenBLAS GEMMs, a
 * KV-cached one-token path for generation, losses (CE, KL to reference
 * logits, logit MSE) and AdamW.
 *
 * Weights are one tensor per checkpoint tensor, under the Hugging Face
 * names and [out, in] layout of io/h5_model.h, in the engine's order:
 *   0                  model.embed_tokens.weight
 *   1 + 9*l + role     layer l, role = DS_LLAMA_ATTN_NORM .. DS_LLAMA_DOWN
 *   1 + 9*L            model.norm.weight
 *   2 + 9*L            lm_head.weight (untied models only)
 * Each matrix is held in its own precision, tinfo[i].dtype: F32, F16 or
 * BF16 (a checkpoint's stored dtype for eval and generate; F32 for the jobs
 * that train or take gradients); the 1-D norm weights are always F32.
 * Matmuls read f16/bf16 weights directly (src/gemm_w.h: exact
 * products with the f32 activations, f32 sums); activations, norms,
 * softmax and accumulations are f32 (docs/model.md "Numerics and kernels").
 * All tensors live in one buffer (data, bytes). For an all-F32 model that
 * buffer is w[0] .. w[0] + numel, so a delta can be added to the weights
 * after loading, AdamW runs over it, and gradients can be all-reduced in one
 * call. ds_llama_find maps a checkpoint name to an index.
 *
 * A step: ds_llama_forward (keeps activations in a ds_llama_act), one loss
 * function (writes dL/dlogits scaled by grad_scale), ds_llama_backward
 * (adds dL/dW into the tensors a ds_llama_grads asked for; the others are
 * skipped, but gradients still flow through every layer). Gradients are
 * f32 whatever the weights' dtype; AdamW needs an all-F32 model. */
#ifndef DS_MODEL_H
#define DS_MODEL_H
#include <stdint.h>
#include "src/ds.h"

enum {
    DS_LLAMA_ATTN_NORM = 0, /* model.layers.{l}.input_layernorm.weight */
    DS_LLAMA_Q,             /* self_attn.q_proj.weight [dim, dim] */
    DS_LLAMA_K,             /* self_attn.k_proj.weight [kv_dim, dim] */
    DS_LLAMA_V,             /* self_attn.v_proj.weight [kv_dim, dim] */
    DS_LLAMA_O,             /* self_attn.o_proj.weight [dim, dim] */
    DS_LLAMA_FFN_NORM,      /* post_attention_layernorm.weight */
    DS_LLAMA_GATE,          /* mlp.gate_proj.weight [hidden, dim] */
    DS_LLAMA_UP,            /* mlp.up_proj.weight [hidden, dim] */
    DS_LLAMA_DOWN,          /* mlp.down_proj.weight [dim, hidden] */
    DS_LLAMA_ROLES
};

typedef struct {
    ds_config cfg;
    int n_tensors;
    ds_tinfo *tinfo;  /* names, shapes and in-memory dtype (F32, F16, BF16), engine order */
    float **w;        /* w[i]: tensor i when it is F32, else NULL */
    void **p;         /* p[i]: tensor i in its dtype (== w[i] when F32), pointers into data */
    int64_t *offset;  /* element offset of tensor i in an all-f32 layout (grads, AdamW) */
    int64_t numel;    /* total parameters */
    void *data;       /* the buffer of every tensor */
    size_t bytes;     /* its size: 4 * numel when all F32, ~2 * numel for bf16 matrices */
    int all_f32;      /* 1 when every tensor it holds is F32 (data .. data + numel floats) */
    int l0, l1;       /* the decoder layers it holds, [l0, l1): all of them, or a pipeline stage's */
    float *rope_cos, *rope_sin; /* [max_seq_len, head_dim/2] */
    const struct ds_wcode **code; /* NULL, or [n_tensors]: the coded tensors (ds_llama_set_code) */
} ds_llama;

/* Allocate a zeroed all-F32 model for cfg (checked with ds_config_check). */
int ds_llama_init(ds_llama *m, const ds_config *cfg);
/* The same with tensor i held as dtypes[i] (F32, F16 or BF16; 1-D tensors
 * are F32 whatever is asked; dtypes NULL: all F32). */
int ds_llama_init_dtypes(ds_llama *m, const ds_config *cfg, const ds_dtype *dtypes);
/* The tensor list of cfg (names, shapes, dtype F32) in engine order, no
 * weights: *tinfo malloc'd; returns the count, or minus a ds_exit code
 * (cfg fails ds_config_check; message set). */
int ds_llama_tensors(const ds_config *cfg, ds_tinfo **tinfo);
/* A pipeline stage (src/pipeline.h): the tensors of decoder layers
 * [l0, l1) only, plus the embeddings when l0 == 0 and the final norm and
 * head when l1 == n_layers (a tied model's last stage holds the embeddings
 * too, as its head). The other tensors keep their tinfo but no memory:
 * p[i] = w[i] = NULL, ds_llama_holds 0; numel, bytes, offset and gradient
 * buffers cover the held tensors only. ds_llama_init_dtypes is the stage
 * [0, n_layers). */
int ds_llama_init_stage(ds_llama *m, const ds_config *cfg, const ds_dtype *dtypes, int l0, int l1);
/* Make linear tensor i (2-D, held, not the embeddings: i > 0) a coded
 * weight (src/gemm_w.h ds_wcode): every product with it (forward and dL/dx;
 * not the one-token path, which refuses it) uses W = p[i] + g (2b - 1),
 * with p[i] in its dtype as W_b. c is borrowed (its scales may change
 * between forwards); NULL makes the tensor plain again. ds_llama_copy copies
 * W_b only. */
void ds_llama_set_code(ds_llama *m, int i, const struct ds_wcode *c);
/* Whether m holds tensor i. */
int ds_llama_holds(const ds_llama *m, int i);
/* A zeroed model of like's config, dtypes and stage. */
int ds_llama_init_like(ds_llama *m, const ds_llama *like);
/* dst's weights = src's (same config), converted to dst's dtypes (f16/bf16
 * rounded to nearest even, like kernels/half.h); a plain copy where the
 * dtypes agree. */
void ds_llama_copy(ds_llama *dst, const ds_llama *src);
void ds_llama_free(ds_llama *m);
/* RoPE inverse frequency of pair i (0 <= i < head_dim/2) under cfg's
 * rope_scaling: theta^(-2i/head_dim), divided by factor (linear), or
 * Llama 3.1's rule (transformers' _compute_llama3_parameters). */
double ds_llama_rope_inv_freq(const ds_config *cfg, int i);
/* Index of a tensor by its checkpoint name, or -1. */
int ds_llama_find(const ds_llama *m, const char *name);
/* Index of layer l's tensor of a role. */
static inline int ds_llama_index(int layer, int role) { return 1 + DS_LLAMA_ROLES * layer + role; }
/* Random weights for tests and benchmarks: N(0, std^2) matrices, norms
 * 1 + N(0, 0.1^2) (not 1, so that their gradients are exercised); the same
 * draws for every dtype, rounded to f16/bf16 matrices. */
void ds_llama_randomize(ds_llama *m, uint64_t seed, float std);

/* ---- workspace of a batch [B, T]: activations kept for the backward pass. */
typedef struct ds_llama_act ds_llama_act;
/* For batches of up to max_b sequences of up to max_t tokens (plus a
 * 4 MiB panel scratch, DS_GEMM_SCRATCH_FLOATS, when m has f16/bf16
 * matrices). */
ds_llama_act *ds_llama_act_new(const ds_llama *m, int max_b, int max_t);
/* A forward-only workspace (eval, generate's prompt, a teacher's logits):
 * no backward buffers and one layer's attention probabilities instead of
 * every layer's (for 32 layers, 32 heads and 1024 tokens: 128 MiB instead
 * of 4 GiB). The forwards and the losses without gradient (grad_scale 0)
 * give the same bits as in a ds_llama_act_new workspace; the losses with
 * a gradient and the backward refuse it (ds_die). */
ds_llama_act *ds_llama_act_new_fwd(const ds_llama *m, int max_b, int max_t);
void ds_llama_act_free(ds_llama_act *a);
/* The bytes ds_llama_act_new(m, max_b, max_t) allocates for a model of
 * config c (the same list of buffers), for checks before allocating. */
double ds_llama_act_bytes(const ds_config *c, int64_t max_b, int64_t max_t);
/* The bytes of ds_llama_act_new_fwd(m, max_b, max_t). */
double ds_llama_act_bytes_fwd(const ds_config *c, int64_t max_b, int64_t max_t);

/* The bytes of a stage's workspace (its layers' activations; logits on the
 * last stage only). */
double ds_llama_act_bytes_stage(const ds_config *c, int64_t max_b, int64_t max_t, int l0, int l1);

/* Forward of a stage: tokens [B, T] (always: they are embedded on the first
 * stage and kept for the embedding gradient), x_in [B*T, dim] the previous
 * stage's output (ignored on the first stage). Returns the logits
 * [B*T, vocab] on the last stage, else this stage's output [B*T, dim]; both
 * valid until the next forward. The same operations in the same order as the
 * whole model's forward, so a chain of stages gives its logits bit for bit. */
float *ds_llama_forward_stage(const ds_llama *m, ds_llama_act *a, const int *tokens, const float *x_in, int B,
                              int T);

/* Forward of tokens [B, T] (row-major, positions 0..T-1 in each sequence).
 * Returns the logits [B*T, vocab], valid until the next forward. */
float *ds_llama_forward(const ds_llama *m, ds_llama_act *a, const int *tokens, int B, int T);

/* Forward only, logits only where they are scored: tokens [B, T] at
 * positions P..P+T-1 after the prefix whose forward is in pre (a workspace
 * after a forward of one sequence of P tokens from position 0: its keys and
 * values are attended to by every row), or at 0..T-1 when pre is NULL.
 * Logits are computed for the n_rows rows rows[] (indexes into [0, B*T)) only
 * and returned as [n_rows, vocab], valid until the next forward. The same
 * reductions in the same order as ds_llama_forward of the whole sequences
 * (docs/model.md "Scoring with a shared prefix"); no backward after it.
 * Whole models only (ds_llama_forward_rows_stage for a pipeline stage). */
float *ds_llama_forward_rows(const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, const int *tokens, int B,
                             int T, const int *rows, int n_rows);
/* The same on a pipeline stage (as ds_llama_forward_stage: x_in from the
 * previous stage, ignored on the first; pre is this stage's workspace of
 * the prefix): returns the logits of the rows on the last stage, else
 * every row's output [B*T, dim] for the next stage (rows unused there). */
float *ds_llama_forward_rows_stage(const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, const int *tokens,
                                   const float *x_in, int B, int T, const int *rows, int n_rows);
/* -log p(target) at row `row` of the last forward's logits (a row index of
 * the array ds_llama_forward_rows returned, or of ds_llama_forward's). */
double ds_llama_row_nll(const ds_llama_act *a, int row, int target);

/* Losses on the logits of the last forward. Each returns the SUM over the
 * counted positions (double) and writes dL/dlogits * grad_scale for the
 * backward pass (grad_scale 0: loss only, no gradient wanted).
 * CE: -log p(target); positions with target < 0 are not counted.
 * KL: sum_v p_ref (log p_ref - log p), p_ref = softmax(ref_logits).
 * MSE: mean over the vocabulary of (logit - ref_logit)^2.
 * mask (KL, MSE): count position i only when mask[i] != 0; NULL: all.
 * *count (may be NULL) receives the number of counted positions. */
double ds_llama_loss_ce(ds_llama_act *a, const int *targets, float grad_scale, int64_t *count);
double ds_llama_loss_kl(ds_llama_act *a, const float *ref_logits, const unsigned char *mask,
                        float grad_scale, int64_t *count);
double ds_llama_loss_mse(ds_llama_act *a, const float *ref_logits, const unsigned char *mask,
                         float grad_scale, int64_t *count);

/* A weight gradient taken as its two factors instead of dW (e.g. to reduce
 * it at once, src/fitscales.h): for linear tensor i, y[N, out] = x[N, in]
 * W^T, the backward calls hook(arg, i, dy, x, N, in, out) where it would
 * add dW += dy^T x. dy and x are valid during the call only. */
typedef void (*ds_llama_wgrad_hook)(void *arg, int i, const float *dy, const float *x, int N, int in, int out);

/* Gradient buffers for a subset of the tensors (one contiguous buffer laid
 * out like the weights; g[i] is NULL for tensors not asked for). */
typedef struct {
    int n_tensors;
    float **g;
    float *data;
    int64_t numel; /* size of data (the whole model, for one all-reduce) */
    ds_llama_wgrad_hook hook; /* ds_llama_grads_init_hook: the hooked tensors' gradients */
    void *hook_arg;
    unsigned char *hooked;    /* [n_tensors] or NULL */
} ds_llama_grads;
/* want[i] != 0 asks for tensor i; want NULL: all tensors. */
void ds_llama_grads_init(ds_llama_grads *g, const ds_llama *m, const unsigned char *want);
/* Tensors m holds with hooked[i] != 0 (2-D, not the embeddings, whose
 * gradient is a gather) go to hook instead of a buffer; the others that
 * want asks for get buffers, packed one after the other (numel: their
 * sizes only, not laid out like the weights). */
void ds_llama_grads_init_hook(ds_llama_grads *g, const ds_llama *m, const unsigned char *want,
                              const unsigned char *hooked, ds_llama_wgrad_hook hook, void *arg);
void ds_llama_grads_zero(ds_llama_grads *g);
void ds_llama_grads_free(ds_llama_grads *g);
/* Backward of the last forward and loss: ADDS dL/dW into g (zero it first),
 * or hands it to g's hook. */
void ds_llama_backward(const ds_llama *m, ds_llama_act *a, ds_llama_grads *g);
/* Backward of a stage after its forward: from the loss's dL/dlogits on the
 * last stage (dx_out NULL), else from dx_out [B*T, dim], the next stage's
 * result. ADDS dL/dW into g as ds_llama_backward; returns dL/dx_in
 * [B*T, dim] for the previous stage (valid until the next backward), NULL on
 * the first stage. A tied model's embedding gradient comes in two parts
 * (first stage: the embedding; last stage: the head): the caller sums them. */
float *ds_llama_backward_stage(const ds_llama *m, ds_llama_act *a, ds_llama_grads *g, const float *dx_out);

/* ---- KV-cached generation: one token at a time. */
typedef struct {
    int max_t;
    float *k, *v;        /* [layers held (all, or a stage's), max_t, kv_dim] */
    float *x, *xn, *q, *att, *h1, *h3, *scores, *logits;
} ds_llama_kv;
int ds_llama_kv_init(ds_llama_kv *kv, const ds_llama *m, int max_t);
void ds_llama_kv_free(ds_llama_kv *kv);
/* Feed token at position pos (0-based, < max_t; positions 0..pos-1 must have
 * been fed). Returns the logits [vocab] for the next token. */
float *ds_llama_step(const ds_llama *m, ds_llama_kv *kv, int token, int pos);
/* The same for a pipeline stage (ds_llama_init_stage; its KV cache holds its
 * own layers): token embedded on the first stage, x_in [dim] from the
 * previous stage on the others; returns the logits on the last stage, else
 * this stage's output [dim] for the next (valid until the next step). */
float *ds_llama_step_stage(const ds_llama *m, ds_llama_kv *kv, int token, const float *x_in, int pos);

/* ---- AdamW (decoupled weight decay) over all parameters (an all-F32 model). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t t;
    float *m, *v;
} ds_adamw;
void ds_adamw_init(ds_adamw *o, const ds_llama *m, float lr, float weight_decay);
/* One update of every weight from g (a full set of gradients). */
void ds_adamw_step(ds_adamw *o, ds_llama *m, const ds_llama_grads *g);
void ds_adamw_free(ds_adamw *o);

/* OpenBLAS threads for this process (n >= 1). */
void ds_llama_set_threads(int n);

/* ---- small deterministic RNG (splitmix64) for sampling, batches, init. */
typedef struct { uint64_t s; } ds_rng;
static inline uint64_t ds_rng_u64(ds_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double ds_rng_uniform(ds_rng *r) { return (double)(ds_rng_u64(r) >> 11) * 0x1p-53; }
#endif
