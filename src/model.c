/* Llama engine on CPU: weights, forward, losses, backward, KV-cached step,
 * AdamW (src/model.h). Matmuls with the weights go through
 * src/gemm_w.h (cblas_sgemm/sgemv for f32 weights, exactly as
 * before; f16/bf16 read directly), the attention's through cblas_sgemm;
 * activations live in one workspace allocated per batch shape, so a
 * training step does no allocation. The forward's other work (norms, RoPE,
 * SiLU, the attention's softmax, copies) runs on the products' threads
 * above a size (par_for), split so that results do not change. */
#include "config.h"
#include "src/model.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/cpu/dispatch.h"
#include "src/gemm_w.h"
#include "kernels/half.h"
#include "src/vexp.h"

static const char *const role_names[DS_LLAMA_ROLES] = {
    "input_layernorm",       "self_attn.q_proj",  "self_attn.k_proj", "self_attn.v_proj",
    "self_attn.o_proj",      "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
    "mlp.down_proj"};

static void tinfo_set(ds_tinfo *t, const char *name, int64_t rows, int64_t cols)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = DS_DTYPE_F32; /* ds_llama_init_dtypes sets the matrices' */
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
}

int ds_llama_init(ds_llama *m, const ds_config *cfg) { return ds_llama_init_dtypes(m, cfg, NULL); }

int ds_llama_init_like(ds_llama *m, const ds_llama *like)
{
    ds_dtype *dt = ds_malloc((size_t)like->n_tensors * sizeof *dt);
    for (int i = 0; i < like->n_tensors; i++) dt[i] = like->tinfo[i].dtype;
    int rc = ds_llama_init_stage(m, &like->cfg, dt, like->l0, like->l1);
    free(dt);
    return rc;
}

/* Tensor i's dtype as the kernels name it. */
static inline ds_kdtype wdt(const ds_llama *m, int i) { return (ds_kdtype)m->tinfo[i].dtype; }

int ds_llama_tensors(const ds_config *cfg, ds_tinfo **tinfo)
{
    *tinfo = NULL;
    int rc = ds_config_check(cfg, "model");
    if (rc) return -rc;
    const int D = cfg->dim, F = cfg->hidden_dim, L = cfg->n_layers, V = cfg->vocab_size;
    const int KVD = D / cfg->n_heads * cfg->n_kv_heads;
    const int n = 2 + DS_LLAMA_ROLES * L + (cfg->tied_embeddings ? 0 : 1);
    ds_tinfo *t = *tinfo = ds_calloc((size_t)n, sizeof *t);
    char name[DS_NAME_MAX];
    tinfo_set(&t[0], "model.embed_tokens.weight", V, D);
    for (int l = 0; l < L; l++) {
        static const int rows_of[DS_LLAMA_ROLES] = {0, 1, 2, 2, 1, 0, 3, 3, 1};
        for (int r = 0; r < DS_LLAMA_ROLES; r++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, role_names[r]);
            int64_t rows = rows_of[r] == 2 ? KVD : rows_of[r] == 3 ? F : D;
            int64_t cols = rows_of[r] == 0 ? 0 : r == DS_LLAMA_DOWN ? F : D;
            tinfo_set(&t[ds_llama_index(l, r)], name, rows, cols);
        }
    }
    tinfo_set(&t[1 + DS_LLAMA_ROLES * L], "model.norm.weight", D, 0);
    if (!cfg->tied_embeddings) tinfo_set(&t[2 + DS_LLAMA_ROLES * L], "lm_head.weight", V, D);
    return n;
}

int ds_llama_init_dtypes(ds_llama *m, const ds_config *cfg, const ds_dtype *dtypes)
{
    return ds_llama_init_stage(m, cfg, dtypes, 0, cfg->n_layers);
}

int ds_llama_holds(const ds_llama *m, int i)
{
    const int L = m->cfg.n_layers, i_norm = 1 + DS_LLAMA_ROLES * L;
    if (i == 0) return m->l0 == 0 || (m->l1 == L && m->cfg.tied_embeddings);
    if (i >= i_norm) return m->l1 == L;
    const int l = (i - 1) / DS_LLAMA_ROLES;
    return l >= m->l0 && l < m->l1;
}

int ds_llama_init_stage(ds_llama *m, const ds_config *cfg, const ds_dtype *dtypes, int l0, int l1)
{
    memset(m, 0, sizeof *m);
    if (l0 < 0 || l1 <= l0 || l1 > cfg->n_layers)
        return ds_err(DS_EXIT_USAGE, "model stage of layers [%d, %d): the model has %d", l0, l1, cfg->n_layers);
    int n = ds_llama_tensors(cfg, &m->tinfo);
    if (n < 0) return -n;
    m->cfg = *cfg;
    m->n_tensors = n;
    m->l0 = l0;
    m->l1 = l1;
    m->w = ds_calloc((size_t)m->n_tensors, sizeof *m->w);
    m->p = ds_calloc((size_t)m->n_tensors, sizeof *m->p);
    m->offset = ds_calloc((size_t)m->n_tensors, sizeof *m->offset);
    int64_t total = 0;
    size_t bytes = 0;
    m->all_f32 = 1;
    for (int i = 0; i < m->n_tensors; i++) {
        ds_tinfo *t = &m->tinfo[i];
        const ds_dtype want = dtypes ? dtypes[i] : DS_DTYPE_F32;
        if (t->ndim == 2 && (want == DS_DTYPE_F16 || want == DS_DTYPE_BF16)) t->dtype = want;
        m->offset[i] = total;
        if (!ds_llama_holds(m, i)) continue;
        m->all_f32 &= t->dtype == DS_DTYPE_F32;
        total += ds_tinfo_numel(t);
    }
    m->numel = total;
    /* All F32: the tensors back to back (w[0] .. w[0] + numel). Otherwise
     * each starts on a 64-byte boundary. */
    size_t *at = ds_malloc((size_t)m->n_tensors * sizeof *at);
    for (int i = 0; i < m->n_tensors; i++) {
        if (!m->all_f32) bytes = (bytes + 63) & ~(size_t)63;
        at[i] = bytes;
        if (ds_llama_holds(m, i)) bytes += ds_tinfo_bytes(&m->tinfo[i]);
    }
    m->bytes = bytes;
    m->data = ds_calloc(bytes ? bytes : 1, 1);
    for (int i = 0; i < m->n_tensors; i++) {
        if (!ds_llama_holds(m, i)) continue;
        m->p[i] = (char *)m->data + at[i];
        if (m->tinfo[i].dtype == DS_DTYPE_F32) m->w[i] = m->p[i];
    }
    free(at);

    /* RoPE tables in double, rounded once: positions up to 512 and beyond
     * would lose ~1e-5 rad to a float angle. */
    const int hs = cfg->dim / cfg->n_heads, half = hs / 2;
    m->rope_cos = ds_malloc((size_t)cfg->max_seq_len * half * sizeof(float));
    m->rope_sin = ds_malloc((size_t)cfg->max_seq_len * half * sizeof(float));
    double *inv = ds_malloc((size_t)half * sizeof(double));
    for (int i = 0; i < half; i++) inv[i] = ds_llama_rope_inv_freq(cfg, i);
    for (int p = 0; p < cfg->max_seq_len; p++)
        for (int i = 0; i < half; i++) {
            double ang = p * inv[i];
            m->rope_cos[(size_t)p * half + i] = (float)cos(ang);
            m->rope_sin[(size_t)p * half + i] = (float)sin(ang);
        }
    free(inv);
    return 0;
}

double ds_llama_rope_inv_freq(const ds_config *cfg, int i)
{
    const int hs = cfg->dim / cfg->n_heads;
    const double base = pow((double)cfg->rope_theta, -2.0 * i / hs);
    const double factor = cfg->rope_factor;
    if (cfg->rope_scaling == DS_ROPE_LINEAR) return base / factor;
    if (cfg->rope_scaling != DS_ROPE_LLAMA3) return base;
    /* Llama 3.1: wavelengths longer than original/low_freq_factor are
     * stretched by factor, shorter than original/high_freq_factor kept, and
     * interpolated linearly in original/wavelength between the two. */
    const double orig = cfg->rope_original_max_pos, low = cfg->rope_low_freq_factor,
                 high = cfg->rope_high_freq_factor;
    const double wavelen = 2 * 3.14159265358979323846 / base;
    if (wavelen < orig / high) return base;
    if (wavelen > orig / low) return base / factor;
    const double smooth = (orig / wavelen - low) / (high - low);
    return (1 - smooth) * base / factor + smooth * base;
}

void ds_llama_free(ds_llama *m)
{
    free(m->data);
    free(m->w);
    free(m->p);
    free(m->tinfo);
    free(m->offset);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->code);
    memset(m, 0, sizeof *m);
}

void ds_llama_set_code(ds_llama *m, int i, const struct ds_wcode *c)
{
    if (i <= 0 || i >= m->n_tensors || m->tinfo[i].ndim != 2 || !m->p[i])
        ds_die("ds_llama_set_code: tensor %d is not a linear this model holds", i);
    if (!m->code) m->code = ds_calloc((size_t)m->n_tensors, sizeof *m->code);
    m->code[i] = c;
}

int ds_llama_find(const ds_llama *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tinfo[i].name, name) == 0) return i;
    return -1;
}

static double rng_normal(ds_rng *r)
{
    double u1 = ds_rng_uniform(r), u2 = ds_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

/* Element j of tensor i set to v, rounded to the tensor's dtype. */
static void wset(ds_llama *m, int i, int64_t j, float v)
{
    switch (m->tinfo[i].dtype) {
    case DS_DTYPE_BF16: ((uint16_t *)m->p[i])[j] = ds_f32_to_bf16(v); break;
    case DS_DTYPE_F16: ((uint16_t *)m->p[i])[j] = ds_f32_to_f16(v); break;
    default: m->w[i][j] = v; break;
    }
}

void ds_llama_randomize(ds_llama *m, uint64_t seed, float std)
{
    ds_rng r = {seed};
    for (int i = 0; i < m->n_tensors; i++) {
        int64_t n = ds_tinfo_numel(&m->tinfo[i]);
        int is_norm = m->tinfo[i].ndim == 1, held = ds_llama_holds(m, i);
        for (int64_t j = 0; j < n; j++) { /* the same draws for a stage as for the whole model */
            float v = is_norm ? (float)(1.0 + 0.1 * rng_normal(&r)) : (float)(std * rng_normal(&r));
            if (held) wset(m, i, j, v);
        }
    }
}

void ds_llama_copy(ds_llama *dst, const ds_llama *src)
{
    for (int i = 0; i < src->n_tensors; i++) {
        if (!src->p[i] || !dst->p[i]) continue; /* not held by this stage */
        const int64_t n = ds_tinfo_numel(&src->tinfo[i]);
        const ds_dtype sd = src->tinfo[i].dtype, dd = dst->tinfo[i].dtype;
        if (sd == dd) {
            memcpy(dst->p[i], src->p[i], ds_tinfo_bytes(&src->tinfo[i]));
        } else if (dd == DS_DTYPE_F32) {
            ds_wconv_f32(wdt(src, i), src->p[i], dst->w[i], (size_t)n);
        } else {
            for (int64_t j = 0; j < n; j++) {
                float v;
                ds_wconv_f32(wdt(src, i), (const char *)src->p[i] + j * (int64_t)ds_dtype_size(sd), &v, 1);
                wset(dst, i, j, v);
            }
        }
    }
}

void ds_llama_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

/* ---- the forward's work outside the products (norms, RoPE, SiLU, the
 * attention's softmax, copies) on the products' threads (src/gemm_w.h
 * ds_gemm_parallel, ds_gemm_threads of them). The work is split by whole
 * rows, heads or runs of elements, each computed exactly as on one thread,
 * so the results do not depend on the thread count. Below PAR_WORK floats
 * of work one thread: waking the pool costs microseconds (stories260K's
 * shapes and the one-token step stay on one). The attention's sgemm calls
 * stay on OpenBLAS's threads: its results depend on its thread count and
 * on the calls' shapes (docs/model.md "Mode dp"). */
#define PAR_WORK ((int64_t)1 << 18)

typedef struct {
    void (*body)(void *ctx, int64_t i0, int64_t i1);
    void *ctx;
    int64_t n, grain;
} par_job;

static void par_run(void *arg, int t, int T)
{
    const par_job *j = arg;
    const int64_t chunks = (j->n + j->grain - 1) / j->grain;
    const int64_t c0 = chunks * t / T, c1 = chunks * (t + 1) / T;
    const int64_t i0 = c0 * j->grain, i1 = c1 * j->grain < j->n ? c1 * j->grain : j->n;
    if (i0 < i1) j->body(j->ctx, i0, i1);
}

/* The threads for `work` units over n items in runs of grain. */
static int par_threads(int64_t n, int64_t grain, int64_t work)
{
    if (work < PAR_WORK || n <= grain) return 1;
    const int T = ds_gemm_threads();
    const int64_t chunks = (n + grain - 1) / grain;
    return chunks < T ? (int)chunks : T;
}

/* body(ctx, i0, i1) over [0, n) in runs that are multiples of grain (the
 * last one ending at n), on par_threads(n, grain, work) threads. */
static void par_for(int64_t n, int64_t grain, int64_t work, void (*body)(void *, int64_t, int64_t), void *ctx)
{
    const int T = par_threads(n, grain, work);
    if (T <= 1) {
        if (n > 0) body(ctx, 0, n);
        return;
    }
    par_job j = {body, ctx, n, grain};
    ds_gemm_parallel(par_run, &j, T);
}

typedef struct {
    float *dst;
    const float *src;
} par_copy_ctx;
static void par_copy_body(void *ctx, int64_t i0, int64_t i1)
{
    const par_copy_ctx *c = ctx;
    memcpy(c->dst + i0, c->src + i0, (size_t)(i1 - i0) * sizeof(float));
}
/* memcpy of n floats */
static void par_copy(float *dst, const float *src, int64_t n)
{
    par_copy_ctx c = {dst, src};
    par_for(n, 4096, n, par_copy_body, &c);
}

/* ---- building blocks */

/* The matrices of the products below: tensor i of m in its dtype, and the
 * workspace's panel scratch (NULL for an all-F32 model). */
typedef struct {
    ds_kdtype dt;
    const void *p;
    const ds_wcode *code; /* a coded weight (ds_llama_set_code), or NULL */
    float *scratch;
} wmat;

/* y[N, out] (=|+=) x[N, in] @ W[out, in]^T */
static void lin_fwd(float *y, const float *x, wmat W, int N, int in, int out, float beta)
{
    ds_gemm_xwt_coded(W.dt, (size_t)N, (size_t)in, (size_t)out, x, W.p, W.code, beta, y, W.scratch,
                      W.scratch ? DS_GEMM_SCRATCH_FLOATS : 0);
}

/* dW[out, in] += dy[N, out]^T @ x[N, in] */
static void lin_bwd_w(float *dW, const float *dy, const float *x, int N, int in, int out)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

/* dx[N, in] (=|+=) dy[N, out] @ W[out, in] */
static void lin_bwd_x(float *dx, const float *dy, wmat W, int N, int in, int out, float beta)
{
    ds_gemm_xw_coded(W.dt, (size_t)N, (size_t)in, (size_t)out, dy, W.p, W.code, beta, dx, W.scratch,
                     W.scratch ? DS_GEMM_SCRATCH_FLOATS : 0);
}

/* Row `row` of the embedding (tensor 0) as f32 into dst [D]. */
static void embed_row(const ds_llama *m, int row, float *dst)
{
    const size_t D = (size_t)m->cfg.dim;
    ds_wconv_f32(wdt(m, 0), (const char *)m->p[0] + (size_t)row * D * ds_dtype_size(m->tinfo[0].dtype), dst, D);
}

/* y = x * rsqrt(mean(x^2) + eps) * w per row; rs[n] keeps the factor. */
static void rmsnorm_rows(float *y, float *rs, const float *x, const float *w, int n0, int n1, int D, float eps)
{
    for (int n = n0; n < n1; n++) {
        const float *xr = x + (size_t)n * D;
        float *yr = y + (size_t)n * D;
        float ss = 0;
        for (int j = 0; j < D; j++) ss += xr[j] * xr[j];
        float r = 1.0f / sqrtf(ss / D + eps);
        if (rs) rs[n] = r;
        for (int j = 0; j < D; j++) yr[j] = xr[j] * r * w[j];
    }
}

typedef struct {
    float *y, *rs;
    const float *x, *w;
    int D;
    float eps;
} rmsnorm_ctx;
static void rmsnorm_body(void *ctx, int64_t i0, int64_t i1)
{
    const rmsnorm_ctx *c = ctx;
    rmsnorm_rows(c->y, c->rs, c->x, c->w, (int)i0, (int)i1, c->D, c->eps);
}
static void rmsnorm_fwd(float *y, float *rs, const float *x, const float *w, int N, int D, float eps)
{
    rmsnorm_ctx c = {y, rs, x, w, D, eps};
    par_for(N, 1, (int64_t)N * D, rmsnorm_body, &c);
}

/* dx += d(rmsnorm)/dx^T dy; dw += d/dw^T dy (dw may be NULL). */
static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rs,
                        int N, int D)
{
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        float *dxr = dx + (size_t)n * D;
        const float r = rs[n];
        float s = 0;
        for (int j = 0; j < D; j++) s += dyr[j] * w[j] * xr[j];
        const float c = s * r * r * r / D;
        for (int j = 0; j < D; j++) dxr[j] += r * dyr[j] * w[j] - c * xr[j];
        if (dw)
            for (int j = 0; j < D; j++) dw[j] += dyr[j] * xr[j] * r;
    }
}

/* Rotate-half RoPE on x [N, n_heads*hs] (row stride ld) at position pos(n).
 * inverse: apply the transpose (for the backward pass). */
static void rope_rows(const ds_llama *m, float *x, int n0, int n1, int T, int n_heads, int ld, int pos0, int inverse)
{
    const int hs = m->cfg.dim / m->cfg.n_heads, half = hs / 2;
    const float sgn = inverse ? -1.0f : 1.0f;
    for (int n = n0; n < n1; n++) {
        const int pos = pos0 + (T ? n % T : 0);
        const float *c = m->rope_cos + (size_t)pos * half, *s = m->rope_sin + (size_t)pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *a = x + (size_t)n * ld + h * hs, *b = a + half;
            for (int i = 0; i < half; i++) {
                float x0 = a[i], x1 = b[i], si = sgn * s[i];
                a[i] = x0 * c[i] - x1 * si;
                b[i] = x1 * c[i] + x0 * si;
            }
        }
    }
}

typedef struct {
    const ds_llama *m;
    float *x;
    int T, n_heads, ld, pos0, inverse;
} rope_ctx;
static void rope_body(void *ctx, int64_t i0, int64_t i1)
{
    const rope_ctx *c = ctx;
    rope_rows(c->m, c->x, (int)i0, (int)i1, c->T, c->n_heads, c->ld, c->pos0, c->inverse);
}
static void rope_apply(const ds_llama *m, float *x, int N, int T, int n_heads, int ld, int pos0, int inverse)
{
    rope_ctx c = {m, x, T, n_heads, ld, pos0, inverse};
    par_for(N, 1, (int64_t)N * n_heads * (m->cfg.dim / m->cfg.n_heads), rope_body, &c);
}

/* ---- the elementwise hot loops (src/vexp.h), twice: portable (4-lane
 * vectors: SSE2 on any x86-64) and compiled for AVX2 (8 lanes),
 * chosen by the CPU kernel variant (kernels/cpu/dispatch.h; DS_SIMD=ref
 * forces the portable one). Both do the same IEEE operations in the same
 * order, so they agree bit for bit (tests/unit/test_model.c). */

/* Per width W (src/vexp.h) and name suffix, with a target attribute:
 *   softmax_causal_SFX(S, R, ld, off)  causal softmax of R rows of ld scores,
 *                             row i over columns 0..off+i, the rest of the
 *                             row zeroed (off = 0, ld = T: a T x T block, P
 *                             kept for the backward pass; off = P: rows
 *                             after a cached prefix of P positions)
 *   silu_mul_SFX(o, g, u, n)  o = silu(g) * u
 *   row_lse_SFX(z, V, p)      log-sum-exp of a row, and (when p) its softmax */
#define DS_ENGINE_LOOPS(W, SFX, ATTR)                                                                                   \
    ATTR static void softmax_causal_##SFX(float *S, int R, int ld, int off)                                            \
    {                                                                                                                  \
        for (int i = 0; i < R; i++) {                                                                                  \
            float *row = S + (size_t)i * ld;                                                                           \
            const int n = off + i + 1;                                                                                 \
            const float sum = ds_v##W##_exp_sub_sum(row, n, ds_v##W##_max(row, n));                                    \
            ds_v##W##_scale(row, n, 1.0f / sum);                                                                       \
            memset(row + n, 0, (size_t)(ld - n) * sizeof(float));                                                     \
        }                                                                                                              \
    }                                                                                                                  \
    ATTR static void silu_mul_##SFX(float *out, const float *g, const float *u, int64_t n)                             \
    {                                                                                                                  \
        ds_v##W##_silu_mul(out, g, u, n);                                                                              \
    }                                                                                                                  \
    ATTR static float row_lse_##SFX(const float *z, int V, float *p)                                                   \
    {                                                                                                                  \
        const float mx = ds_v##W##_max(z, V);                                                                          \
        float sum;                                                                                                     \
        if (p) {                                                                                                       \
            memcpy(p, z, (size_t)V * sizeof(float));                                                                   \
            sum = ds_v##W##_exp_sub_sum(p, V, mx);                                                                     \
            ds_v##W##_scale(p, V, 1.0f / sum);                                                                         \
        } else {                                                                                                       \
            float buf[256];                                                                                            \
            sum = 0;                                                                                                   \
            for (int j0 = 0; j0 < V; j0 += 256) {                                                                      \
                const int n = V - j0 < 256 ? V - j0 : 256;                                                             \
                memcpy(buf, z + j0, (size_t)n * sizeof(float));                                                       \
                sum += ds_v##W##_exp_sub_sum(buf, n, mx);                                                              \
            }                                                                                                          \
        }                                                                                                              \
        return mx + logf(sum);                                                                                         \
    }

DS_ENGINE_LOOPS(4, ref, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
DS_ENGINE_LOOPS(8, avx2, __attribute__((target("avx2,fma"))))
static int engine_avx2(void) { return ds_simd_active() != DS_SIMD_REF; }
#else
#define softmax_causal_avx2 softmax_causal_ref
#define silu_mul_avx2 silu_mul_ref
#define row_lse_avx2 row_lse_ref
static int engine_avx2(void) { return 0; }
#endif
static void softmax_causal(float *S, int R, int ld, int off)
{
    (engine_avx2() ? softmax_causal_avx2 : softmax_causal_ref)(S, R, ld, off);
}
typedef struct {
    float *out;
    const float *g, *u;
    void (*fn)(float *, const float *, const float *, int64_t);
} silu_ctx;
static void silu_body(void *ctx, int64_t i0, int64_t i1)
{
    const silu_ctx *c = ctx;
    c->fn(c->out + i0, c->g + i0, c->u + i0, i1 - i0);
}
/* runs of 64 elements: every element falls in a vector (or the tail) as on one thread */
static void silu_mul(float *out, const float *g, const float *u, int64_t n)
{
    silu_ctx c = {out, g, u, engine_avx2() ? silu_mul_avx2 : silu_mul_ref};
    par_for(n, 64, n, silu_body, &c);
}
static float row_lse(const float *z, int V, float *p) { return (engine_avx2() ? row_lse_avx2 : row_lse_ref)(z, V, p); }

/* ---- workspace */

struct ds_llama_act {
    int max_b, max_t, B, T, V;
    int cont; /* the last forward was ds_llama_forward_rows (forward only: no backward) */
    int fwd_only; /* ds_llama_act_new_fwd: no backward buffers, P for one layer */
    float *cscratch; /* attention_cont's K, V blocks and scores (grown as needed) */
    size_t cscratch_n;
    int pos0; /* the position of the last forward's first token */
    int64_t cap; /* max_b * max_t tokens */
    int *tokens;
    float *x;    /* [L+1][cap, D] residual stream entering each layer (and the final norm) */
    float *xn1, *rs1, *q, *k, *v, *P, *att, *xmid, *xn2, *rs2, *h1, *h3, *act; /* per layer */
    float *xf, *rsf, *logits, *dlogits;
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dh1, *dh3, *dP; /* backward scratch */
    float *wscratch; /* DS_GEMM_SCRATCH_FLOATS: panels of f16/bf16 weights (NULL when all F32) */
};

/* Tensor i of m with the workspace's scratch. */
static inline wmat wm(const ds_llama *m, float *scratch, int i)
{
    wmat w = {wdt(m, i), m->p[i], m->code ? m->code[i] : NULL, scratch};
    return w;
}

/* The buffers of a workspace, in floats: one list for ds_llama_act_new and
 * ds_llama_act_bytes (L, N, D, KVD, F, V, H, max_b, max_t, LL and XL in
 * scope); ACT_BWD's only for the backward pass. A training workspace keeps
 * every layer's activations (LL = L, XL = L + 1 residual streams); a
 * forward-only one keeps every layer's keys and values (a cached prefix,
 * ds_llama_forward_rows) but one layer of the rest (LL = 1) and two
 * residual streams used in turn (XL = 2). */
#define ACT_FWD(X) \
    X(x, XL * N * D) X(xn1, LL * N * D) X(rs1, LL * N) X(q, LL * N * D) X(k, L * N * KVD) \
    X(v, L * N * KVD) X(P, LL * max_b * H * max_t * max_t) X(att, LL * N * D) X(xmid, LL * N * D) \
    X(xn2, LL * N * D) X(rs2, LL * N) X(h1, LL * N * F) X(h3, LL * N * F) X(act, LL * N * F) X(xf, N * D) \
    X(rsf, N) X(logits, N * V)
#define ACT_BWD(X) \
    X(dlogits, N * V) X(dx, N * D) X(dxn, N * D) X(dq, N * D) X(dk, N * KVD) X(dv, N * KVD) X(datt, N * D) \
    X(dh1, N * F) X(dh3, N * F) X(dP, (int64_t)max_t * max_t)

static double act_bytes(const ds_config *c, int64_t max_b, int64_t max_t, int l0, int l1, int fwd_only)
{
    const int64_t D = c->dim, F = c->hidden_dim, L = l1 - l0, H = c->n_heads;
    const int64_t LL = fwd_only ? 1 : L, XL = fwd_only ? 2 : L + 1;
    const int64_t V = l1 == c->n_layers ? c->vocab_size : 0;
    const int64_t KVD = D / H * c->n_kv_heads, N = max_b * max_t;
    double floats = 0;
#define COUNT(p, n) floats += (double)(n);
    ACT_FWD(COUNT)
    if (!fwd_only) { ACT_BWD(COUNT) }
#undef COUNT
    return 4.0 * floats + (double)sizeof(int) * (double)N; /* + the tokens */
}

double ds_llama_act_bytes(const ds_config *c, int64_t max_b, int64_t max_t)
{
    return act_bytes(c, max_b, max_t, 0, c->n_layers, 0);
}

double ds_llama_act_bytes_fwd(const ds_config *c, int64_t max_b, int64_t max_t)
{
    return act_bytes(c, max_b, max_t, 0, c->n_layers, 1);
}

double ds_llama_act_bytes_stage(const ds_config *c, int64_t max_b, int64_t max_t, int l0, int l1)
{
    return act_bytes(c, max_b, max_t, l0, l1, 0);
}

static ds_llama_act *act_new(const ds_llama *m, int max_b, int max_t, int fwd_only)
{
    const ds_config *c = &m->cfg;
    /* a stage keeps its own layers' activations, and logits on the last only */
    const int64_t D = c->dim, F = c->hidden_dim, L = m->l1 - m->l0, H = c->n_heads;
    const int64_t LL = fwd_only ? 1 : L, XL = fwd_only ? 2 : L + 1;
    const int64_t V = m->l1 == c->n_layers ? c->vocab_size : 0;
    const int64_t KVD = D / H * c->n_kv_heads;
    ds_llama_act *a = ds_calloc(1, sizeof *a);
    a->max_b = max_b;
    a->max_t = max_t;
    a->V = c->vocab_size;
    a->fwd_only = fwd_only;
    const int64_t N = a->cap = (int64_t)max_b * max_t;
    a->tokens = ds_malloc((size_t)N * sizeof(int));
#define ALLOC(p, n) a->p = ds_malloc((size_t)(n) * sizeof(float));
    ACT_FWD(ALLOC)
    if (!fwd_only) { ACT_BWD(ALLOC) }
#undef ALLOC
    if (!m->all_f32) a->wscratch = ds_malloc(DS_GEMM_SCRATCH_FLOATS * sizeof(float));
    return a;
}

ds_llama_act *ds_llama_act_new(const ds_llama *m, int max_b, int max_t) { return act_new(m, max_b, max_t, 0); }

ds_llama_act *ds_llama_act_new_fwd(const ds_llama *m, int max_b, int max_t) { return act_new(m, max_b, max_t, 1); }

void ds_llama_act_free(ds_llama_act *a)
{
    if (!a) return;
    float *bufs[] = {a->x,  a->xn1, a->rs1, a->q,      a->k,       a->v,  a->P,   a->att, a->xmid,
                     a->xn2, a->rs2, a->h1, a->h3,     a->act,     a->xf, a->rsf, a->logits,
                     a->dlogits, a->dx, a->dxn, a->dq, a->dk,      a->dv, a->datt, a->dh1, a->dh3, a->dP};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(a->tokens);
    free(a->wscratch);
    free(a->cscratch);
    free(a);
}

/* ---- forward */

/* The residual stream entering layer index s (s = the stage's layer count:
 * leaving the last); a forward-only workspace keeps two, used in turn. */
static inline float *xat(const ds_llama_act *a, int s, int D)
{
    return a->x + (int64_t)(a->fwd_only ? (s & 1) : s) * a->cap * D;
}

typedef struct {
    float *P;
    int T;
} softmax_ctx;
static void softmax_body(void *ctx, int64_t i0, int64_t i1)
{
    const softmax_ctx *c = ctx;
    for (int64_t i = i0; i < i1; i++) softmax_causal(c->P + i * c->T * c->T, c->T, c->T, 0);
}

/* Causal attention of one layer for every (sequence, head): P = softmax(QK^T
 * * scale) kept for the backward pass, att = P V. The products are
 * cblas_sgemm calls per head on OpenBLAS's threads (its results depend on
 * its thread count and on the shapes of the calls, so these stay as they
 * are); the scores of every head first, then the softmax of all heads split
 * by heads across the products' threads (par_for), then P V per head. */
static void attention_fwd(const ds_llama *m, ds_llama_act *a, const float *q, const float *k, const float *v,
                          float *P, float *att)
{
    const int B = a->B, T = a->T, D = m->cfg.dim, H = m->cfg.n_heads, hs = D / H;
    const int KVD = hs * m->cfg.n_kv_heads, rep = H / m->cfg.n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *Q = q + (size_t)b * T * D + h * hs;
            const float *K = k + (size_t)b * T * KVD + (h / rep) * hs;
            float *S = P + ((size_t)b * H + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, Q, D, K, KVD, 0.0f, S, T);
        }
    softmax_ctx sc = {P, T};
    par_for((int64_t)B * H, 1, (int64_t)B * H * T * T, softmax_body, &sc);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *Vv = v + (size_t)b * T * KVD + (h / rep) * hs;
            const float *S = P + ((size_t)b * H + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, S, T, Vv, KVD, 0.0f,
                        att + (size_t)b * T * D + h * hs, D);
        }
}

float *ds_llama_forward(const ds_llama *m, ds_llama_act *a, const int *tokens, int B, int T)
{
    if (m->l0 != 0 || m->l1 != m->cfg.n_layers) ds_die("ds_llama_forward: a stage model (ds_llama_forward_stage)");
    return ds_llama_forward_stage(m, a, tokens, NULL, B, T);
}

/* Attention of layer s for B continuations of T tokens after the cached
 * prefix in pre (its first pre->T positions, one sequence): each query row j
 * attends to the P prefix keys and its own keys 0..j. The keys and values
 * of a (sequence, head) are laid out as one [P + T, hs] block, so the scores
 * and the weighted sum are the same sgemm reductions, in the same order, as
 * the whole sequence's in attention_fwd. Scratch: K, V blocks and scores. */
static void attention_cont(const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, int s, const float *q,
                           const float *k, const float *v, float *att)
{
    const int B = a->B, T = a->T, P = pre->T, D = m->cfg.dim, H = m->cfg.n_heads, hs = D / H;
    const int KVD = hs * m->cfg.n_kv_heads, rep = H / m->cfg.n_kv_heads, PT = P + T;
    const float scale = 1.0f / sqrtf((float)hs);
    const float *pk = pre->k + (size_t)s * pre->cap * KVD, *pv = pre->v + (size_t)s * pre->cap * KVD;
    const size_t need = (size_t)PT * hs * 2 + (size_t)T * PT;
    if (a->cscratch_n < need) {
        free(a->cscratch);
        a->cscratch = ds_malloc(need * sizeof(float));
        a->cscratch_n = need;
    }
    float *Kc = a->cscratch, *Vc = Kc + (size_t)PT * hs, *S = Vc + (size_t)PT * hs;
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < m->cfg.n_kv_heads; kh++) {
            for (int r = 0; r < PT; r++) {
                const float *ks = r < P ? pk + (size_t)r * KVD : k + ((size_t)b * T + r - P) * KVD;
                const float *vs = r < P ? pv + (size_t)r * KVD : v + ((size_t)b * T + r - P) * KVD;
                memcpy(Kc + (size_t)r * hs, ks + kh * hs, (size_t)hs * sizeof(float));
                memcpy(Vc + (size_t)r * hs, vs + kh * hs, (size_t)hs * sizeof(float));
            }
            for (int h = kh * rep; h < (kh + 1) * rep; h++) {
                const float *Q = q + (size_t)b * T * D + h * hs;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, PT, hs, scale, Q, D, Kc, hs, 0.0f, S, PT);
                softmax_causal(S, T, PT, P);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, PT, 1.0f, S, PT, Vc, hs, 0.0f,
                            att + (size_t)b * T * D + h * hs, D);
            }
        }
}

/* Decoder layer l0 + s of the model on the workspace's N = B * T rows, its
 * activations at index s; after the prefix in pre when pre is not NULL. */
static void layer_fwd(const ds_llama *m, ds_llama_act *a, int s, const ds_llama_act *pre)
{
    const ds_config *c = &m->cfg;
    const int D = c->dim, F = c->hidden_dim, H = c->n_heads, T = a->T, N = a->B * a->T;
    const int KVD = D / H * c->n_kv_heads, pos0 = pre ? pre->T : 0;
    const int64_t cap = a->cap;
    const int i0 = ds_llama_index(m->l0 + s, 0);
#define W(role) wm(m, a->wscratch, i0 + (role))
    const float *const *Wn = (const float *const *)m->w + i0; /* the norms (F32) */
    /* layer-local activations: at index s, or at 0 in a forward-only workspace */
    const int64_t ls = a->fwd_only ? 0 : s;
    float *x = xat(a, s, D), *xnext = xat(a, s + 1, D);
    float *xn1 = a->xn1 + ls * cap * D, *q = a->q + ls * cap * D, *k = a->k + s * cap * KVD, *v = a->v + s * cap * KVD,
          *att = a->att + ls * cap * D, *xmid = a->xmid + ls * cap * D, *xn2 = a->xn2 + ls * cap * D,
          *h1 = a->h1 + ls * cap * F, *h3 = a->h3 + ls * cap * F, *act = a->act + ls * cap * F;
    rmsnorm_fwd(xn1, a->rs1 + ls * cap, x, Wn[DS_LLAMA_ATTN_NORM], N, D, c->norm_eps);
    lin_fwd(q, xn1, W(DS_LLAMA_Q), N, D, D, 0);
    lin_fwd(k, xn1, W(DS_LLAMA_K), N, D, KVD, 0);
    lin_fwd(v, xn1, W(DS_LLAMA_V), N, D, KVD, 0);
    rope_apply(m, q, N, T, H, D, pos0, 0);
    rope_apply(m, k, N, T, c->n_kv_heads, KVD, pos0, 0);
    if (pre) attention_cont(m, a, pre, s, q, k, v, att);
    else attention_fwd(m, a, q, k, v, a->P + ls * a->max_b * H * a->max_t * a->max_t, att);
    par_copy(xmid, x, (int64_t)N * D);
    lin_fwd(xmid, att, W(DS_LLAMA_O), N, D, D, 1.0f);
    rmsnorm_fwd(xn2, a->rs2 + ls * cap, xmid, Wn[DS_LLAMA_FFN_NORM], N, D, c->norm_eps);
    lin_fwd(h1, xn2, W(DS_LLAMA_GATE), N, D, F, 0);
    lin_fwd(h3, xn2, W(DS_LLAMA_UP), N, D, F, 0);
    silu_mul(act, h1, h3, (int64_t)N * F);
    par_copy(xnext, xmid, (int64_t)N * D);
    lin_fwd(xnext, act, W(DS_LLAMA_DOWN), N, F, D, 1.0f);
#undef W
}

/* Embed tokens [B, T] (or copy x_in on a later stage) into the workspace. */
static void forward_input(const ds_llama *m, ds_llama_act *a, const int *tokens, const float *x_in, int B, int T,
                          const char *who)
{
    const ds_config *c = &m->cfg;
    if (B < 1 || T < 1 || B > a->max_b || T > a->max_t || T > c->max_seq_len)
        ds_die("%s: batch %dx%d exceeds the workspace %dx%d or max_seq_len %d", who, B, T, a->max_b, a->max_t,
               c->max_seq_len);
    const int D = c->dim, V = c->vocab_size, N = B * T;
    a->B = B;
    a->T = T;
    for (int n = 0; n < N; n++) {
        if (tokens[n] < 0 || tokens[n] >= V) ds_die("%s: token %d out of range [0, %d)", who, tokens[n], V);
        a->tokens[n] = tokens[n];
        if (m->l0 == 0) embed_row(m, tokens[n], a->x + (size_t)n * D);
    }
    if (m->l0 > 0) memcpy(a->x, x_in, (size_t)N * D * sizeof(float));
}

float *ds_llama_forward_stage(const ds_llama *m, ds_llama_act *a, const int *tokens, const float *x_in, int B, int T)
{
    const ds_config *c = &m->cfg;
    forward_input(m, a, tokens, x_in, B, T, "ds_llama_forward");
    a->cont = a->pos0 = 0;
    const int D = c->dim, V = c->vocab_size, N = B * T, Ls = m->l1 - m->l0, L = c->n_layers;
    for (int s = 0; s < Ls; s++) layer_fwd(m, a, s, NULL);
    if (m->l1 < L) return xat(a, Ls, D); /* the hidden states for the next stage */
    const int i_head = c->tied_embeddings ? 0 : 2 + DS_LLAMA_ROLES * L;
    rmsnorm_fwd(a->xf, a->rsf, xat(a, Ls, D), m->w[1 + DS_LLAMA_ROLES * L], N, D, c->norm_eps);
    lin_fwd(a->logits, a->xf, wm(m, a->wscratch, i_head), N, D, V, 0);
    return a->logits;
}

float *ds_llama_forward_rows(const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, const int *tokens, int B,
                             int T, const int *rows, int n_rows)
{
    if (m->l0 != 0 || m->l1 != m->cfg.n_layers) ds_die("ds_llama_forward_rows: a stage model (ds_llama_forward_rows_stage)");
    return ds_llama_forward_rows_stage(m, a, pre, tokens, NULL, B, T, rows, n_rows);
}

float *ds_llama_forward_rows_stage(const ds_llama *m, ds_llama_act *a, const ds_llama_act *pre, const int *tokens,
                                   const float *x_in, int B, int T, const int *rows, int n_rows)
{
    const ds_config *c = &m->cfg;
    if (pre && (pre->B != 1 || pre->pos0 != 0 || pre->T + T > c->max_seq_len))
        ds_die("ds_llama_forward_rows: the prefix must be the full forward of one sequence, %d + %d <= %d positions",
               pre->T, T, c->max_seq_len);
    forward_input(m, a, tokens, x_in, B, T, "ds_llama_forward_rows");
    a->cont = 1; /* attention probabilities not kept: no backward */
    a->pos0 = pre ? pre->T : 0;
    const int D = c->dim, V = c->vocab_size, L = c->n_layers, Ls = m->l1 - m->l0, N = B * T;
    for (int s = 0; s < Ls; s++) layer_fwd(m, a, s, pre);
    if (m->l1 < L) return xat(a, Ls, D); /* every row's hidden state, for the next stage */
    if (n_rows < 0 || n_rows > N) ds_die("ds_llama_forward_rows: %d rows of %d", n_rows, N);
    /* the scored rows gathered into layer 0's xn1 (not needed after the
     * forward; a forward-only workspace has no backward scratch) */
    const float *h = xat(a, Ls, D);
    float *g = a->xn1;
    for (int r = 0; r < n_rows; r++) {
        if (rows[r] < 0 || rows[r] >= N) ds_die("ds_llama_forward_rows: row %d of %d", rows[r], N);
        memcpy(g + (size_t)r * D, h + (size_t)rows[r] * D, (size_t)D * sizeof(float));
    }
    if (n_rows == 0) return a->logits;
    const int i_head = c->tied_embeddings ? 0 : 2 + DS_LLAMA_ROLES * L;
    rmsnorm_fwd(a->xf, a->rsf, g, m->w[1 + DS_LLAMA_ROLES * L], n_rows, D, c->norm_eps);
    lin_fwd(a->logits, a->xf, wm(m, a->wscratch, i_head), n_rows, D, V, 0);
    return a->logits;
}

double ds_llama_row_nll(const ds_llama_act *a, int row, int target)
{
    const float *z = a->logits + (size_t)row * a->V;
    if (row < 0 || row >= a->cap || target < 0 || target >= a->V)
        ds_die("ds_llama_row_nll: row %d target %d outside %lld x %d", row, target, (long long)a->cap, a->V);
    return (double)row_lse(z, a->V, NULL) - z[target];
}

/* ---- losses */

/* The rows dL/dlogits of the losses go to: a->dlogits, or NULL in a
 * forward-only workspace, where a gradient (grad_scale != 0) stops the
 * program. */
static float *grad_rows(ds_llama_act *a, float grad_scale)
{
    if (grad_scale != 0 && !a->dlogits) ds_die("ds_llama_loss: a gradient in a forward-only workspace");
    return a->dlogits;
}

double ds_llama_loss_ce(ds_llama_act *a, const int *targets, float grad_scale, int64_t *count)
{
    float *const dz = grad_rows(a, grad_scale);
    const int N = a->B * a->T, V = a->V;
    double loss = 0;
    int64_t cnt = 0;
    for (int n = 0; n < N; n++) {
        const float *z = a->logits + (size_t)n * V;
        float *d = dz ? dz + (size_t)n * V : NULL;
        const int t = targets[n];
        if (t < 0 || t >= V) { /* not counted: no gradient from this position */
            if (grad_scale != 0) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float lse = row_lse(z, V, grad_scale != 0 ? d : NULL);
        loss += (double)lse - z[t];
        cnt++;
        if (grad_scale != 0) {
            d[t] -= 1.0f;
            for (int j = 0; j < V; j++) d[j] *= grad_scale;
        }
    }
    if (count) *count = cnt;
    return loss;
}

double ds_llama_loss_kl(ds_llama_act *a, const float *ref_logits, const unsigned char *mask, float grad_scale,
                        int64_t *count)
{
    float *const dz = grad_rows(a, grad_scale);
    const int N = a->B * a->T, V = a->V;
    double loss = 0;
    int64_t cnt = 0;
    for (int n = 0; n < N; n++) {
        const float *z = a->logits + (size_t)n * V, *r = ref_logits + (size_t)n * V;
        float *d = dz ? dz + (size_t)n * V : NULL;
        if (mask && !mask[n]) {
            if (grad_scale != 0) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float lse = row_lse(z, V, d); /* d = p */
        const float rlse = row_lse(r, V, NULL);
        double kl = 0;
        for (int j = 0; j < V; j++) {
            const float lpr = r[j] - rlse, pr = expf(lpr);
            kl += (double)pr * ((double)lpr - ((double)z[j] - lse));
            if (d) d[j] = grad_scale * (d[j] - pr); /* dKL/dz = p - p_ref */
        }
        loss += kl;
        cnt++;
    }
    if (count) *count = cnt;
    return loss;
}

double ds_llama_loss_mse(ds_llama_act *a, const float *ref_logits, const unsigned char *mask, float grad_scale,
                         int64_t *count)
{
    float *const dz = grad_rows(a, grad_scale);
    const int N = a->B * a->T, V = a->V;
    double loss = 0;
    int64_t cnt = 0;
    const float g = 2.0f * grad_scale / V;
    for (int n = 0; n < N; n++) {
        const float *z = a->logits + (size_t)n * V, *r = ref_logits + (size_t)n * V;
        float *d = dz ? dz + (size_t)n * V : NULL;
        if (mask && !mask[n]) {
            if (grad_scale != 0) memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        double s = 0;
        for (int j = 0; j < V; j++) {
            const float e = z[j] - r[j];
            s += (double)e * e;
            if (d) d[j] = g * e;
        }
        loss += s / V;
        cnt++;
    }
    if (count) *count = cnt;
    return loss;
}

/* ---- gradients */

void ds_llama_grads_init(ds_llama_grads *g, const ds_llama *m, const unsigned char *want)
{
    memset(g, 0, sizeof *g);
    g->n_tensors = m->n_tensors;
    g->numel = m->numel;
    g->data = ds_calloc((size_t)m->numel, sizeof(float));
    g->g = ds_calloc((size_t)m->n_tensors, sizeof *g->g);
    for (int i = 0; i < m->n_tensors; i++)
        if ((!want || want[i]) && m->p[i]) g->g[i] = g->data + m->offset[i];
}

void ds_llama_grads_init_hook(ds_llama_grads *g, const ds_llama *m, const unsigned char *want,
                              const unsigned char *hooked, ds_llama_wgrad_hook hook, void *arg)
{
    memset(g, 0, sizeof *g);
    g->n_tensors = m->n_tensors;
    g->g = ds_calloc((size_t)m->n_tensors, sizeof *g->g);
    g->hooked = ds_calloc((size_t)m->n_tensors, 1);
    g->hook = hook;
    g->hook_arg = arg;
    for (int i = 0; i < m->n_tensors; i++) {
        if (!m->p[i]) continue; /* another stage's */
        if (hooked && hooked[i]) {
            if (i == 0 || m->tinfo[i].ndim != 2) ds_die("ds_llama_grads_init_hook: tensor %d cannot be hooked", i);
            g->hooked[i] = 1;
        } else if (want && want[i]) {
            g->numel += ds_tinfo_numel(&m->tinfo[i]);
        }
    }
    g->data = ds_calloc((size_t)(g->numel ? g->numel : 1), sizeof(float));
    for (int64_t i = 0, off = 0; i < m->n_tensors; i++)
        if (m->p[i] && !g->hooked[i] && want && want[i]) {
            g->g[i] = g->data + off;
            off += ds_tinfo_numel(&m->tinfo[i]);
        }
}

void ds_llama_grads_zero(ds_llama_grads *g) { memset(g->data, 0, (size_t)g->numel * sizeof(float)); }

void ds_llama_grads_free(ds_llama_grads *g)
{
    free(g->data);
    free(g->g);
    free(g->hooked);
    memset(g, 0, sizeof *g);
}

/* Backward of attention_fwd: datt -> dq, dk, dv (all w.r.t. the rotated
 * q and k). dk and dv are accumulated over the query heads of a group. */
static void attention_bwd(const ds_llama *m, ds_llama_act *a, const float *q, const float *k, const float *v,
                          const float *P, const float *datt, float *dq, float *dk, float *dv)
{
    const int B = a->B, T = a->T, D = m->cfg.dim, H = m->cfg.n_heads, hs = D / H;
    const int KVD = hs * m->cfg.n_kv_heads, rep = H / m->cfg.n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hs);
    float *dS = a->dP;
    memset(dk, 0, (size_t)B * T * KVD * sizeof(float));
    memset(dv, 0, (size_t)B * T * KVD * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const size_t qo = (size_t)b * T * D + h * hs, ko = (size_t)b * T * KVD + (h / rep) * hs;
            const float *S = P + ((size_t)b * H + h) * T * T;
            /* dP = dO V^T, dV += P^T dO */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, datt + qo, D, v + ko, KVD, 0.0f,
                        dS, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, S, T, datt + qo, D, 1.0f, dv + ko,
                        KVD);
            /* softmax backward: dS = P * (dP - rowsum(P * dP)) * scale */
            for (int i = 0; i < T; i++) {
                const float *pr = S + (size_t)i * T;
                float *dr = dS + (size_t)i * T, dot = 0;
                for (int j = 0; j <= i; j++) dot += pr[j] * dr[j];
                for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
                for (int j = i + 1; j < T; j++) dr[j] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, dS, T, k + ko, KVD, 0.0f,
                        dq + qo, D);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, dS, T, q + qo, D, 1.0f, dk + ko,
                        KVD);
        }
}

/* The weight gradient of linear tensor i from dy [N, out] and x [N, in]:
 * to the hook when g hooks it, else dW += dy^T x when g asks for it. */
static void wgrad(ds_llama_grads *g, int i, const float *dy, const float *x, int N, int in, int out)
{
    if (g->hooked && g->hooked[i]) g->hook(g->hook_arg, i, dy, x, N, in, out);
    else if (g->g[i]) lin_bwd_w(g->g[i], dy, x, N, in, out);
}

void ds_llama_backward(const ds_llama *m, ds_llama_act *a, ds_llama_grads *g)
{
    if (m->l0 != 0 || m->l1 != m->cfg.n_layers) ds_die("ds_llama_backward: a stage model (ds_llama_backward_stage)");
    ds_llama_backward_stage(m, a, g, NULL);
}

float *ds_llama_backward_stage(const ds_llama *m, ds_llama_act *a, ds_llama_grads *g, const float *dx_out)
{
    if (a->cont) ds_die("ds_llama_backward: the last forward was ds_llama_forward_rows (forward only)");
    if (a->fwd_only) ds_die("ds_llama_backward: a forward-only workspace (ds_llama_act_new_fwd)");
    const ds_config *c = &m->cfg;
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, H = c->n_heads;
    const int KVD = D / H * c->n_kv_heads, N = a->B * a->T, T = a->T, l0 = m->l0, Ls = m->l1 - m->l0;
    const int64_t cap = a->cap;
    const int i_norm = 1 + DS_LLAMA_ROLES * L, i_head = c->tied_embeddings ? 0 : i_norm + 1;
    float *dx = a->dx, *dxn = a->dxn;

    if (m->l1 == L) {
        wgrad(g, i_head, a->dlogits, a->xf, N, D, V);
        lin_bwd_x(dxn, a->dlogits, wm(m, a->wscratch, i_head), N, D, V, 0);
        memset(dx, 0, (size_t)N * D * sizeof(float));
        rmsnorm_bwd(dx, g->g[i_norm], dxn, a->x + Ls * cap * D, m->w[i_norm], a->rsf, N, D);
    } else {
        memcpy(dx, dx_out, (size_t)N * D * sizeof(float));
    }

    for (int s = Ls - 1; s >= 0; s--) {
        const int l = s, i0 = ds_llama_index(l0 + s, 0); /* activations at index s */
#define W(role) wm(m, a->wscratch, i0 + (role))
        const float *const *Wn = (const float *const *)m->w + i0; /* the norms (F32) */
        float *const *G = g->g + i0;
        const float *x = a->x + l * cap * D, *xn1 = a->xn1 + l * cap * D, *q = a->q + l * cap * D,
                    *k = a->k + l * cap * KVD, *v = a->v + l * cap * KVD, *att = a->att + l * cap * D,
                    *xmid = a->xmid + l * cap * D, *xn2 = a->xn2 + l * cap * D, *h1 = a->h1 + l * cap * F,
                    *h3 = a->h3 + l * cap * F, *act = a->act + l * cap * F;
        const float *P = a->P + (int64_t)l * a->max_b * H * a->max_t * a->max_t;

        /* FFN: x' = xmid + down(silu(gate xn2) * up xn2) */
        wgrad(g, i0 + DS_LLAMA_DOWN, dx, act, N, F, D);
        lin_bwd_x(a->dh1, dx, W(DS_LLAMA_DOWN), N, F, D, 0);
        for (int64_t i = 0; i < (int64_t)N * F; i++) {
            const float da = a->dh1[i], s = 1.0f / (1.0f + ds_expf1(-h1[i]));
            a->dh3[i] = da * h1[i] * s;
            a->dh1[i] = da * h3[i] * s * (1.0f + h1[i] * (1.0f - s));
        }
        wgrad(g, i0 + DS_LLAMA_GATE, a->dh1, xn2, N, D, F);
        wgrad(g, i0 + DS_LLAMA_UP, a->dh3, xn2, N, D, F);
        lin_bwd_x(dxn, a->dh1, W(DS_LLAMA_GATE), N, D, F, 0);
        lin_bwd_x(dxn, a->dh3, W(DS_LLAMA_UP), N, D, F, 1.0f);
        rmsnorm_bwd(dx, G[DS_LLAMA_FFN_NORM], dxn, xmid, Wn[DS_LLAMA_FFN_NORM], a->rs2 + l * cap, N, D);

        /* attention: xmid = x + o(attn(rope(q xn1), rope(k xn1), v xn1)) */
        wgrad(g, i0 + DS_LLAMA_O, dx, att, N, D, D);
        lin_bwd_x(a->datt, dx, W(DS_LLAMA_O), N, D, D, 0);
        attention_bwd(m, a, q, k, v, P, a->datt, a->dq, a->dk, a->dv);
        rope_apply(m, a->dq, N, T, H, D, 0, 1);
        rope_apply(m, a->dk, N, T, c->n_kv_heads, KVD, 0, 1);
        wgrad(g, i0 + DS_LLAMA_Q, a->dq, xn1, N, D, D);
        wgrad(g, i0 + DS_LLAMA_K, a->dk, xn1, N, D, KVD);
        wgrad(g, i0 + DS_LLAMA_V, a->dv, xn1, N, D, KVD);
        lin_bwd_x(dxn, a->dq, W(DS_LLAMA_Q), N, D, D, 0);
        lin_bwd_x(dxn, a->dk, W(DS_LLAMA_K), N, D, KVD, 1.0f);
        lin_bwd_x(dxn, a->dv, W(DS_LLAMA_V), N, D, KVD, 1.0f);
        rmsnorm_bwd(dx, G[DS_LLAMA_ATTN_NORM], dxn, x, Wn[DS_LLAMA_ATTN_NORM], a->rs1 + l * cap, N, D);
#undef W
    }
    if (l0 > 0) return dx; /* dL/d(input hidden states) for the previous stage */
    if (g->g[0])
        for (int n = 0; n < N; n++) {
            float *row = g->g[0] + (size_t)a->tokens[n] * D;
            const float *d = dx + (size_t)n * D;
            for (int j = 0; j < D; j++) row[j] += d[j];
        }
    return NULL;
}

/* ---- KV-cached generation */

int ds_llama_kv_init(ds_llama_kv *kv, const ds_llama *m, int max_t)
{
    const ds_config *c = &m->cfg;
    if (max_t < 1 || max_t > c->max_seq_len)
        return ds_err(DS_EXIT_USAGE, "KV cache of %d positions: the model allows 1..%d", max_t, c->max_seq_len);
    const size_t D = c->dim, KVD = D / c->n_heads * c->n_kv_heads, F = c->hidden_dim;
    const size_t Ls = (size_t)(m->l1 - m->l0); /* a stage caches its own layers */
    kv->max_t = max_t;
    kv->k = ds_malloc(Ls * max_t * KVD * sizeof(float));
    kv->v = ds_malloc(Ls * max_t * KVD * sizeof(float));
    kv->x = ds_malloc(D * sizeof(float));
    kv->xn = ds_malloc(D * sizeof(float));
    kv->q = ds_malloc(D * sizeof(float));
    kv->att = ds_malloc(D * sizeof(float));
    kv->h1 = ds_malloc(F * sizeof(float));
    kv->h3 = ds_malloc(F * sizeof(float));
    kv->scores = ds_malloc((size_t)max_t * sizeof(float));
    kv->logits = ds_malloc((size_t)c->vocab_size * sizeof(float));
    return 0;
}

void ds_llama_kv_free(ds_llama_kv *kv)
{
    float *bufs[] = {kv->k, kv->v, kv->x, kv->xn, kv->q, kv->att, kv->h1, kv->h3, kv->scores, kv->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(kv, 0, sizeof *kv);
}

/* y[out] (+)= W[out, in] x[in], W tensor i of m */
static void matvec(float *y, const ds_llama *m, int i, const float *x, int in, int out, float beta)
{
    if (m->code && m->code[i]) ds_die("the one-token product of a coded tensor (%s) is not implemented", m->tinfo[i].name);
    ds_gemv_w(wdt(m, i), (size_t)in, (size_t)out, m->p[i], x, beta, y);
}

float *ds_llama_step(const ds_llama *m, ds_llama_kv *kv, int token, int pos)
{
    if (m->l0 != 0 || m->l1 != m->cfg.n_layers) ds_die("ds_llama_step: a stage model (ds_llama_step_stage)");
    return ds_llama_step_stage(m, kv, token, NULL, pos);
}

float *ds_llama_step_stage(const ds_llama *m, ds_llama_kv *kv, int token, const float *x_in, int pos)
{
    const ds_config *c = &m->cfg;
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, H = c->n_heads;
    const int hs = D / H, KVD = hs * c->n_kv_heads, rep = H / c->n_kv_heads;
    if (pos < 0 || pos >= kv->max_t || token < 0 || token >= V)
        ds_die("ds_llama_step: token %d at position %d outside vocab %d / cache %d", token, pos, V, kv->max_t);
    const float scale = 1.0f / sqrtf((float)hs);
    if (m->l0 == 0) embed_row(m, token, kv->x);
    else memcpy(kv->x, x_in, (size_t)D * sizeof(float));
    for (int l = m->l0; l < m->l1; l++) {
        const int i0 = ds_llama_index(l, 0);
        const float *const *W = (const float *const *)m->w + i0; /* the norms (F32) */
        const size_t ls = (size_t)(l - m->l0); /* this stage's cache index */
        float *kc = kv->k + ls * kv->max_t * KVD, *vc = kv->v + ls * kv->max_t * KVD;
        rmsnorm_fwd(kv->xn, NULL, kv->x, W[DS_LLAMA_ATTN_NORM], 1, D, c->norm_eps);
        matvec(kv->q, m, i0 + DS_LLAMA_Q, kv->xn, D, D, 0);
        matvec(kc + (size_t)pos * KVD, m, i0 + DS_LLAMA_K, kv->xn, D, KVD, 0);
        matvec(vc + (size_t)pos * KVD, m, i0 + DS_LLAMA_V, kv->xn, D, KVD, 0);
        rope_apply(m, kv->q, 1, 0, H, D, pos, 0);
        rope_apply(m, kc + (size_t)pos * KVD, 1, 0, c->n_kv_heads, KVD, pos, 0);
        for (int h = 0; h < H; h++) {
            const int ko = (h / rep) * hs;
            float *s = kv->scores;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, pos + 1, hs, scale, kc + ko, KVD, kv->q + h * hs, 1, 0.0f, s,
                        1);
            const float sum = ds_v4_exp_sub_sum(s, pos + 1, ds_v4_max(s, pos + 1));
            cblas_sgemv(CblasRowMajor, CblasTrans, pos + 1, hs, 1.0f / sum, vc + ko, KVD, s, 1, 0.0f,
                        kv->att + h * hs, 1);
        }
        matvec(kv->x, m, i0 + DS_LLAMA_O, kv->att, D, D, 1.0f);
        rmsnorm_fwd(kv->xn, NULL, kv->x, W[DS_LLAMA_FFN_NORM], 1, D, c->norm_eps);
        matvec(kv->h1, m, i0 + DS_LLAMA_GATE, kv->xn, D, F, 0);
        matvec(kv->h3, m, i0 + DS_LLAMA_UP, kv->xn, D, F, 0);
        silu_mul(kv->h1, kv->h1, kv->h3, F);
        matvec(kv->x, m, i0 + DS_LLAMA_DOWN, kv->h1, F, D, 1.0f);
    }
    if (m->l1 < L) return kv->x; /* the hidden state for the next stage */
    rmsnorm_fwd(kv->xn, NULL, kv->x, m->w[1 + DS_LLAMA_ROLES * L], 1, D, c->norm_eps);
    matvec(kv->logits, m, c->tied_embeddings ? 0 : 2 + DS_LLAMA_ROLES * L, kv->xn, D, V, 0);
    return kv->logits;
}

/* ---- AdamW */

void ds_adamw_init(ds_adamw *o, const ds_llama *m, float lr, float weight_decay)
{
    o->lr = lr;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = weight_decay;
    o->t = 0;
    o->m = ds_calloc((size_t)m->numel, sizeof(float));
    o->v = ds_calloc((size_t)m->numel, sizeof(float));
}

void ds_adamw_step(ds_adamw *o, ds_llama *m, const ds_llama_grads *g)
{
    if (!m->all_f32) ds_die("ds_adamw_step: the model has f16/bf16 weights (AdamW updates f32 weights)");
    o->t++;
    const float b1 = o->beta1, b2 = o->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)o->t)), c2 = 1.0f / (1.0f - powf(b2, (float)o->t));
    const float lr = o->lr, wd = o->weight_decay, eps = o->eps;
    float *w = m->data, *mm = o->m, *vv = o->v;
    const float *gr = g->data;
    for (int64_t i = 0; i < m->numel; i++) {
        mm[i] = b1 * mm[i] + (1.0f - b1) * gr[i];
        vv[i] = b2 * vv[i] + (1.0f - b2) * gr[i] * gr[i];
        w[i] -= lr * (mm[i] * c1 / (sqrtf(vv[i] * c2) + eps) + wd * w[i]);
    }
}

void ds_adamw_free(ds_adamw *o)
{
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}
