/* deltasoup fit-scales: fit a BitDelta delta's scales to the fine-tuned
 * model on a calibration text (docs/fit-scales.md). The teacher is the
 * fine-tuned model, the student base + g(2b - 1) plus the dense deltas; only
 * the scales move (src/fitscales.h). Pipelined (src/fitscales_pipe.h): the
 * ranks form groups of --pipeline P stages (P = 1: every rank holds both
 * whole models), each rank holds one stage of the student and of the
 * teacher; the groups share out every batch, each window one micro-batch,
 * the per-window scale gradients are all-reduced and added in window order,
 * so every rank keeps the same scales at any P and number of ranks.
 * Resumable: --checkpoint DIR (src/checkpoint.h); SIGUSR1/SIGTERM finish the
 * step, checkpoint and exit 75.
 *
 * options -> plan and this rank's stage of the models, delta
 * (io/delta_fit.h) -> calibration windows (io/tokens.h) -> held-out
 * comparison (ds_fitpipe_compare) -> Adam steps ->
 * held-out comparison -> fitted delta (staged, fit recorded) and report. */
#include "config.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/delta_fit.h"
#include "io/dp_record.h"
#include "io/h5_model.h"
#include "io/model_io.h"
#include "io/outfile.h"
#include "io/tokens.h"
#include "src/checkpoint.h"
#include "src/device_ops.h"
#include "src/fitscales_pipe.h"
#include "src/jobs.h"
#include "src/membudget.h"
#include "src/hash.h"
#include "src/opts.h"
#include "src/shard.h"

#define CKPT_FILE "fit-scales.ckpt"

typedef struct {
    const char *base, *ft, *delta, *calib, *out, *ckpt, *report, *device;
    int objective, steps, batch, seq_len, samples, every;
    int64_t seed;
    double lr, holdout;
    int force, overwrite;
    int no_verify;
    int pipeline;        /* --pipeline P (0: the fewest stages that fit) */
    double mem_per_rank; /* --mem-per-rank, GiB */
} opts;

static int check(void *p)
{
    opts *o = p;
    if (!o->base || !o->ft || !o->delta || !o->calib || !o->out)
        return ds_err(DS_EXIT_USAGE, "--base, --finetuned, --delta, --calib and -o are required");
    return ds_dev_cpu_only(o->device);
}

static const ds_opt options[] = {
    DS_OPT_STRING(opts, base, "base", "B.h5", "base checkpoint the delta was made for"),
    DS_OPT_STRING(opts, ft, "finetuned", "F.h5", "the fine-tuned model (the teacher)"),
    DS_OPT_STRING(opts, delta, "delta", "D.bd.h5", "delta from compress (or an earlier fit-scales)"),
    DS_OPT_STRING(opts, calib, "calib", "TEXT", "calibration text"),
    DS_OPT_OUTPUT(opts, out, "OUT", "fitted delta (signs and dense parts copied, scales replaced)"),
    DS_OPT_CHOICE(opts, objective, "objective", "kl|mse", ds_fit_objective_names, "kl",
                  "KL(p_finetuned || p_student) per token, or logit MSE"),
    DS_OPT_INT(opts, steps, "steps", "N", 0, 1 << 30, "200", "Adam steps"),
    DS_OPT_DOUBLE(opts, lr, "lr", "LR", 1e-12, 10, "1e-4", "learning rate"),
    DS_OPT_INT(opts, batch, "batch", "B", 1, 1 << 16, "4", "windows per step, shared out across the groups of ranks"),
    DS_OPT_INT(opts, seq_len, "seq-len", "T", 2, 1 << 20, "128", "tokens per window, at most the model's max_seq_len"),
    DS_OPT_INT(opts, samples, "samples", "N", 1, 1 << 30, "800", "calibration windows drawn from TEXT"),
    DS_OPT_DOUBLE(opts, holdout, "holdout", "FRACTION", 0, 0.9, "0.1", "share of the windows held out for the report"),
    DS_OPT_I64(opts, seed, "seed", "S", 0, INT64_MAX, "1234", "window and batch sampling seed"),
    DS_OPT_CHECKPOINT(opts, ckpt, "keep resumable state in DIR; a run with the same DIR resumes"),
    DS_OPT_INT(opts, every, "checkpoint-every", "N", 1, 1 << 30, "20", "steps between checkpoints"),
    DS_OPT_STRING(opts, report, "report", "R.json", "write objective, held-out KL and NLL before and after as JSON"),
    DS_OPT_PIPELINE(opts, pipeline, ""),
    DS_OPT_MEM_PER_RANK(opts, mem_per_rank),
    DS_OPT_FORCE(opts, force, "use a delta made for another base (a warning instead of an error)"),
    DS_OPT_DEVICE(opts, device, "where it runs: cpu only (the model engine runs on the CPU; --device\n"
                                "cuda is not supported by this job yet)"),
    DS_OPT_OVERWRITE(opts, overwrite),
    DS_OPT_NO_VERIFY(opts, no_verify),
    DS_OPT_QUIET,
    {0}};

static const ds_cmd cmd = {
    .usage = "deltasoup fit-scales --base B.h5 --finetuned F.h5 --delta D.bd.h5 --calib TEXT -o OUT.bd.h5\n"
             "                     [options]",
    .about = "Fit the scales of a BitDelta delta so that base + g(2b - 1) (plus the dense deltas) matches the\n"
             "fine-tuned model's next-token distribution on a calibration text; signs and everything else stay.\n"
             "Only the scales (per tensor, or per row/column when the delta has them) are trained, with Adam\n"
             "(beta 0.9/0.999, eps 1e-8). TEXT splits into documents, each tokenized with BOS and concatenated,\n"
             "then cut into windows of --seq-len tokens; up to --samples windows are drawn (seeded), a\n"
             "--holdout share of them is kept aside for the report.",
    .opts = options,
    .epilog = "With --checkpoint, SIGUSR1 or SIGTERM makes every rank finish the current step, write a\n"
              "checkpoint and exit with code 75; running the same command again continues and ends with the\n"
              "same scales as an uninterrupted run, also when resumed at another number of ranks or --pipeline.\n"
              "Each window of a batch is one micro-batch through the stages and the windows' scale gradients\n"
              "are added in a fixed order: the fitted scales are the same bit for bit at any number of ranks\n"
              "and any --pipeline (docs/fit-scales.md \"Ranks and pipeline stages\"). A rank holds 8 bytes per\n"
              "parameter of its stage for the student (6 for a bf16 base) plus the teacher's stage as stored.",
    .check = check};

/* ---- inputs: the pipeline plan, this rank's stage of the student (base +
 * dense deltas, coded tensors rebuilt by ds_fitscales_init) and of the
 * teacher, tokenizer, the delta's coded tensors. */
typedef struct {
    ds_pipe pipe;
    ds_llama student, teacher;
    ds_tokenizer tok;
    int have_tok;
    ds_delta_file *delta;
    char base_sha[65], ft_sha[65];
    ds_delta_coded coded;
} inputs;

static void inputs_free(inputs *in)
{
    ds_delta_coded_free(&in->coded);
    if (in->have_tok) ds_tokenizer_free(&in->tok);
    if (in->student.w) ds_llama_free(&in->student);
    if (in->teacher.w) ds_llama_free(&in->teacher);
    ds_pipe_free(&in->pipe);
    ds_delta_close(in->delta);
}

/* The bytes a rank holds for tensor ti: the student in f32 (4 per
 * parameter), the base of a coded tensor (every 2-D one counted as coded)
 * kept by src/fitscales.c in bf16 for a bf16 checkpoint (2), else f32 (4),
 * no gradient buffer (the backward's hook), and the teacher as stored. */
static double tensor_bytes(ds_model_file *bf, ds_model_file *ff, const ds_tinfo *ti)
{
    const int jb = ds_model_find(bf, ti->name), jf = ds_model_find(ff, ti->name);
    const ds_tinfo *b = jb < 0 ? NULL : &ds_model_get_meta(bf)->tensors[jb];
    const double n = (double)ds_tinfo_numel(ti), base = ti->ndim != 2 ? 0 : b && b->dtype == DS_DTYPE_BF16 ? 2 : 4;
    return (4 + base) * n + (jf < 0 ? 0 : (double)ds_tinfo_bytes(&ds_model_get_meta(ff)->tensors[jf]));
}

/* ---- the plan: the bytes a rank holds (tensor_bytes) per decoder layer,
 * for the embeddings (first stage) and for the final norm and head (last
 * stage; a tied model's head is its embeddings). */
static void fit_bytes(ds_model_file *bf, ds_model_file *ff, double *layer, double *first, double *last)
{
    const ds_model_meta *fm = ds_model_get_meta(ff);
    const int L = fm->cfg.n_layers;
    ds_tinfo *ti;
    const int n = ds_llama_tensors(&fm->cfg, &ti); /* the config was checked by the caller */
    *first = *last = 0;
    for (int l = 0; l < L; l++) layer[l] = 0;
    for (int i = 0; i < n; i++) {
        const double b = tensor_bytes(bf, ff, &ti[i]);
        if (i == 0) *first += b, *last += fm->cfg.tied_embeddings ? b : 0;
        else if (i > DS_LLAMA_ROLES * L) *last += b;
        else layer[(i - 1) / DS_LLAMA_ROLES] += b;
    }
    free(ti);
}

/* A rank's bytes with the P-stage split bounds: the largest stage's
 * weights (as fit_bytes) and workspaces (a training workspace per window of
 * its group's share, the teacher's forward-only one), the calibration
 * windows, the per-window scale gradients, and 1 GiB for the program. */
static double fit_need(const opts *o, const ds_config *c, int ranks, int P, const double *lb, double first,
                       double last, int *bounds, double *weights)
{
    const int L = c->n_layers, rows = (o->batch + ranks / P - 1) / (ranks / P);
    const double program = 1024.0 * 1024.0 * 1024.0;
    *weights = ds_pipe_partition(L, lb, first, last, P, bounds) + program;
    double worst = 0;
    for (int s = 0; s < P; s++) {
        double b = (s == 0 ? first : 0) + (s == P - 1 ? last : 0);
        for (int l = bounds[s]; l < bounds[s + 1]; l++) b += lb[l];
        b += ds_llama_act_bytes_stage(c, rows, o->seq_len, bounds[s], bounds[s + 1]) +
             ds_llama_act_bytes_fwd(c, 1, o->seq_len);
        worst = b > worst ? b : worst;
    }
    /* the step's [batch, scales + 1] array of per-window scale gradients
     * (at most one scale per row or column of every matrix) */
    const double scales = L * (4.0 * c->dim + 3.0 * c->hidden_dim) + 2.0 * c->vocab_size + 1;
    return worst + (double)o->samples * o->seq_len * sizeof(int) + (double)o->batch * scales * 8 + program;
}

/* Collective: the stages per group (--pipeline, or the fewest that fit a
 * rank's memory), checked against the memory, and the plan. Errors are
 * printed once. */
static int fit_plan(const ds_ctx *ctx, const opts *o, ds_model_file *bf, ds_model_file *ff, ds_pipe *pipe)
{
    const ds_config *c = &ds_model_get_meta(ff)->cfg;
    const int L = c->n_layers;
    int P = o->pipeline, max_p = 1;
    int rc = 0;
    if (P > 0 && ctx->size % P)
        rc = ds_err(DS_EXIT_USAGE, "--pipeline %d: the %d rank(s) do not split into groups of %d", P, ctx->size, P);
    else if (P > L)
        rc = ds_err(DS_EXIT_USAGE, "--pipeline %d: %s has %d layers, at most one stage per layer", P, o->ft, L);
    else if (o->seq_len > c->max_seq_len)
        rc = ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", o->seq_len, c->max_seq_len);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc; /* (the same on every rank) */
    double *lb = ds_malloc(sizeof(double) * (size_t)L), first, last;
    int *bounds = ds_malloc(sizeof(int) * (size_t)(L + 1));
    fit_bytes(bf, ff, lb, &first, &last);
    for (int p = 1; p <= L && p <= ctx->size; p++)
        if (ctx->size % p == 0) max_p = p;
    const double budget = ds_mem_rank_budget(ctx);
    double weights;
    for (int p = 1; !P && p <= max_p; p++)
        if (ctx->size % p == 0 && fit_need(o, c, ctx->size, p, lb, first, last, bounds, &weights) <= budget) P = p;
    if (!P) P = max_p; /* refused below, naming the most stages these ranks allow */
    const double need = fit_need(o, c, ctx->size, P, lb, first, last, bounds, &weights);
    /* too many activations, or a model too large for this many stages */
    char what[4200], hint[160];
    if (weights <= budget) {
        snprintf(what, sizeof what, "--batch %d --seq-len %d --samples %d", o->batch, o->seq_len, o->samples);
        snprintf(hint, sizeof hint, " (lower --batch or --seq-len)");
    } else {
        snprintf(what, sizeof what, "%s with --batch %d --seq-len %d", o->ft, o->batch, o->seq_len);
        snprintf(hint, sizeof hint, " (--pipeline %d%s: more stages hold fewer layers each; run more ranks)", P,
                 P < max_p ? "" : ", the most these ranks allow");
    }
    rc = ds_mem_check(ctx, need, what, hint); /* (prints) */
    if (!rc) ds_pipe_init(pipe, ctx->comm, P, L, lb, first, last);
    free(lb);
    free(bounds);
    return rc;
}

/* Collective: the two models (same config) and the base's tokenizer. */
static int load_models(const ds_ctx *ctx, const opts *o, inputs *in)
{
    ds_model_file *bf = NULL, *ff = NULL;
    int rc = ds_model_open(o->base, ctx->comm, &bf);
    if (rc) return rc;
    if ((rc = ds_model_open(o->ft, ctx->comm, &ff))) {
        ds_model_close(bf);
        return rc;
    }
    const ds_model_meta *bm = ds_model_get_meta(bf), *fm = ds_model_get_meta(ff);
    snprintf(in->base_sha, sizeof in->base_sha, "%s", bm->content_sha256);
    snprintf(in->ft_sha, sizeof in->ft_sha, "%s", fm->content_sha256);
    rc = ds_delta_check_config(o->ft, &fm->cfg, o->base, &bm->cfg);
    if (!rc && !bm->has_tokenizer)
        rc = ds_err(DS_EXIT_INPUT, "%s: no tokenizer in the checkpoint (import it with --tokenizer)", o->base);
    if (!(rc = ds_ctx_agree(ctx, rc)) && !(rc = fit_plan(ctx, o, bf, ff, &in->pipe))) {
        const int l0 = in->pipe.l0, l1 = in->pipe.l1;
        rc = ds_llama_load_stage(&in->student, bf, DS_LLAMA_LOAD_F32, l0, l1);
        /* the teacher only runs forward: its weights as stored (bf16: half
         * the memory of f32; its logits equal the f32 engine's on the same
         * weights, docs/model.md "Numerics and kernels") */
        if (!rc) rc = ds_llama_load_stage(&in->teacher, ff, DS_LLAMA_LOAD_STORED, l0, l1);
        if (!rc) in->have_tok = !(rc = ds_model_read_tokenizer(bf, &in->tok));
        rc = ds_ctx_agree(ctx, rc);
    }
    ds_model_close(ff);
    ds_model_close(bf);
    return rc;
}

/* Collective: open and check everything; errors printed once. */
static int load_inputs(const ds_ctx *ctx, const opts *o, inputs *in)
{
    memset(in, 0, sizeof *in);
    int rc = load_models(ctx, o, in);
    if (rc || (rc = ds_delta_open(o->delta, ctx->comm, &in->delta))) return rc;
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    rc = ds_delta_check_base(o->delta, dm->base_sha256, o->base, in->base_sha, o->force, ctx->rank);
    if (!rc) rc = ds_delta_check_config(o->delta, &dm->cfg, o->base, &in->student.cfg);
    if (!rc) rc = ds_delta_read_for_fit(in->delta, o->base, &in->student, &in->coded);
    return ds_ctx_agree(ctx, rc);
}

/* ---- calibration windows (io/tokens.h); the token stream is dropped once
 * cut. */
typedef struct {
    ds_token_windows w;
    int64_t stream_tokens;
    char sha[65]; /* SHA-256 of the calibration file */
} calib;

static int calib_load(const opts *o, inputs *in, calib *c)
{
    memset(c, 0, sizeof *c);
    if (o->seq_len > in->student.cfg.max_seq_len)
        return ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", o->seq_len,
                      in->student.cfg.max_seq_len);
    ds_tokens t;
    int rc = ds_tokens_load(o->calib, &in->tok, &t);
    if (!rc) rc = ds_token_windows_cut(&t, o->seq_len, o->samples, o->holdout, (uint64_t)o->seed, &c->w);
    c->stream_tokens = t.n;
    memcpy(c->sha, t.sha256, sizeof c->sha);
    ds_tokens_free(&t);
    return rc;
}

/* ---- checkpoints */
static ds_ckpt *ckpt_record(const opts *o, const inputs *in, const calib *c, const ds_fitscales *f)
{
    ds_ckpt *k = ds_ckpt_new("fit-scales");
    ds_ckpt_record_int(k, "version", 1);
    ds_ckpt_record_str(k, "base_sha256", in->base_sha);
    ds_ckpt_record_str(k, "finetuned_sha256", in->ft_sha);
    ds_ckpt_record_str(k, "delta_sha256", ds_delta_get_meta(in->delta)->content_sha256);
    ds_ckpt_record_str(k, "calib_sha256", c->sha);
    ds_ckpt_record_str(k, "objective", ds_fit_objective_name(o->objective));
    ds_ckpt_record_double(k, "lr", o->lr);
    ds_ckpt_record_int(k, "batch", o->batch);
    ds_ckpt_record_int(k, "seq_len", o->seq_len);
    ds_ckpt_record_int(k, "samples", o->samples);
    ds_ckpt_record_double(k, "holdout", o->holdout);
    ds_ckpt_record_int(k, "seed", o->seed);
    ds_ckpt_record_int(k, "n_scales", f->n_scales);
    return k;
}

/* Collective: rank 0 writes the state after f->step steps. */
static int ckpt_save(const ds_ctx *ctx, const char *path, ds_ckpt *k, const ds_fitscales *f, const opts *o)
{
    int rc = 0;
    if (ctx->rank == 0) {
        ds_ckpt_state_int(k, "step", f->step);
        ds_ckpt_state_int(k, "data_position", f->step * o->batch);
        ds_ckpt_state_int(k, "ranks", ctx->size);
        ds_ckpt_put_array(k, "scales", DS_DTYPE_F32, f->n_scales, f->scales);
        ds_ckpt_put_array(k, "adam_m", DS_DTYPE_F64, f->n_scales, f->m);
        ds_ckpt_put_array(k, "adam_v", DS_DTYPE_F64, f->n_scales, f->v);
        rc = ds_ckpt_write(k, path);
    }
    return ds_ctx_agree(ctx, rc);
}

/* Collective: resume from path when it exists. */
static int ckpt_restore(const ds_ctx *ctx, const char *path, const ds_ckpt *now, ds_fitscales *f, const opts *o)
{
    int exists = access(path, F_OK) == 0, rc = 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, ctx->comm);
    if (!exists) return 0;
    ds_ckpt *k = NULL;
    int64_t step = 0, ranks = 0;
    rc = ds_ckpt_read(path, &k);
    if (!rc) rc = ds_ckpt_match(k, now, path);
    if (!rc) rc = ds_ckpt_get_int(k, "step", &step);
    if (!rc) rc = ds_ckpt_get_int(k, "ranks", &ranks);
    if (!rc && step > o->steps)
        rc = ds_err(DS_EXIT_INPUT, "%s: checkpoint is at step %lld, past --steps %d", path, (long long)step, o->steps);
    if (!rc) rc = ds_ckpt_get_array(k, "scales", DS_DTYPE_F32, f->n_scales, f->scales);
    if (!rc) rc = ds_ckpt_get_array(k, "adam_m", DS_DTYPE_F64, f->n_scales, f->m);
    if (!rc) rc = ds_ckpt_get_array(k, "adam_v", DS_DTYPE_F64, f->n_scales, f->v);
    ds_ckpt_free(k);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    f->step = step;
    ds_fitscales_rebuild(f);
    /* the same scales follow at any number of ranks and stages */
    if (!ctx->quiet)
        ds_printf0(ctx, "[fit-scales] resuming from %s at step %lld (saved at %lld rank(s))\n", path, (long long)step,
                   (long long)ranks);
    return 0;
}

/* ---- the fit: scales and optimiser (src/fitscales.h), the pipelined step
 * and held-out comparison (src/fitscales_pipe.h) on this rank's stage. */
typedef struct {
    ds_fitscales f;
    ds_fitpipe fp;
    int T;              /* window */
    char ckpath[4200];
    ds_ckpt *rec;
    int64_t start;      /* steps done before this run */
    double first, last; /* batch objectives of this run's first and last step */
    double secs;
    int stopped;        /* a signal stopped it before --steps */
    int have_f;
} fit;

static int fit_init(ds_ctx *ctx, const opts *o, inputs *in, const calib *c, fit *ft)
{
    memset(ft, 0, sizeof *ft);
    ds_llama_threads_auto(ctx);
    ds_fitscales_init(&ft->f, &in->student, in->coded.n, in->coded.c, (ds_fit_objective)o->objective, o->lr);
    ft->have_f = 1;
    ft->T = c->w.T;
    ds_fitpipe_init(&ft->fp, &in->pipe, &ft->f, &in->teacher, o->batch, ft->T);
    ft->first = ft->last = NAN;
    return 0;
}

static void fit_free(fit *ft)
{
    ds_ckpt_free(ft->rec);
    ds_fitpipe_free(&ft->fp);
    if (ft->have_f) ds_fitscales_free(&ft->f);
}

/* Collective: resume, or start at step 0. */
static int fit_resume(const ds_ctx *ctx, const opts *o, const inputs *in, const calib *c, fit *ft)
{
    if (!o->ckpt) return 0;
    snprintf(ft->ckpath, sizeof ft->ckpath, "%s/%s", o->ckpt, CKPT_FILE);
    ft->rec = ckpt_record(o, in, c, &ft->f);
    int rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(o->ckpt) : 0);
    if (!rc) rc = ckpt_restore(ctx, ft->ckpath, ft->rec, &ft->f, o);
    return rc;
}

/* Collective: Adam steps from ft->f.step to --steps, or until a signal
 * (checkpoint written, ft->stopped set). */
static int fit_train(const ds_ctx *ctx, const opts *o, inputs *in, calib *c, fit *ft)
{
    ds_fitscales *f = &ft->f;
    const int T = ft->T;
    int *tokens = ds_malloc((size_t)o->batch * T * sizeof(int));
    const float gscale = (float)(1.0 / ((double)o->batch * T));
    const double t0 = ds_now();
    int rc = 0;
    ft->start = f->step;
    ds_progress prog;
    ds_progress_init(&prog, ctx, "step", o->steps - ft->start);
    for (int64_t step = ft->start + 1; !rc && step <= o->steps; step++) {
        /* every rank has the batch's windows; its group uses its share */
        for (int b = 0; b < o->batch; b++)
            memcpy(tokens + b * T, ds_token_windows_train(&c->w, (uint64_t)o->seed, (step - 1) * o->batch + b),
                   (size_t)T * sizeof(int));
        /* One reduction: scale gradients, objective, and whether any rank
         * was signalled (so that all ranks stop after the same step). */
        double loss = 0, signalled = ds_ckpt_stop_requested() != 0;
        if (ds_fitpipe_step(&ft->fp, ctx->comm, tokens, gscale, &loss, &signalled)) {
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: a pipeline stage failed at step %lld", o->delta,
                                          (long long)step));
            break;
        }
        /* all-reduced: every rank stops at the same step */
        if (!isfinite(loss)) {
            rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the objective is not finite at step %lld (non-finite "
                                          "logits of the student or the teacher)", o->delta, (long long)step));
            break;
        }
        ds_fitscales_adam_step(f);
        ft->last = loss / ((double)o->batch * T);
        if (step == ft->start + 1) ft->first = ft->last;
        ds_progress_step(&prog, step - ft->start, "%s %.6f", ds_fit_objective_name(o->objective), ft->last);
        ft->stopped = signalled > 0;
        if (o->ckpt && (ft->stopped || step % o->every == 0) && step < o->steps)
            rc = ckpt_save(ctx, ft->ckpath, ft->rec, f, o);
        if (ft->stopped && step < o->steps) break;
        ft->stopped = 0;
    }
    ft->secs = ds_now() - t0;
    free(tokens);
    return rc;
}

/* ---- output: the input delta with the fitted scales, staged as OUT.tmp
 * (ds_delta_commit_staged), the fit recorded in it by rank 0, then put in
 * place by ds_out_finish: OUT appears complete or not at all. */
typedef struct {
    double objective_before, objective_after;
    const ds_fit_compare *before, *after;
    const double *rss; /* rank 0: every rank's peak RSS in bytes */
} fit_summary;

static int write_output(const ds_ctx *ctx, const opts *o, const calib *c, inputs *in, const ds_fitscales *f,
                        const fit_summary *s)
{
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    ds_delta_meta meta = *dm;
    snprintf(meta.scale_fit, sizeof meta.scale_fit, "%s", ds_fit_objective_name(o->objective));
    const ds_delta_fit_record r = {.steps = o->steps, .batch = o->batch, .seq_len = o->seq_len, .seed = o->seed,
                                   .samples = c->w.n_train, .lr = o->lr, .calib_sha256 = c->sha,
                                   .from = dm->scale_fit, .input_sha256 = dm->content_sha256,
                                   /* the held-out objective (none with --holdout 0) */
                                   .has_objective = c->w.n_hold > 0, .objective_initial = s->objective_before,
                                   .objective_final = s->objective_after};
    ds_delta_file *d;
    int rc = ds_delta_create(o->out, ctx->comm, &meta, o->overwrite, &d);
    if (rc) return rc;
    /* a DP fine-tune's record (io/dp_record.h) stays with the delta */
    ds_dp_record dp;
    rc = ds_ctx_agree(ctx, ds_dp_record_read(ds_delta_root(in->delta), &dp));
    if (!rc && dp.has && dp.accountant[0]) rc = ds_dp_record_write(ds_delta_root(d), &dp, 0);
    const int n = dm->n;
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int *owner = ds_malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int k = 0; k < n; k++) sizes[k] = (int64_t)ds_delta_entry_bytes(&dm->entries[k], NULL);
    ds_shard_by_size(n, sizes, ctx->size, owner);
    for (int k = 0, c_i = 0; k < n && !rc; k++) {
        const ds_delta_entry *e = &dm->entries[k];
        const int ci = e->coded ? c_i++ : -1; /* coded entries are in f->t in delta order */
        if (owner[k] != ctx->rank) continue;
        if (e->coded) { /* the signs as they were (a pipeline stage holds only its own) */
            uint64_t *bits = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
            rc = ds_delta_read_signs(in->delta, k, bits);
            if (!rc) rc = ds_delta_write_signs(d, k, bits);
            if (!rc) rc = ds_delta_write_scales(d, k, f->scales + f->t[ci].off);
            free(bits);
        } else {
            void *buf = ds_malloc((size_t)ds_tinfo_bytes(&e->t) + 1);
            rc = ds_delta_read_dense(in->delta, k, e->t.dtype, buf);
            if (!rc) rc = ds_delta_write_dense(d, k, buf);
            free(buf);
        }
    }
    free(sizes);
    free(owner);
    if ((rc = ds_delta_commit_staged(d, ds_ctx_agree(ctx, rc), dm->base_sha256, NULL))) return rc;
    char tmp[4200];
    ds_out_tmpname(o->out, tmp, sizeof tmp);
    return ds_out_finish(ctx, o->out, ctx->rank == 0 ? ds_delta_write_fit_record(tmp, &r) : 0);
}

static int write_report(const ds_ctx *ctx, const opts *o, const calib *c, const fit_summary *s, const fit *ft)
{
    json_t *r = NULL; /* built on rank 0, written there */
    if (ctx->rank == 0) {
        r = json_pack("{s:s, s:s, s:s, s:i, s:f, s:i, s:i, s:I, s:I, s:s, s:i, s:n, s:n, s:{s:I}, s:{}, s:f}",
                      "objective", ds_fit_objective_name(o->objective), "delta", o->delta, "output", o->out, "steps",
                      o->steps, "lr", o->lr, "batch", o->batch, "seq_len", o->seq_len, "train_windows",
                      (json_int_t)c->w.n_train, "heldout_windows", (json_int_t)c->w.n_hold, "calib_sha256", c->sha,
                      "ranks", ctx->size, "objective_before", "objective_after", "heldout", "windows",
                      (json_int_t)c->w.n_hold, "train", "seconds", ft->secs);
        json_object_set_new(r, "pipeline", json_integer(ft->fp.p->P)); /* stages per group */
        if (!ds_verify_enabled()) json_object_set_new(r, "verify", json_false()); /* --no-verify */
        json_t *rss = json_array();
        for (int i = 0; i < ctx->size; i++) json_array_append_new(rss, json_integer((json_int_t)s->rss[i]));
        json_object_set_new(r, "peak_rss_bytes", rss); /* per rank */
        if (c->w.n_hold) {
            json_object_set_new(r, "objective_before", json_real(s->objective_before));
            json_object_set_new(r, "objective_after", json_real(s->objective_after));
            json_t *h = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "tokens", (json_int_t)s->before->tokens,
                                  "kl_before", s->before->kl, "kl_after", s->after->kl, "mse_before", s->before->mse,
                                  "mse_after", s->after->mse, "nll_before", s->before->nll, "nll_after", s->after->nll,
                                  "nll_finetuned", s->before->nll_teacher);
            json_object_update(json_object_get(r, "heldout"), h);
            json_decref(h);
        }
        /* Batch objectives of this run's first and last step (none when it
         * resumed at the end). */
        json_t *tr = json_object_get(r, "train");
        if (isfinite(ft->first)) json_object_set_new(tr, "batch_objective_first_step", json_real(ft->first));
        if (isfinite(ft->last)) json_object_set_new(tr, "batch_objective_last_step", json_real(ft->last));
    }
    int rc = ds_out_write_json(ctx, o->report, r, JSON_INDENT(2) | JSON_REAL_PRECISION(10), 0);
    json_decref(r);
    return rc;
}

/* Rank 0: every rank's peak RSS, in MiB, on one line (the first 16). */
static void print_rss(const ds_ctx *ctx, const double *rss)
{
    if (ctx->rank != 0) return;
    char line[256] = "";
    size_t n = 0;
    for (int i = 0; i < ctx->size && i < 16; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%.0f", i ? ", " : "", rss[i] / 1048576.0);
    ds_printf0(ctx, "peak RSS per rank (MiB): %s%s\n", line, ctx->size > 16 ? ", ..." : "");
}

static void print_summary(const ds_ctx *ctx, const opts *o, const calib *c, const fit_summary *s, const fit *ft)
{
    if (ctx->quiet) return;
    if (!c->w.n_hold) {
        ds_printf0(ctx, "[fit-scales] wrote %s: %d steps in %.1fs on %d rank(s); no held-out windows\n", o->out,
                   o->steps, ft->secs, ctx->size);
        return;
    }
    ds_printf0(ctx,
               "[fit-scales] wrote %s: %d steps in %.1fs (%.3f s/step) on %d rank(s)\n"
               "held-out (%lld windows of %d tokens)   %-12s %-12s %s\n"
               "  KL(finetuned || student)         %-12.6f %-12.6f -\n"
               "  logit MSE                        %-12.6f %-12.6f -\n"
               "  NLL (nats/token)                 %-12.6f %-12.6f %.6f\n",
               o->out, o->steps, ft->secs, o->steps > ft->start ? ft->secs / (double)(o->steps - ft->start) : 0.0,
               ctx->size, (long long)c->w.n_hold, ft->T, "before", "after", "finetuned", s->before->kl,
               s->after->kl, s->before->mse, s->after->mse, s->before->nll, s->after->nll, s->before->nll_teacher);
}

/* Collective: the held-out comparison of the student (current scales) to
 * the teacher, through the pipeline. */
static int heldout(const ds_ctx *ctx, const calib *c, fit *ft, ds_fit_compare *out)
{
    if (ds_fitpipe_compare(&ft->fp, ctx->comm, c->w.hold, c->w.n_hold, out))
        return ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "the held-out comparison: a pipeline stage failed"));
    return 0;
}

/* The objective of a held-out comparison. */
static double held_objective(const opts *o, const ds_fit_compare *h)
{
    return o->objective == DS_FIT_MSE ? h->mse : h->kl;
}

/* The fitted scales and the held-out objective (the same on every rank):
 * exit 3 naming the first non-finite tensor, before anything is written. */
static int check_finite(const opts *o, const inputs *in, const ds_fitscales *f, double objective)
{
    for (int i = 0; i < f->n; i++) {
        int64_t bad = ds_find_nonfinite(DS_DTYPE_F32, f->scales + f->t[i].off, (size_t)f->t[i].n_scales);
        if (bad >= 0)
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: fitted scale %lld is not finite, not written", o->out,
                          in->student.tinfo[f->t[i].index].name, (long long)bad);
    }
    if (!isfinite(objective))
        return ds_err(DS_EXIT_INPUT, "%s: the held-out objective after the fit is not finite, not written", o->out);
    return 0;
}

/* Collective, after the last step: held-out comparison, output, report. */
static int fit_finish(const ds_ctx *ctx, const opts *o, inputs *in, const calib *c, fit *ft,
                      const ds_fit_compare *before)
{
    ds_fit_compare after;
    int rc = heldout(ctx, c, ft, &after);
    if (rc) return rc;
    double mine = (double)ds_peak_rss(), *rss = ctx->rank == 0 ? ds_malloc(sizeof(double) * (size_t)ctx->size) : NULL;
    MPI_Gather(&mine, 1, MPI_DOUBLE, rss, 1, MPI_DOUBLE, 0, ctx->comm);
    fit_summary s = {held_objective(o, before), held_objective(o, &after), before, &after, rss};
    rc = ds_ctx_agree(ctx, check_finite(o, in, &ft->f, c->w.n_hold ? s.objective_after : 0));
    if (!rc) rc = write_output(ctx, o, c, in, &ft->f, &s);
    if (!rc && o->report) rc = write_report(ctx, o, c, &s, ft);
    if (!rc) print_summary(ctx, o, c, &s, ft);
    if (!rc && !ctx->quiet) print_rss(ctx, rss);
    free(rss);
    /* Done: a later run with the same folder starts over. */
    if (!rc && o->ckpt && ctx->rank == 0) {
        unlink(ft->ckpath);
        rmdir(o->ckpt);
    }
    return rc;
}

/* Rank 0: the plan, one line (stage s holds decoder layers a-b). */
static void print_pipe(const ds_ctx *ctx, const ds_pipe *p)
{
    if (ctx->quiet || ctx->rank != 0) return;
    char line[1024] = "";
    size_t n = 0;
    for (int s = 0; s < p->P && n < sizeof line - 40; s++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s%d-%d", s ? ", " : "", p->bounds[s], p->bounds[s + 1] - 1);
    ds_printf0(ctx, "[fit-scales] pipeline: %d group(s) of %d stages; layers per stage: %s\n", p->groups, p->P, line);
}

static int run_fit(ds_ctx *ctx, const opts *o)
{
    /* no output is an input or the other output (io/outfile.h) */
    const char *outs[] = {o->out, o->report}, *ins[] = {o->base, o->ft, o->delta, o->calib};
    int rc = ds_ctx_agree(ctx, ds_out_check_paths(outs, 2, ins, 4));
    if (rc) return rc;
    if ((rc = ds_out_begin(ctx, o->out, o->overwrite))) return rc;
    if (o->report && (rc = ds_out_begin(ctx, o->report, o->overwrite))) return rc;
    inputs in;
    calib c;
    fit ft;
    memset(&c, 0, sizeof c);
    memset(&ft, 0, sizeof ft);
    if ((rc = load_inputs(ctx, o, &in))) goto out;
    if ((rc = ds_ctx_agree(ctx, calib_load(o, &in, &c)))) goto out;
    if ((rc = fit_init(ctx, o, &in, &c, &ft))) goto out;
    if (!ctx->quiet)
        ds_printf0(ctx,
                   "[fit-scales] %s: %d coded tensors, %lld scales; %lld calibration tokens, %lld train / %lld "
                   "held-out windows of %d; objective %s, %d steps, batch %d, lr %g, %d rank(s), --pipeline %d\n",
                   o->delta, ft.f.n, (long long)ft.f.n_scales, (long long)c.stream_tokens, (long long)c.w.n_train,
                   (long long)c.w.n_hold, ft.T, ds_fit_objective_name(o->objective), o->steps, o->batch, o->lr,
                   ctx->size, in.pipe.P);
    if (in.pipe.P > 1) print_pipe(ctx, &in.pipe);
    ds_fit_compare before;
    rc = heldout(ctx, &c, &ft, &before);
    if (!rc) rc = fit_resume(ctx, o, &in, &c, &ft);
    if (!rc) rc = fit_train(ctx, o, &in, &c, &ft);
    if (!rc && ft.stopped) {
        ds_printf0(ctx, "[fit-scales] signal: checkpoint at step %lld written to %s; run again to resume\n",
                   (long long)ft.f.step, ft.ckpath);
        rc = DS_EXIT_CHECKPOINTED;
    }
    if (!rc) rc = fit_finish(ctx, o, &in, &c, &ft, &before);
out:
    fit_free(&ft);
    ds_token_windows_free(&c.w);
    inputs_free(&in);
    return rc;
}

int ds_job_fit_scales(ds_ctx *ctx, int argc, char **argv)
{
    opts o = {0};
    int rc = ds_opts_parse(ctx, &cmd, argc, argv, &o);
    if (rc) return ds_opts_exit(rc);
    ds_verify_init(ctx, o.no_verify);
    ds_mem_set_per_rank(o.mem_per_rank * 1024.0 * 1024.0 * 1024.0);
    /* Every rank catches the signals from the start (Slurm signals all
     * tasks, mpiexec forwards SIGUSR1); the flag is read after each step. */
    ds_ckpt_signals saved;
    if (o.ckpt) ds_ckpt_signals_catch(&saved);
    rc = run_fit(ctx, &o);
    if (o.ckpt) ds_ckpt_signals_restore(&saved);
    ds_opts_free(&cmd, &o);
    return rc;
}
