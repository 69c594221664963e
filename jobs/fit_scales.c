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
    int teacher_first;   /* --teacher-first (also chosen when both models do not fit) */
    const char *scratch; /* --scratch DIR: the teacher's logits (default $TMPDIR, else /tmp) */
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
    DS_OPT_FLAG(opts, teacher_first, "teacher-first",
                "run the teacher over every window first (its last stage's logits to --scratch), free it,\n"
                "then fit the student alone: a rank holds the larger of the two models, not both (chosen\n"
                "without this flag when both do not fit); the same results bit for bit"),
    DS_OPT_STRING(opts, scratch, "scratch", "DIR",
                  "where the teacher's logits go with --teacher-first (default $TMPDIR, else /tmp): windows x\n"
                  "seq-len x vocab x 4 bytes, in a file removed from DIR as soon as it is opened"),
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
              "and any --pipeline (docs/fit-scales.md \"Ranks and pipeline stages\"). A rank holds its stage of the\n"
              "student (a bf16 base: 2 + 1/8 bytes per coded parameter, its products built from the bits; an\n"
              "f32 base: 8 bytes) plus the teacher's stage as stored. With --teacher-first (or when both do not fit) it\n"
              "holds one at a time: the teacher runs first over every held-out window and every window of the\n"
              "steps to run, the last stage writes their logits to a file in --scratch (windows x seq-len x\n"
              "vocab x 4 bytes; checked for room first), the teacher is freed, the student loaded, and the\n"
              "steps read the logits back: the same scales and report, bit for bit.",
    .check = check};

/* ---- inputs: the pipeline plan, this rank's stage of the student (base +
 * dense deltas, coded tensors rebuilt by ds_fitscales_init, or kept as
 * stored: stored_mask) and of the teacher, tokenizer, the delta's coded
 * tensors. */
typedef struct {
    ds_pipe pipe;
    int teacher_first; /* the plan: the teacher first, then freed (docs/fit-scales.md "Teacher first") */
    int tf_auto;       /* chosen because both models do not fit a rank */
    ds_config cfg;     /* the base's config (the models' and the delta's) */
    ds_llama student, teacher;
    ds_tokenizer tok;
    int have_tok;
    ds_delta_file *delta;
    char base_sha[65], ft_sha[65];
    ds_delta_coded coded;
    unsigned char *stored; /* [tensors]: the student's tensors held as the base stores them (stored_mask) */
} inputs;

static void inputs_free(inputs *in)
{
    ds_delta_coded_free(&in->coded);
    free(in->stored);
    if (in->have_tok) ds_tokenizer_free(&in->tok);
    if (in->student.w) ds_llama_free(&in->student);
    if (in->teacher.w) ds_llama_free(&in->teacher);
    ds_pipe_free(&in->pipe);
    ds_delta_close(in->delta);
}

/* Which tensors (engine order) the student holds as the base stores them:
 * the linears the delta codes (not the embeddings), when the base stores
 * them in f16 or bf16. src/fitscales.c then keeps W_b in place and the
 * products build W = W_b + g(2b - 1) from the bits (2 bytes + 1/8 per
 * parameter of a bf16 base instead of 4 + 2); the others are f32. */
static unsigned char *stored_mask(const ds_delta_meta *dm, ds_model_file *bf)
{
    const ds_model_meta *bm = ds_model_get_meta(bf);
    ds_tinfo *ti;
    const int n = ds_llama_tensors(&bm->cfg, &ti); /* the config was checked by the caller */
    unsigned char *m = ds_calloc((size_t)(n > 0 ? n : 1), 1);
    for (int i = 1; i < n; i++) {
        const int j = ds_model_find(bf, ti[i].name);
        if (ti[i].ndim != 2 || j < 0 || bm->tensors[j].dtype == DS_DTYPE_F32) continue;
        for (int k = 0; k < dm->n; k++)
            if (dm->entries[k].coded && strcmp(dm->entries[k].t.name, ti[i].name) == 0) m[i] = 1;
    }
    free(ti);
    return m;
}

/* The bytes a rank holds for the student's tensor ti (stored: held as the
 * base stores it, stored_mask): then the base's bytes and the signs (1/8
 * per parameter); else f32 (4 per parameter), plus for a 2-D tensor
 * (counted as coded) the copy of W_b that src/fitscales.c keeps, in bf16
 * for a bf16 checkpoint (2), else f32 (4). No gradient buffer (the
 * backward's hook). */
static double tensor_bytes(ds_model_file *bf, const ds_tinfo *ti, int stored)
{
    const int jb = ds_model_find(bf, ti->name);
    const ds_tinfo *b = jb < 0 ? NULL : &ds_model_get_meta(bf)->tensors[jb];
    const double n = (double)ds_tinfo_numel(ti), base = ti->ndim != 2 ? 0 : b && b->dtype == DS_DTYPE_BF16 ? 2 : 4;
    return stored && b ? (double)ds_tinfo_bytes(b) + n / 8 : (4 + base) * n;
}

/* The bytes of the teacher's tensor ti, as stored (it only runs forward). */
static double teacher_bytes(ds_model_file *ff, const ds_tinfo *ti)
{
    const int jf = ds_model_find(ff, ti->name);
    return jf < 0 ? 0 : (double)ds_tinfo_bytes(&ds_model_get_meta(ff)->tensors[jf]);
}

/* ---- the plan: the bytes a rank holds per decoder layer, for the
 * embeddings (first stage) and for the final norm and head (last stage; a
 * tied model's head is its embeddings), of the student (tensor_bytes) and
 * of the teacher (teacher_bytes). */
typedef struct {
    double *s, *t;                  /* [n_layers] */
    double s_first, s_last, t_first, t_last;
} fit_sizes;

static void fit_bytes(ds_model_file *bf, ds_model_file *ff, const unsigned char *stored, fit_sizes *z)
{
    const ds_model_meta *fm = ds_model_get_meta(ff);
    const int L = fm->cfg.n_layers;
    ds_tinfo *ti;
    const int n = ds_llama_tensors(&fm->cfg, &ti); /* the config was checked by the caller */
    z->s_first = z->s_last = z->t_first = z->t_last = 0;
    for (int l = 0; l < L; l++) z->s[l] = z->t[l] = 0;
    for (int i = 0; i < n; i++) {
        const double bs = tensor_bytes(bf, &ti[i], stored[i]), bt = teacher_bytes(ff, &ti[i]);
        if (i == 0) {
            z->s_first += bs, z->t_first += bt;
            if (fm->cfg.tied_embeddings) z->s_last += bs, z->t_last += bt;
        } else if (i > DS_LLAMA_ROLES * L) z->s_last += bs, z->t_last += bt;
        else z->s[(i - 1) / DS_LLAMA_ROLES] += bs, z->t[(i - 1) / DS_LLAMA_ROLES] += bt;
    }
    free(ti);
}

/* The per-layer bytes the stages are balanced by: student + teacher when
 * both are held, the larger of the two with the teacher first (a stage then
 * holds one at a time). */
static void plan_bytes(const fit_sizes *z, int L, int teacher_first, double *lb, double *first, double *last)
{
#define PB(s, t) (teacher_first ? ((s) > (t) ? (s) : (t)) : (s) + (t))
    for (int l = 0; l < L; l++) lb[l] = PB(z->s[l], z->t[l]);
    *first = PB(z->s_first, z->t_first);
    *last = PB(z->s_last, z->t_last);
#undef PB
}

/* A rank's bytes with the P-stage split bounds: the largest stage's
 * weights and workspaces (a training workspace per window of its group's
 * share, the teacher's forward-only one), the calibration windows, the
 * per-window scale gradients, and 1 GiB for the program. Both models:
 * student + teacher + both workspaces. Teacher first: the larger of the
 * teacher with its workspace (phase 1) and the student with its workspaces
 * and, on the last stage, a window's logits read back (phase 2). */
static double fit_need(const opts *o, const ds_config *c, int ranks, int P, int teacher_first, const fit_sizes *z,
                       int *bounds, double *weights)
{
    const int L = c->n_layers, rows = (o->batch + ranks / P - 1) / (ranks / P);
    const double program = 1024.0 * 1024.0 * 1024.0;
    double *lb = ds_malloc(sizeof(double) * (size_t)L), first, last;
    plan_bytes(z, L, teacher_first, lb, &first, &last);
    *weights = ds_pipe_partition(L, lb, first, last, P, bounds) + program;
    free(lb);
    double worst = 0;
    for (int s = 0; s < P; s++) {
        double bs = (s == 0 ? z->s_first : 0) + (s == P - 1 ? z->s_last : 0);
        double bt = (s == 0 ? z->t_first : 0) + (s == P - 1 ? z->t_last : 0);
        for (int l = bounds[s]; l < bounds[s + 1]; l++) bs += z->s[l], bt += z->t[l];
        bs += ds_llama_act_bytes_stage(c, rows, o->seq_len, bounds[s], bounds[s + 1]);
        bt += ds_llama_act_bytes_fwd(c, 1, o->seq_len);
        if (teacher_first && s == P - 1) bs += (double)o->seq_len * c->vocab_size * sizeof(float);
        const double b = teacher_first ? (bs > bt ? bs : bt) : bs + bt;
        worst = b > worst ? b : worst;
    }
    /* the step's [batch, scales + 1] array of per-window scale gradients
     * (at most one scale per row or column of every matrix) */
    const double scales = L * (4.0 * c->dim + 3.0 * c->hidden_dim) + 2.0 * c->vocab_size + 1;
    return worst + (double)o->samples * o->seq_len * sizeof(int) + (double)o->batch * scales * 8 + program;
}

/* Collective: the stages per group (--pipeline, or the fewest that fit a
 * rank's memory) and whether the teacher runs first (--teacher-first, or
 * when both models at once fit at no allowed P), checked against the
 * memory, and the plan. Errors are printed once. */
static int fit_plan(const ds_ctx *ctx, const opts *o, ds_model_file *bf, ds_model_file *ff, inputs *in)
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
    fit_sizes z;
    z.s = ds_malloc(sizeof(double) * (size_t)L);
    z.t = ds_malloc(sizeof(double) * (size_t)L);
    int *bounds = ds_malloc(sizeof(int) * (size_t)(L + 1));
    fit_bytes(bf, ff, in->stored, &z);
    for (int p = 1; p <= L && p <= ctx->size; p++)
        if (ctx->size % p == 0) max_p = p;
    const double budget = ds_mem_rank_budget(ctx);
    double weights;
    /* both models at the fewest stages that fit, else the teacher first */
    const int p_lo = P ? P : 1, p_hi = P ? P : max_p;
    int tf = o->teacher_first, found = 0;
    for (int mode = tf; !found && mode <= 1; mode++)
        for (int p = p_lo; !found && p <= p_hi; p++)
            if (ctx->size % p == 0 && fit_need(o, c, ctx->size, p, mode, &z, bounds, &weights) <= budget)
                found = 1, P = p, tf = mode;
    if (!found) {
        if (!P) P = max_p; /* refused below, naming the most stages these ranks allow */
        tf = 1;            /* the least a rank can need */
    }
    in->tf_auto = tf && !o->teacher_first;
    in->teacher_first = tf;
    const double need = fit_need(o, c, ctx->size, P, tf, &z, bounds, &weights);
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
    if (!rc && !ctx->quiet) {
        double w;
        const double both = fit_need(o, c, ctx->size, P, 0, &z, bounds, &w), one = fit_need(o, c, ctx->size, P, 1, &z,
                                                                                              bounds, &w);
        ds_printf0(ctx, "[fit-scales] memory per rank at --pipeline %d: %.0f bytes with both models, %.0f with the "
                   "teacher first; %.0f available\n", P, both, one, budget);
    }
    if (!rc) {
        double *lb = ds_malloc(sizeof(double) * (size_t)L), first, last;
        plan_bytes(&z, L, tf, lb, &first, &last);
        ds_pipe_init(&in->pipe, ctx->comm, P, L, lb, first, last);
        free(lb);
    }
    free(z.s);
    free(z.t);
    free(bounds);
    return rc;
}

/* Collective: the two models' metadata (same config), the plan and the
 * base's tokenizer; the stages are loaded by load_teacher and load_student.
 * The delta is open (it says which tensors it codes: stored_mask). */
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
    in->cfg = bm->cfg;
    rc = ds_delta_check_config(o->ft, &fm->cfg, o->base, &bm->cfg);
    if (!rc && !bm->has_tokenizer)
        rc = ds_err(DS_EXIT_INPUT, "%s: no tokenizer in the checkpoint (import it with --tokenizer)", o->base);
    if (!rc) in->stored = stored_mask(ds_delta_get_meta(in->delta), bf);
    if (!(rc = ds_ctx_agree(ctx, rc)) && !(rc = fit_plan(ctx, o, bf, ff, in))) {
        in->have_tok = !(rc = ds_model_read_tokenizer(bf, &in->tok));
        rc = ds_ctx_agree(ctx, rc);
    }
    ds_model_close(ff);
    ds_model_close(bf);
    return rc;
}

/* Collective: this rank's stage of a model opened again, which must still
 * have the content hash read by load_models; tensor i as stored where
 * stored[i] (NULL: every tensor as stored). */
static int load_stage_again(const ds_ctx *ctx, const inputs *in, const char *path, const char *sha,
                            const unsigned char *stored, ds_llama *m)
{
    ds_model_file *mf = NULL;
    int rc = ds_model_open(path, ctx->comm, &mf);
    if (rc) return rc;
    if (strcmp(ds_model_get_meta(mf)->content_sha256, sha))
        rc = ds_err(DS_EXIT_INPUT, "%s: changed while fit-scales ran (content_sha256 %.12s..., was %.12s...)", path,
                    ds_model_get_meta(mf)->content_sha256, sha);
    if (!rc)
        rc = stored ? ds_llama_load_stage_mask(m, mf, stored, in->pipe.l0, in->pipe.l1)
                    : ds_llama_load_stage(m, mf, DS_LLAMA_LOAD_STORED, in->pipe.l0, in->pipe.l1);
    ds_model_close(mf);
    return ds_ctx_agree(ctx, rc);
}

/* Collective: the teacher's stage. It only runs forward: its weights as
 * stored (bf16: half the memory of f32; its logits equal the f32 engine's
 * on the same weights, docs/model.md "Numerics and kernels"). */
static int load_teacher(const ds_ctx *ctx, const opts *o, inputs *in)
{
    return load_stage_again(ctx, in, o->ft, in->ft_sha, NULL, &in->teacher);
}

/* Collective: the student's stage (the base in f32, its coded f16/bf16
 * linears as stored: stored_mask) with the delta's coded tensors and dense
 * deltas (with the teacher first: after its phase). */
static int load_student(const ds_ctx *ctx, const opts *o, inputs *in)
{
    int rc = load_stage_again(ctx, in, o->base, in->base_sha, in->stored, &in->student);
    if (!rc) rc = ds_ctx_agree(ctx, ds_delta_read_for_fit(in->delta, o->base, &in->student, &in->coded));
    return rc;
}

/* Collective: open and check everything; errors printed once. Both models'
 * stages are loaded here when both are held; with the teacher first, the
 * teacher's phase loads them one after the other. */
static int load_inputs(const ds_ctx *ctx, const opts *o, inputs *in)
{
    memset(in, 0, sizeof *in);
    int rc = ds_delta_open(o->delta, ctx->comm, &in->delta);
    if (rc || (rc = load_models(ctx, o, in))) return rc;
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    rc = ds_delta_check_base(o->delta, dm->base_sha256, o->base, in->base_sha, o->force, ctx->rank);
    if (!rc) rc = ds_delta_check_config(o->delta, &dm->cfg, o->base, &in->cfg);
    if ((rc = ds_ctx_agree(ctx, rc)) || in->teacher_first) return rc;
    if (!(rc = load_teacher(ctx, o, in))) rc = load_student(ctx, o, in);
    return rc;
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
    if (o->seq_len > in->cfg.max_seq_len)
        return ds_err(DS_EXIT_USAGE, "--seq-len %d exceeds the model's max_seq_len %d", o->seq_len,
                      in->cfg.max_seq_len);
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

/* ---- teacher first (docs/fit-scales.md "Teacher first"): phase 1 runs
 * the teacher alone through the stages over every window the job will use,
 * the last stage of each group writing its windows' logits to a cache file;
 * the teacher is freed and the student loaded; the steps and comparisons
 * read the logits back (ds_fitpipe_ref). A group's last stage caches its
 * own share of the windows (the shares of ds_fitpipe_step/_compare), in
 * slots: its held-out windows, then its rows of each step to run. */
typedef struct {
    ds_logit_cache lc;
    int open;
    double *nll;         /* [n_hold]: the teacher's NLL sum of each held-out window (its group's, last stage) */
    int64_t hlo, hhi;    /* this group's share of the held-out windows */
    int64_t blo, bhi;    /* ... and of a step's rows */
    int64_t start;       /* the steps done before this run (the checkpoint's) */
    int64_t step;        /* the step being cached or run */
    int rc;              /* a cache error of this rank (message set) */
} tcache;

static void tcache_free(tcache *tc)
{
    if (tc->open) ds_logit_cache_close(&tc->lc);
    free(tc->nll);
    memset(tc, 0, sizeof *tc);
}

static int64_t tcache_slot(const tcache *tc, int train, int64_t row)
{
    return train ? (tc->hhi - tc->hlo) + (tc->step - tc->start - 1) * (tc->bhi - tc->blo) + (row - tc->blo)
                 : row - tc->hlo;
}

static int sink_hold(void *arg, int64_t row, const float *logits, double nll)
{
    tcache *tc = arg;
    tc->nll[row] = nll;
    return tc->rc = ds_logit_cache_put(&tc->lc, tcache_slot(tc, 0, row), logits);
}

static int sink_step(void *arg, int64_t row, const float *logits, double nll)
{
    (void)nll;
    tcache *tc = arg;
    return tc->rc = ds_logit_cache_put(&tc->lc, tcache_slot(tc, 1, row), logits);
}

/* ds_fitpipe_ref's logits: phase 2 reads a row's slot back. */
static int ref_logits(void *arg, int train, int64_t row, float *buf)
{
    tcache *tc = arg;
    return tc->rc = ds_logit_cache_get(&tc->lc, tcache_slot(tc, train, row), buf);
}

/* Collective, after a failed pass through the stages: the cache's error
 * where a rank had one (a write or read of the teacher's logits; tc NULL:
 * no cache), else msg (a stage failed: a message of another shape). */
static int pass_failed(const ds_ctx *ctx, const tcache *tc, const char *msg)
{
    const int rc = tc ? ds_ctx_agree(ctx, tc->rc) : 0;
    return rc ? rc : ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s", msg));
}

/* The windows of a step (every rank has them all; a group uses its share). */
static void step_windows(const opts *o, calib *c, int64_t step, int *tokens)
{
    const int T = c->w.T;
    for (int b = 0; b < o->batch; b++)
        memcpy(tokens + b * T, ds_token_windows_train(&c->w, (uint64_t)o->seed, (step - 1) * o->batch + b),
               (size_t)T * sizeof(int));
}

/* Collective: the step a checkpoint in --checkpoint holds (0 without one),
 * read before the student exists; ckpt_restore checks the whole record
 * later. */
static int ckpt_peek_step(const ds_ctx *ctx, const opts *o, int64_t *start)
{
    int64_t step = 0;
    int rc = 0;
    if (o->ckpt && ctx->rank == 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", o->ckpt, CKPT_FILE);
        rc = ds_ckpt_mkdir(o->ckpt);
        if (!rc && access(path, F_OK) == 0) {
            ds_ckpt *k = NULL;
            rc = ds_ckpt_read(path, &k);
            if (!rc) rc = ds_ckpt_get_int(k, "step", &step);
            if (!rc && step > o->steps)
                rc = ds_err(DS_EXIT_INPUT, "%s: checkpoint is at step %lld, past --steps %d", path, (long long)step,
                            o->steps);
            ds_ckpt_free(k);
        }
    }
    rc = ds_ctx_agree(ctx, rc);
    MPI_Bcast(&step, 1, MPI_INT64_T, 0, ctx->comm);
    *start = step;
    return rc;
}

/* The scratch folder: --scratch, else $TMPDIR, else /tmp. */
static const char *scratch_dir(const opts *o)
{
    const char *t = getenv("TMPDIR");
    return o->scratch ? o->scratch : t && t[0] ? t : "/tmp";
}

/* Collective, teacher first: phase 1 (the checkpoint's step, room in the
 * scratch folder, the teacher's stage, its logits of every held-out window
 * and of every window of steps start+1 .. --steps into the cache), then the
 * teacher freed. */
static int teacher_phase(const ds_ctx *ctx, const opts *o, inputs *in, calib *c, tcache *tc)
{
    memset(tc, 0, sizeof *tc);
    int rc = ckpt_peek_step(ctx, o, &tc->start);
    if (rc) return rc;
    const ds_pipe *p = &in->pipe;
    const int T = c->w.T;
    const char *dir = scratch_dir(o);
    const int64_t steps = o->steps - tc->start, windows = c->w.n_hold + steps * o->batch;
    const double slot = (double)T * in->cfg.vocab_size * sizeof(float), bytes = (double)windows * slot;
    ds_shard_range(c->w.n_hold, p->group, p->groups, &tc->hlo, &tc->hhi);
    ds_shard_range(o->batch, p->group, p->groups, &tc->blo, &tc->bhi);
    if (!ctx->quiet)
        ds_printf0(ctx,
                   "[fit-scales] teacher first%s: the teacher runs alone over %lld windows (%lld held-out, %lld "
                   "steps x %d) and its logits, %.0f bytes (%.2f GiB), go to %s; then it is freed and the student "
                   "loaded\n",
                   in->tf_auto ? " (both models do not fit a rank's memory)" : "", (long long)windows,
                   (long long)c->w.n_hold, (long long)steps, o->batch, bytes, bytes / 1073741824.0, dir);
    /* every rank checks (the last stages of a node share the folder) */
    rc = ds_logit_cache_check_room(dir, bytes);
    if (!rc && p->last) {
        const int64_t slots = (tc->hhi - tc->hlo) + steps * (tc->bhi - tc->blo);
        tc->nll = ds_calloc((size_t)c->w.n_hold + 1, sizeof(double));
        if (!(rc = ds_logit_cache_open(&tc->lc, dir, slots, (int64_t)T * in->cfg.vocab_size))) tc->open = 1;
    }
    if ((rc = ds_ctx_agree(ctx, rc)) || (rc = load_teacher(ctx, o, in))) return rc;
    ds_llama_threads_auto(ctx);
    ds_teacherpipe tp;
    ds_teacherpipe_init(&tp, p, &in->teacher, T);
    int *tokens = ds_malloc((size_t)o->batch * T * sizeof(int));
    ds_progress prog;
    ds_progress_init(&prog, ctx, "teacher step", steps);
    const double t0 = ds_now();
    if (ds_teacherpipe_run(&tp, ctx->comm, c->w.hold, c->w.n_hold, 1, sink_hold, tc))
        rc = pass_failed(ctx, tc, "the teacher on the held-out windows: a pipeline stage failed");
    for (int64_t step = tc->start + 1; !rc && step <= o->steps; step++) {
        step_windows(o, c, step, tokens); /* as fit_train */
        tc->step = step;
        if (ds_teacherpipe_run(&tp, ctx->comm, tokens, o->batch, 0, sink_step, tc)) {
            char msg[96];
            snprintf(msg, sizeof msg, "the teacher at step %lld: a pipeline stage failed", (long long)step);
            rc = pass_failed(ctx, tc, msg);
            break;
        }
        ds_progress_step(&prog, step - tc->start, "%.1f MiB of logits written",
                         (double)(c->w.n_hold + (step - tc->start) * o->batch) * slot / 1048576.0);
    }
    free(tokens);
    ds_teacherpipe_free(&tp);
    ds_llama_free(&in->teacher); /* the peak holds one model */
    memset(&in->teacher, 0, sizeof in->teacher);
    if (!rc && !ctx->quiet)
        ds_printf0(ctx, "[fit-scales] teacher done in %.1fs; loading the student\n", ds_now() - t0);
    return rc;
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
    tcache *tc;         /* teacher first: the cached logits; NULL: the teacher runs with the student */
} fit;

static int fit_init(ds_ctx *ctx, const opts *o, inputs *in, const calib *c, tcache *tc, fit *ft)
{
    memset(ft, 0, sizeof *ft);
    ft->tc = in->teacher_first ? tc : NULL;
    ds_llama_threads_auto(ctx);
    ds_fitscales_init(&ft->f, &in->student, in->coded.n, in->coded.c, (ds_fit_objective)o->objective, o->lr);
    ft->have_f = 1;
    for (int k = 0; k < in->coded.n; k++) { /* f holds its own copy of the signs */
        free(in->coded.bits[k]);
        in->coded.bits[k] = NULL;
        in->coded.c[k].bits = NULL;
    }
    ft->T = c->w.T;
    const ds_fitpipe_ref ref = {ref_logits, tc, tc->nll};
    ds_fitpipe_init(&ft->fp, &in->pipe, &ft->f, ft->tc ? NULL : &in->teacher, ft->tc ? &ref : NULL, o->batch,
                    ft->T);
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
        step_windows(o, c, step, tokens);
        /* One reduction: scale gradients, objective, and whether any rank
         * was signalled (so that all ranks stop after the same step). */
        double loss = 0, signalled = ds_ckpt_stop_requested() != 0;
        if (ft->tc) ft->tc->step = step; /* the slots of this step's logits */
        if (ds_fitpipe_step(&ft->fp, ctx->comm, tokens, gscale, &loss, &signalled)) {
            char msg[4200];
            snprintf(msg, sizeof msg, "%s: a pipeline stage failed at step %lld", o->delta, (long long)step);
            rc = pass_failed(ctx, ft->tc, msg);
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
        return pass_failed(ctx, ft->tc, "the held-out comparison: a pipeline stage failed");
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
    tcache tc;
    memset(&c, 0, sizeof c);
    memset(&ft, 0, sizeof ft);
    memset(&tc, 0, sizeof tc);
    if ((rc = load_inputs(ctx, o, &in))) goto out;
    if ((rc = ds_ctx_agree(ctx, calib_load(o, &in, &c)))) goto out;
    /* teacher first: its phase, then the student */
    if (in.teacher_first && ((rc = teacher_phase(ctx, o, &in, &c, &tc)) || (rc = load_student(ctx, o, &in))))
        goto out;
    if ((rc = fit_init(ctx, o, &in, &c, &tc, &ft))) goto out;
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
    if (!rc && ft.tc && ft.f.step != tc.start) /* the teacher's phase cached steps tc.start+1 .. --steps */
        rc = ds_ctx_agree(ctx, ds_err(DS_EXIT_INPUT, "%s: the checkpoint changed during the teacher's phase (step "
                                      "%lld, was %lld)", ft.ckpath, (long long)ft.f.step, (long long)tc.start));
    if (!rc) rc = fit_train(ctx, o, &in, &c, &ft);
    if (!rc && ft.stopped) {
        ds_printf0(ctx, "[fit-scales] signal: checkpoint at step %lld written to %s; run again to resume\n",
                   (long long)ft.f.step, ft.ckpath);
        rc = DS_EXIT_CHECKPOINTED;
    }
    if (!rc) rc = fit_finish(ctx, o, &in, &c, &ft, &before);
out:
    fit_free(&ft);
    tcache_free(&tc);
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
