/* Checkpoint loading and saving for the engine, threads per rank, and
 * data-parallel perplexity (io/model_io.h). */
#include "config.h"
#include "io/model_io.h"
#include <stdio.h>
#include <cblas.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "src/membudget.h"
#include "src/shard.h"

int ds_llama_load(ds_llama *m, ds_model_file *f) { return ds_llama_load_as(m, f, DS_LLAMA_LOAD_F32); }

int ds_llama_load_as(ds_llama *m, ds_model_file *f, ds_llama_load_prec prec)
{
    return ds_llama_load_stage(m, f, prec, 0, ds_model_get_meta(f)->cfg.n_layers);
}

/* stored == &all_stored: every tensor as stored */
static const unsigned char all_stored = 1;

int ds_llama_load_stage(ds_llama *m, ds_model_file *f, ds_llama_load_prec prec, int l0, int l1)
{
    return ds_llama_load_stage_mask(m, f, prec == DS_LLAMA_LOAD_STORED ? &all_stored : NULL, l0, l1);
}

int ds_llama_load_stage_mask(ds_llama *m, ds_model_file *f, const unsigned char *stored, int l0, int l1)
{
    const ds_model_meta *meta = ds_model_get_meta(f);
    const char *path = ds_model_path(f);
    ds_dtype *dt = NULL;
    if (stored) {
        /* the stored dtype of each tensor the engine will ask for */
        ds_tinfo *ti;
        int n = ds_llama_tensors(&meta->cfg, &ti);
        if (n < 0) return ds_err(-n, "%s: %s", path, ds_errmsg());
        dt = ds_malloc((size_t)n * sizeof *dt);
        for (int i = 0; i < n; i++) {
            int j = ds_model_find(f, ti[i].name);
            dt[i] = j < 0 || !(stored == &all_stored || stored[i]) ? DS_DTYPE_F32 : meta->tensors[j].dtype;
        }
        free(ti);
    }
    int rc = ds_llama_init_stage(m, &meta->cfg, dt, l0, l1);
    free(dt);
    if (rc) return ds_err(rc, "%s: %s", path, ds_errmsg());
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const ds_tinfo *t = &m->tinfo[i];
        int j = ds_model_find(f, t->name);
        char want[64], got[64];
        if (j < 0) {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s is missing", path, t->name);
        } else if (meta->tensors[j].ndim != t->ndim || ds_tinfo_numel(&meta->tensors[j]) != ds_tinfo_numel(t) ||
                   meta->tensors[j].shape[0] != t->shape[0]) {
            rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s has shape %s, the config needs %s", path, t->name,
                        ds_shape_str(&meta->tensors[j], got, sizeof got), ds_shape_str(t, want, sizeof want));
        } else if (!m->p[i]) {
            continue; /* another stage's */
        } else if (!(rc = ds_model_read_tensor(f, t->name, t->dtype, m->p[i]))) {
            int64_t bad = ds_find_nonfinite(t->dtype, m->p[i], (size_t)ds_tinfo_numel(t));
            if (bad >= 0)
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: non-finite value at element %lld", path, t->name,
                            (long long)bad);
        }
    }
    if (rc) ds_llama_free(m);
    return rc;
}

int ds_llama_load_path(const ds_ctx *ctx, const char *path, ds_llama *m, ds_tokenizer *tok, ds_dtype **dtypes)
{
    return ds_llama_load_path_as(ctx, path, m, tok, dtypes, DS_LLAMA_LOAD_F32);
}

/* The stored bytes of each decoder layer, of the embeddings (first stage)
 * and of the final norm and head (last stage; a tied model's head is the
 * embeddings), from the checkpoint's tensor list. */
static int stage_bytes(ds_model_file *f, double **layer, double *first, double *last)
{
    const ds_model_meta *meta = ds_model_get_meta(f);
    const int L = meta->cfg.n_layers;
    ds_tinfo *ti;
    int n = ds_llama_tensors(&meta->cfg, &ti);
    if (n < 0) return ds_err(-n, "%s: %s", ds_model_path(f), ds_errmsg());
    *layer = ds_calloc((size_t)L, sizeof **layer);
    *first = *last = 0;
    for (int i = 0; i < n; i++) {
        int j = ds_model_find(f, ti[i].name);
        double b = j < 0 ? 0 : (double)ds_tinfo_bytes(&meta->tensors[j]);
        if (i == 0) *first += b, *last += meta->cfg.tied_embeddings ? b : 0;
        else if (i > DS_LLAMA_ROLES * L) *last += b;
        else (*layer)[(i - 1) / DS_LLAMA_ROLES] += b;
    }
    free(ti);
    return 0;
}

/* What a rank keeps beside its weights: activations and the program (the
 * issue's bound: weights / P + activations + 1 GB). */
#define DS_RANK_OVERHEAD (1024.0 * 1024.0 * 1024.0)

/* Collective: the stages per group. *P given (> 0): checked against the
 * ranks' memory; 0 (auto): the fewest stages, among those that divide the
 * ranks, whose largest stage fits. The hint names --pipeline. */
static int pipe_fit(const ds_ctx *ctx, const char *path, int L, const double *lb, double first, double last, int *P)
{
    const double budget = ds_mem_rank_budget(ctx), gib = 1024.0 * 1024.0 * 1024.0;
    int *bounds = ds_malloc(sizeof(int) * (size_t)(L + 2)), rc = 0, max_p = 1;
    for (int p = 1; p <= L && p <= ctx->size; p++)
        if (ctx->size % p == 0) max_p = p;
    if (*P == 0) {
        for (int p = 1; p <= max_p && !*P; p++)
            if (ctx->size % p == 0 && ds_pipe_partition(L, lb, first, last, p, bounds) + DS_RANK_OVERHEAD <= budget)
                *P = p;
        if (!*P) {
            double need = ds_pipe_partition(L, lb, first, last, max_p, bounds);
            rc = ds_err(DS_EXIT_INPUT,
                        "%s: the largest of %d stages (--pipeline %d, the most these %d rank(s) allow) needs %.1f GiB "
                        "of weights + %.1f GiB, more than a rank's %.1f GiB: run more ranks",
                        path, max_p, max_p, ctx->size, need / gib, DS_RANK_OVERHEAD / gib, budget / gib);
        }
    }
    rc = ds_ctx_agree(ctx, rc);
    if (!rc) { /* (collective: prints its own message) */
        char hint[160];
        snprintf(hint, sizeof hint, " (--pipeline %d: more stages hold fewer layers each; run more ranks)", *P);
        rc = ds_mem_check(ctx, ds_pipe_partition(L, lb, first, last, *P, bounds) + DS_RANK_OVERHEAD, path,
                          *P < max_p ? hint : " (run more ranks to use more pipeline stages)");
    }
    free(bounds);
    return rc;
}

/* Collective: the whole model in its stored precision fits a rank. */
static int whole_fits(const ds_ctx *ctx, ds_model_file *f)
{
    double *lb = NULL, first = 0, last = 0, total;
    const int L = ds_model_get_meta(f)->cfg.n_layers;
    int rc = stage_bytes(f, &lb, &first, &last);
    if (rc) return ds_ctx_agree(ctx, rc);
    total = first + last - (ds_model_get_meta(f)->cfg.tied_embeddings ? first : 0); /* tied: one embedding */
    for (int l = 0; l < L; l++) total += lb[l];
    free(lb);
    return ds_mem_check(ctx, total + DS_RANK_OVERHEAD, ds_model_path(f),
                        " (eval and generate --pipeline P hold 1/P of the layers per rank)");
}

/* ds_llama_load_path_as, and ds_llama_load_path_pipe when pipe is given. */
static int load_path(const ds_ctx *ctx, const char *path, ds_llama *m, ds_tokenizer *tok, ds_dtype **dtypes,
                     ds_llama_load_prec prec, int P, ds_pipe *pipe)
{
    ds_model_file *f;
    memset(m, 0, sizeof *m);
    if (dtypes) *dtypes = NULL;
    int rc = ds_model_open(path, ctx->comm, &f);
    if (rc) return rc;
    int have_tok = 0, L = ds_model_get_meta(f)->cfg.n_layers;
    if (pipe) {
        double *lb = NULL, first = 0, last = 0;
        if (P < 0 || (P > 0 && ctx->size % P))
            rc = ds_err(DS_EXIT_USAGE, "--pipeline %d: the %d rank(s) do not split into groups of %d", P, ctx->size, P);
        else if (P > L)
            rc = ds_err(DS_EXIT_USAGE, "--pipeline %d: %s has %d layers, at most one stage per layer", P, path, L);
        else
            rc = stage_bytes(f, &lb, &first, &last);
        if (!(rc = ds_ctx_agree(ctx, rc))) rc = pipe_fit(ctx, path, L, lb, first, last, &P);
        if (!rc) ds_pipe_init(pipe, ctx->comm, P, L, lb, first, last);
        free(lb);
        if (rc) {
            ds_model_close(f);
            return rc;
        }
        rc = ds_llama_load_stage(m, f, prec, pipe->l0, pipe->l1);
    } else {
        if (prec == DS_LLAMA_LOAD_STORED && (rc = whole_fits(ctx, f))) { /* (said: collective) */
            ds_model_close(f);
            return rc;
        }
        rc = ds_llama_load_as(m, f, prec);
    }
    if (!rc && tok) {
        if (!ds_model_get_meta(f)->has_tokenizer)
            rc = ds_err(DS_EXIT_INPUT, "%s: no tokenizer in the checkpoint (import it with --tokenizer)", path);
        else
            have_tok = !(rc = ds_model_read_tokenizer(f, tok));
    }
    if (!rc && dtypes) {
        *dtypes = ds_malloc((size_t)m->n_tensors * sizeof **dtypes);
        for (int i = 0; i < m->n_tensors; i++)
            (*dtypes)[i] = ds_model_get_meta(f)->tensors[ds_model_find(f, m->tinfo[i].name)].dtype;
    }
    rc = ds_ctx_agree(ctx, rc);
    ds_model_close(f);
    if (rc) {
        if (m->data) ds_llama_free(m);
        if (have_tok) ds_tokenizer_free(tok);
        if (dtypes) {
            free(*dtypes);
            *dtypes = NULL;
        }
        if (pipe) ds_pipe_free(pipe);
    }
    return rc;
}

int ds_llama_load_path_as(const ds_ctx *ctx, const char *path, ds_llama *m, ds_tokenizer *tok, ds_dtype **dtypes,
                          ds_llama_load_prec prec)
{
    return load_path(ctx, path, m, tok, dtypes, prec, 1, NULL);
}

int ds_llama_load_path_pipe(const ds_ctx *ctx, const char *path, int P, ds_pipe *pipe, ds_llama *m, ds_tokenizer *tok)
{
    return load_path(ctx, path, m, tok, NULL, DS_LLAMA_LOAD_STORED, P, pipe);
}

int ds_llama_load_path_stage(const ds_ctx *ctx, const char *path, const ds_pipe *pipe, ds_llama *m)
{
    ds_model_file *f;
    memset(m, 0, sizeof *m);
    int rc = ds_model_open(path, ctx->comm, &f);
    if (rc) return rc;
    const int L = ds_model_get_meta(f)->cfg.n_layers, want = pipe->bounds[pipe->P];
    if (L != want)
        rc = ds_err(DS_EXIT_INPUT, "%s: %d layers, but the pipeline's stages split %d (--pipeline %d needs models "
                                   "of the same depth)", path, L, want, pipe->P);
    else
        rc = ds_llama_load_stage(m, f, DS_LLAMA_LOAD_STORED, pipe->l0, pipe->l1);
    rc = ds_ctx_agree(ctx, rc);
    ds_model_close(f);
    if (rc && m->data) ds_llama_free(m);
    return rc;
}

int ds_llama_save(const ds_llama *m, const ds_ctx *ctx, const char *path, const ds_dtype *dtypes,
                  const ds_tokenizer *tok, int overwrite)
{
    return ds_llama_save_attrs(m, ctx, path, dtypes, tok, overwrite, NULL, NULL);
}

int ds_llama_save_attrs(const ds_llama *m, const ds_ctx *ctx, const char *path, const ds_dtype *dtypes,
                        const ds_tokenizer *tok, int overwrite, int (*attrs)(struct ds_model_file *f, const void *arg),
                        const void *arg)
{
    const int n = m->n_tensors;
    ds_tinfo *ti = ds_malloc((size_t)n * sizeof *ti);
    int64_t *sizes = ds_malloc((size_t)n * sizeof *sizes);
    int *owner = ds_malloc((size_t)n * sizeof *owner);
    for (int i = 0; i < n; i++) {
        ti[i] = m->tinfo[i];
        ti[i].dtype = dtypes ? dtypes[i] : DS_DTYPE_F32;
        sizes[i] = (int64_t)ds_tinfo_bytes(&ti[i]);
    }
    ds_shard_by_size(n, sizes, ctx->size, owner);
    ds_model_file *f;
    int rc = ds_model_create(path, ctx->comm, &m->cfg, n, ti, tok, overwrite, &f);
    if (!rc) {
        if (attrs) rc = attrs(f, arg);
        for (int i = 0; i < n && !rc; i++)
            if (owner[i] == ctx->rank) rc = ds_model_write_tensor(f, ti[i].name, m->tinfo[i].dtype, m->p[i]);
        rc = ds_model_commit(f, rc, NULL);
    }
    free(ti);
    free(sizes);
    free(owner);
    return rc;
}

void ds_llama_threads_auto(const ds_ctx *ctx)
{
    MPI_Comm node;
    int local = 1;
    MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    cpu_set_t set;
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* Ranks bound to a core each see one CPU; unbound ranks share the node. */
    int total = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < total ? cpus : total / local;
    ds_llama_set_threads(n < 1 ? 1 : n);
    /* OpenBLAS 0.3.21 takes CPUs it does not recognise (e.g. virtual Xeons)
     * for a Prescott and runs 3-4x slower; deltasoup re-executes itself with
     * Haswell kernels (src/main.c), so this warns only where that failed. */
    if (ctx->rank == 0 && !ctx->quiet && !getenv("OPENBLAS_CORETYPE") &&
        strcmp(openblas_get_corename(), "Prescott") == 0 && __builtin_cpu_supports("avx2"))
        fprintf(stderr, "deltasoup %s: warning: OpenBLAS chose its slow Prescott kernels on this AVX2 CPU; "
                        "export OPENBLAS_CORETYPE=Haswell (or SkylakeX with AVX-512)\n", ctx->job);
}

/* ---- perplexity through a pipeline: the groups share out the documents,
 * each document is one micro-batch through the group's stages */
typedef struct {
    const ds_llama *m;
    ds_llama_act *a;
    const ds_text_docs *docs;
    ds_tokenizer *tok;
    int seq_len, nd;
    const int *mb_doc;  /* micro-batch -> document */
    int *ids;           /* scratch: a document's tokens */
    float *ring[DS_PIPE_DEPTH]; /* outputs in flight */
    double *acc;        /* [0, nd) NLL sums, [nd, 2nd) predicted tokens (last stage) */
} ppl_stage;

/* The tokens of document d, cut at seq_len (the same on every stage). */
static int doc_ids(ppl_stage *s, int d)
{
    int n = ds_tokenizer_encode(s->tok, s->docs->docs[d], 1, 0, s->ids);
    return n > s->seq_len ? s->seq_len : n;
}

static float *ppl_forward(void *arg, int mb, const float *in, int64_t n_in, int64_t *n_out)
{
    ppl_stage *s = arg;
    const int d = s->mb_doc[mb], n = doc_ids(s, d), D = s->m->cfg.dim;
    const float *h = ds_llama_forward_stage(s->m, s->a, s->ids, in, 1, n);
    if (s->m->l1 < s->m->cfg.n_layers) {
        float *out = s->ring[mb % DS_PIPE_DEPTH];
        memcpy(out, h, sizeof(float) * (size_t)n * D);
        *n_out = (int64_t)n * D;
        return out;
    }
    s->ids[n] = -1; /* the last position predicts nothing */
    int64_t cnt;
    s->acc[d] = ds_llama_loss_ce(s->a, s->ids + 1, 0.0f, &cnt);
    s->acc[s->nd + d] = (double)cnt;
    *n_out = 0;
    return NULL;
}

int ds_llama_ppl_pipe(const ds_ctx *ctx, const ds_pipe *p, const ds_llama *m, ds_tokenizer *tok,
                      const ds_text_docs *docs, int seq_len, ds_ppl_result *out)
{
    const int nd = docs->n;
    int64_t *sizes = ds_malloc((size_t)nd * sizeof *sizes);
    int *owner = ds_malloc((size_t)nd * sizeof *owner), *mb_doc = ds_malloc((size_t)(nd ? nd : 1) * sizeof *mb_doc);
    size_t longest = 0;
    for (int d = 0; d < nd; d++) {
        size_t len = strlen(docs->docs[d]);
        sizes[d] = (int64_t)(len < (size_t)seq_len * 8 ? len : (size_t)seq_len * 8);
        longest = len > longest ? len : longest;
    }
    ds_shard_by_size(nd, sizes, p->groups, owner); /* documents per group */
    ppl_stage s = {.m = m, .docs = docs, .tok = tok, .seq_len = seq_len, .nd = nd, .mb_doc = mb_doc};
    s.ids = ds_malloc((longest + 3) * sizeof *s.ids);
    s.acc = ds_calloc((size_t)nd * 2, sizeof *s.acc);
    s.a = ds_llama_act_new_fwd(m, 1, seq_len);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) s.ring[k] = ds_malloc(sizeof(float) * (size_t)seq_len * m->cfg.dim);
    /* this group's documents of 2 tokens or more, in order: its micro-batches */
    int n_mb = 0, bad = 0;
    for (int d = 0; d < nd; d++) {
        if (owner[d] != p->group) continue;
        int n = doc_ids(&s, d);
        if (n < 0 && !bad) {
            char why[256];
            snprintf(why, sizeof why, "%s", ds_errmsg());
            bad = ds_err(DS_EXIT_INPUT, "document %d: %s", d + 1, why);
        }
        if (n >= 2) mb_doc[n_mb++] = d;
    }
    ds_pipe_stage st = {ppl_forward, NULL, &s};
    if (ds_pipe_forward(p, n_mb, &st) && !bad) bad = ds_err(DS_EXIT_INPUT, "a pipeline stage failed");
    MPI_Allreduce(MPI_IN_PLACE, s.acc, 2 * nd, MPI_DOUBLE, MPI_SUM, ctx->comm);
    memset(out, 0, sizeof *out);
    out->documents = nd;
    for (int d = 0; d < nd; d++) {
        out->nll_sum += s.acc[d];
        out->tokens += (int64_t)s.acc[nd + d];
    }
    out->nll = out->tokens ? out->nll_sum / (double)out->tokens : 0;
    out->ppl = exp(out->nll);
    ds_llama_act_free(s.a);
    for (int k = 0; k < DS_PIPE_DEPTH; k++) free(s.ring[k]);
    free(s.ids);
    free(s.acc);
    free(sizes);
    free(owner);
    free(mb_doc);
    if (bad) return bad;
    return out->tokens ? 0 : ds_err(DS_EXIT_INPUT, "no predicted tokens: every document has fewer than 2 tokens");
}

int ds_llama_ppl(const ds_ctx *ctx, const ds_llama *m, ds_tokenizer *tok, const ds_text_docs *docs, int seq_len,
                 ds_ppl_result *out)
{
    const int nd = docs->n;
    int64_t *sizes = ds_malloc((size_t)nd * sizeof *sizes);
    int *owner = ds_malloc((size_t)nd * sizeof *owner);
    size_t longest = 0;
    for (int d = 0; d < nd; d++) {
        size_t len = strlen(docs->docs[d]);
        /* work grows with the bytes kept (a token is a few bytes) */
        sizes[d] = (int64_t)(len < (size_t)seq_len * 8 ? len : (size_t)seq_len * 8);
        longest = len > longest ? len : longest;
    }
    ds_shard_by_size(nd, sizes, ctx->size, owner);
    /* [0, nd): NLL sum of each document, [nd, 2nd): its predicted tokens;
     * zero where another rank owns the document, so the SUM is exact. */
    double *acc = ds_calloc((size_t)nd * 2, sizeof *acc);
    int *ids = ds_malloc((longest + 3) * sizeof *ids);
    ds_llama_act *a = ds_llama_act_new_fwd(m, 1, seq_len);
    int bad = 0;
    for (int d = 0; d < nd; d++) {
        if (owner[d] != ctx->rank) continue;
        int n = ds_tokenizer_encode(tok, docs->docs[d], 1, 0, ids);
        if (n < 0 && !bad) { /* a Hugging Face tokenizer refuses text that is not UTF-8 */
            char why[256];
            snprintf(why, sizeof why, "%s", ds_errmsg());
            bad = ds_err(DS_EXIT_INPUT, "document %d: %s", d + 1, why);
        }
        if (n > seq_len) n = seq_len;
        if (n < 2) continue;
        ds_llama_forward(m, a, ids, 1, n);
        ids[n] = -1; /* the last position predicts nothing */
        int64_t cnt;
        acc[d] = ds_llama_loss_ce(a, ids + 1, 0.0f, &cnt);
        acc[nd + d] = (double)cnt;
    }
    MPI_Allreduce(MPI_IN_PLACE, acc, 2 * nd, MPI_DOUBLE, MPI_SUM, ctx->comm);
    memset(out, 0, sizeof *out);
    out->documents = nd;
    for (int d = 0; d < nd; d++) {
        out->nll_sum += acc[d];
        out->tokens += (int64_t)acc[nd + d];
    }
    out->nll = out->tokens ? out->nll_sum / (double)out->tokens : 0;
    out->ppl = exp(out->nll);
    ds_llama_act_free(a);
    free(ids);
    free(acc);
    free(sizes);
    free(owner);
    if (bad) return bad; /* this rank's error (the caller agrees across ranks) */
    return out->tokens ? 0 : ds_err(DS_EXIT_INPUT, "no predicted tokens: every document has fewer than 2 tokens");
}
