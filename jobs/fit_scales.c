/* deltasoup fit-scales: fit a BitDelta delta's scales to the fine-tuned
 * model on a calibration text (docs/fit-scales.md). The teacher is the
 * fine-tuned model, the student base + g(2b - 1) plus the dense deltas; only
 * the scales move (src/fitscales.h). Data-parallel: each rank takes a share
 * of every batch, scale gradients are all-reduced, every rank keeps the same
 * scales. Resumable: --checkpoint DIR (src/checkpoint.h); SIGUSR1/SIGTERM
 * finish the step, checkpoint and exit 75. */
#include "config.h"
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/h5.h"
#include "io/h5_delta.h"
#include "io/h5_model.h"
#include "src/checkpoint.h"
#include "src/comm.h"
#include "src/device_ops.h"
#include "src/fitscales.h"
#include "src/hash.h"
#include "src/jobs.h"
#include "io/model_io.h"
#include "src/shard.h"

#define CKPT_FILE "fit-scales.ckpt"

static void usage(const ds_ctx *ctx)
{
    ds_printf0(ctx,
               "usage: deltasoup fit-scales --base B.h5 --finetuned F.h5 --delta D.bd.h5 --calib TEXT -o OUT.bd.h5\n"
               "                            [options]\n"
               "Fit the scales of a BitDelta delta so that base + g(2b - 1) (plus the dense deltas) matches the\n"
               "fine-tuned model's next-token distribution on a calibration text; signs and everything else stay.\n"
               "Only the scales (per tensor, or per row/column when the delta has them) are trained, with Adam\n"
               "(beta 0.9/0.999, eps 1e-8). TEXT splits into documents, each tokenized with BOS and concatenated,\n"
               "then cut into windows of --seq-len tokens; up to --samples windows are drawn (seeded), a\n"
               "--holdout share of them is kept aside for the report.\n\n"
               "  --base B.h5            base checkpoint the delta was made for\n"
               "  --finetuned F.h5       the fine-tuned model (the teacher)\n"
               "  --delta D.bd.h5        delta from compress (or an earlier fit-scales)\n"
               "  --calib TEXT           calibration text\n"
               "  -o, --output OUT       fitted delta (signs and dense parts copied, scales replaced)\n"
               "  --objective kl|mse     KL(p_finetuned || p_student) per token (default) or logit MSE\n"
               "  --steps N              Adam steps (default 200)\n"
               "  --lr LR                learning rate (default 1e-4)\n"
               "  --batch B              windows per step, shared out across ranks (default 4)\n"
               "  --seq-len T            tokens per window (default 128, at most the model's max_seq_len)\n"
               "  --samples N            calibration windows drawn from TEXT (default 800)\n"
               "  --holdout FRACTION     share of the windows held out for the report (default 0.1)\n"
               "  --seed S               window and batch sampling seed (default 1234)\n"
               "  --checkpoint DIR       keep resumable state in DIR; a run with the same DIR resumes\n"
               "  --checkpoint-every N   steps between checkpoints (default 20)\n"
               "  --report R.json        write objective, held-out KL and NLL before and after as JSON\n"
               "  --force                use a delta made for another base (a warning instead of an error)\n"
               "  --device cpu           where it runs: cpu only (the model engine runs on the CPU; --device\n"
               "                         cuda is not supported by this job yet)\n"
               "  --overwrite            replace an existing output / report\n"
               "  --quiet                no progress lines\n"
               "  -h, --help             this help\n\n"
               "With --checkpoint, SIGUSR1 or SIGTERM makes every rank finish the current step, write a\n"
               "checkpoint and exit with code 75; running the same command again continues and ends with the\n"
               "same scales as an uninterrupted run at the same number of ranks.\n");
}

typedef struct {
    const char *base, *ft, *delta, *calib, *out, *ckpt, *report;
    ds_fit_objective objective;
    long steps, batch, seq_len, samples, seed, every;
    double lr, holdout;
    int force, overwrite;
} opts;

static int parse(ds_ctx *ctx, int argc, char **argv, opts *o)
{
    enum { O_BASE = 256, O_FT, O_DELTA, O_CALIB, O_OBJ, O_STEPS, O_LR, O_BATCH, O_SEQ, O_SAMPLES, O_HOLD, O_SEED,
           O_CKPT, O_EVERY, O_REPORT, O_FORCE, O_OVER, O_QUIET, O_DEVICE };
    static const struct option lo[] = {
        {"base", 1, 0, O_BASE},       {"finetuned", 1, 0, O_FT},     {"delta", 1, 0, O_DELTA},
        {"calib", 1, 0, O_CALIB},     {"output", 1, 0, 'o'},         {"objective", 1, 0, O_OBJ},
        {"steps", 1, 0, O_STEPS},     {"lr", 1, 0, O_LR},            {"batch", 1, 0, O_BATCH},
        {"seq-len", 1, 0, O_SEQ},     {"samples", 1, 0, O_SAMPLES},  {"holdout", 1, 0, O_HOLD},
        {"seed", 1, 0, O_SEED},       {"checkpoint", 1, 0, O_CKPT},  {"checkpoint-every", 1, 0, O_EVERY},
        {"report", 1, 0, O_REPORT},   {"force", 0, 0, O_FORCE},      {"overwrite", 0, 0, O_OVER},
        {"quiet", 0, 0, O_QUIET},     {"device", 1, 0, O_DEVICE},    {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->objective = DS_FIT_KL;
    o->steps = 200;
    o->batch = 4;
    o->seq_len = 128;
    o->samples = 800;
    o->seed = 1234;
    o->every = 20;
    o->lr = 1e-4;
    o->holdout = 0.1;
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case O_BASE: o->base = optarg; break;
        case O_FT: o->ft = optarg; break;
        case O_DELTA: o->delta = optarg; break;
        case O_CALIB: o->calib = optarg; break;
        case 'o': o->out = optarg; break;
        case O_OBJ:
            if (ds_fit_objective_parse(optarg, &o->objective) != 0)
                rc = ds_err(DS_EXIT_USAGE, "--objective: '%s' is not kl or mse", optarg);
            break;
        case O_STEPS: rc = ds_parse_int("--steps", optarg, 0, 1L << 30, &o->steps); break;
        case O_LR: rc = ds_parse_double("--lr", optarg, 1e-12, 10, &o->lr); break;
        case O_BATCH: rc = ds_parse_int("--batch", optarg, 1, 1 << 16, &o->batch); break;
        case O_SEQ: rc = ds_parse_int("--seq-len", optarg, 2, 1 << 20, &o->seq_len); break;
        case O_SAMPLES: rc = ds_parse_int("--samples", optarg, 1, 1L << 30, &o->samples); break;
        case O_HOLD: rc = ds_parse_double("--holdout", optarg, 0, 0.9, &o->holdout); break;
        case O_SEED: rc = ds_parse_int("--seed", optarg, 0, INT64_MAX, &o->seed); break;
        case O_CKPT: o->ckpt = optarg; break;
        case O_EVERY: rc = ds_parse_int("--checkpoint-every", optarg, 1, 1L << 30, &o->every); break;
        case O_REPORT: o->report = optarg; break;
        case O_FORCE: o->force = 1; break;
        case O_OVER: o->overwrite = 1; break;
        case O_QUIET: ctx->quiet = 1; break;
        case O_DEVICE: rc = ds_dev_cpu_only(optarg); break;
        case 'h': return -1;
        case ':': return ds_err(DS_EXIT_USAGE, "%s needs a value (see --help)", argv[optind - 1]);
        default: return ds_err(DS_EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (rc) return rc;
    if (optind < argc) return ds_err(DS_EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->base || !o->ft || !o->delta || !o->calib || !o->out)
        return ds_err(DS_EXIT_USAGE, "--base, --finetuned, --delta, --calib and -o are required");
    if (o->report && strcmp(o->report, o->out) == 0)
        return ds_err(DS_EXIT_USAGE, "--report and -o name the same file %s", o->out);
    return 0;
}

/* ---- inputs: student (base + dense deltas, coded tensors rebuilt by
 * ds_fitscales_init), teacher, tokenizer, the delta's coded tensors. */
typedef struct {
    ds_llama student, teacher;
    ds_tokenizer tok;
    int have_tok;
    ds_delta_file *delta;
    char base_sha[65], ft_sha[65];
    int n_coded;
    ds_fit_coded *coded;
    uint64_t **bits;
    float **scales;
} inputs;

static void inputs_free(inputs *in)
{
    for (int k = 0; k < in->n_coded; k++) {
        free(in->bits[k]);
        free(in->scales[k]);
    }
    free(in->bits);
    free(in->scales);
    free(in->coded);
    if (in->have_tok) ds_tokenizer_free(&in->tok);
    if (in->student.w) ds_llama_free(&in->student);
    if (in->teacher.w) ds_llama_free(&in->teacher);
    ds_delta_close(in->delta);
}

/* Independent: check every delta entry against the student, add the dense
 * deltas, read signs and scales of the coded ones. */
static int read_delta(const opts *o, inputs *in)
{
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    int rc = 0;
    in->bits = ds_calloc((size_t)(dm->n ? dm->n : 1), sizeof *in->bits);
    in->scales = ds_calloc((size_t)(dm->n ? dm->n : 1), sizeof *in->scales);
    in->coded = ds_calloc((size_t)(dm->n ? dm->n : 1), sizeof *in->coded);
    for (int k = 0; k < dm->n && !rc; k++) {
        const ds_delta_entry *e = &dm->entries[k];
        const int i = ds_llama_find(&in->student, e->t.name);
        char s1[96], s2[96];
        if (i < 0) return ds_err(DS_EXIT_INPUT, "%s: tensor %s is not in the base %s", o->delta, e->t.name, o->base);
        const ds_tinfo *t = &in->student.tinfo[i];
        if (!ds_tinfo_same_shape(t, &e->t))
            return ds_err(DS_EXIT_INPUT, "%s: tensor %s: shape %s, but %s has %s", o->delta, e->t.name,
                          ds_shape_str(&e->t, s1, sizeof s1), o->base, ds_shape_str(t, s2, sizeof s2));
        if (!e->coded) {
            size_t n = (size_t)ds_tinfo_numel(t);
            float *d = ds_malloc(n * sizeof(float) + 1);
            rc = ds_delta_read_dense(in->delta, k, DS_DTYPE_F32, d);
            if (!rc) ds_delta_add_dense(DS_DTYPE_F32, in->student.w[i], DS_DTYPE_F32, d, n);
            free(d);
            continue;
        }
        const int c = in->n_coded++;
        in->bits[c] = ds_malloc(sizeof(uint64_t) * (size_t)(e->rows * e->words_per_row) + 1);
        in->scales[c] = ds_malloc(sizeof(float) * (size_t)e->n_scales);
        rc = ds_delta_read_signs(in->delta, k, in->bits[c]);
        if (!rc) rc = ds_delta_read_scales(in->delta, k, in->scales[c]);
        for (int64_t j = 0; !rc && j < e->n_scales; j++)
            if (!isfinite(in->scales[c][j]))
                rc = ds_err(DS_EXIT_INPUT, "%s: tensor %s: scale %lld is not finite", o->delta, e->t.name,
                            (long long)j);
        in->coded[c] = (ds_fit_coded){i, e->mode, in->bits[c], in->scales[c]};
    }
    if (!rc && in->n_coded == 0)
        rc = ds_err(DS_EXIT_INPUT, "%s: no 1-bit coded tensor, nothing to fit", o->delta);
    return rc;
}

/* Collective: open and check everything; errors printed once. */
static int load_inputs(const ds_ctx *ctx, const opts *o, inputs *in)
{
    memset(in, 0, sizeof *in);
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
    if (!ds_delta_config_same(&bm->cfg, &fm->cfg))
        rc = ds_err(DS_EXIT_INPUT, "%s: config differs from the base %s (dim %d/%d, layers %d/%d, vocab %d/%d)", o->ft,
                    o->base, fm->cfg.dim, bm->cfg.dim, fm->cfg.n_layers, bm->cfg.n_layers, fm->cfg.vocab_size,
                    bm->cfg.vocab_size);
    else if (!bm->has_tokenizer)
        rc = ds_err(DS_EXIT_INPUT, "%s: no tokenizer in the checkpoint (import it with --tokenizer)", o->base);
    if (!rc) rc = ds_llama_load(&in->student, bf);
    if (!rc) rc = ds_llama_load(&in->teacher, ff);
    if (!rc) in->have_tok = !(rc = ds_model_read_tokenizer(bf, &in->tok));
    rc = ds_ctx_agree(ctx, rc);
    ds_model_close(ff);
    ds_model_close(bf);
    if (rc) return rc;
    if ((rc = ds_delta_open(o->delta, ctx->comm, &in->delta))) return rc;
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    rc = ds_delta_check_base(o->delta, dm->base_sha256, o->base, in->base_sha, o->force, ctx->rank);
    if (!rc) rc = ds_delta_check_config(o->delta, &dm->cfg, o->base, &in->student.cfg);
    if (!rc) rc = read_delta(o, in);
    return ds_ctx_agree(ctx, rc);
}

/* ---- calibration windows */
typedef struct {
    int T;
    int64_t n_train, n_hold;
    int *train, *hold; /* windows of T tokens */
    char sha[65];      /* SHA-256 of the calibration file */
    int64_t stream_tokens, windows_available;
} calib;

static void calib_free(calib *c)
{
    free(c->train);
    free(c->hold);
}

/* Fisher-Yates with a splitmix64 stream. */
static void shuffle(int64_t *p, int64_t n, uint64_t seed)
{
    ds_rng r = {seed};
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ds_rng_u64(&r) % (uint64_t)(i + 1));
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

static int calib_build(const opts *o, inputs *in, calib *c)
{
    memset(c, 0, sizeof *c);
    c->T = (int)o->seq_len;
    if (o->seq_len > in->student.cfg.max_seq_len)
        return ds_err(DS_EXIT_USAGE, "--seq-len %ld exceeds the model's max_seq_len %d", o->seq_len,
                      in->student.cfg.max_seq_len);
    char *text;
    size_t len;
    int rc = ds_read_file(o->calib, &text, &len);
    if (rc) return rc;
    ds_digest d;
    ds_sha256_buf(text, len, &d);
    ds_digest_hex(&d, c->sha);
    ds_text_docs docs;
    ds_text_split(text, &docs);
    free(text);
    if (docs.n == 0) {
        ds_text_docs_free(&docs);
        return ds_err(DS_EXIT_INPUT, "%s: no text (empty calibration file)", o->calib);
    }
    size_t cap = 0;
    for (int k = 0; k < docs.n; k++) cap += strlen(docs.docs[k]) + 3;
    int *stream = ds_malloc(cap * sizeof *stream);
    int64_t n = 0;
    for (int k = 0; k < docs.n; k++) n += ds_tokenizer_encode(&in->tok, docs.docs[k], 1, 0, stream + n);
    ds_text_docs_free(&docs);
    c->stream_tokens = n;
    const int64_t nw = n / c->T;
    c->windows_available = nw;
    const int64_t use = nw < o->samples ? nw : o->samples;
    int64_t hold = (int64_t)floor(o->holdout * (double)use);
    if (o->holdout > 0 && hold == 0 && use >= 2) hold = 1;
    if (use - hold < 1) {
        free(stream);
        return ds_err(DS_EXIT_INPUT, "%s: %lld tokens make %lld window(s) of --seq-len %d; need at least %d",
                      o->calib, (long long)n, (long long)nw, c->T, o->holdout > 0 ? 2 : 1);
    }
    int64_t *perm = ds_malloc((size_t)nw * sizeof *perm);
    shuffle(perm, nw, (uint64_t)o->seed ^ 0x63616c6962ull); /* "calib" */
    c->n_train = use - hold;
    c->n_hold = hold;
    c->train = ds_malloc((size_t)(c->n_train * c->T) * sizeof(int));
    c->hold = ds_malloc((size_t)((hold ? hold : 1) * c->T) * sizeof(int));
    for (int64_t k = 0; k < use; k++) {
        int *dst = k < c->n_train ? c->train + k * c->T : c->hold + (k - c->n_train) * c->T;
        memcpy(dst, stream + perm[k] * c->T, (size_t)c->T * sizeof(int));
    }
    free(perm);
    free(stream);
    return 0;
}

/* The training window of global sample position p (step s, row r: p =
 * (s - 1) * batch + r): epoch e = p / n_train walks a permutation of the
 * training windows seeded by (seed, e). A pure function of the position, so
 * the data position of a checkpoint is just its step. */
typedef struct {
    int64_t epoch;
    int64_t *perm;
} epoch_cache;

static const int *train_window(const calib *c, uint64_t seed, epoch_cache *ec, int64_t p)
{
    const int64_t e = p / c->n_train;
    if (e != ec->epoch) {
        shuffle(ec->perm, c->n_train, seed * 0x9e3779b97f4a7c15ull + (uint64_t)e);
        ec->epoch = e;
    }
    return c->train + ec->perm[p % c->n_train] * c->T;
}

/* ---- held-out evaluation: KL and MSE to the teacher, NLL of the student
 * and of the teacher, summed over the windows of every rank. */
typedef struct {
    double kl, mse, nll, nll_teacher;
    int64_t tokens, predicted;
} held_stats;

static void eval_heldout(const ds_ctx *ctx, ds_comm *comm, const calib *c, ds_llama *student, ds_llama *teacher,
                         ds_llama_act *sa, ds_llama_act *ta, int maxb, held_stats *out)
{
    int64_t lo, hi;
    ds_shard_range(c->n_hold, ctx->rank, ctx->size, &lo, &hi);
    const int T = c->T;
    int *targets = ds_malloc((size_t)maxb * T * sizeof(int));
    double s[4] = {0, 0, 0, 0};
    for (int64_t w = lo; w < hi; w += maxb) {
        const int B = (int)(hi - w < maxb ? hi - w : maxb);
        const int *tok = c->hold + w * T;
        for (int b = 0; b < B; b++) {
            memcpy(targets + b * T, tok + b * T + 1, (size_t)(T - 1) * sizeof(int));
            targets[b * T + T - 1] = -1;
        }
        const float *ref = ds_llama_forward(teacher, ta, tok, B, T);
        s[3] += ds_llama_loss_ce(ta, targets, 0, NULL);
        ds_llama_forward(student, sa, tok, B, T);
        s[0] += ds_llama_loss_kl(sa, ref, NULL, 0, NULL);
        s[1] += ds_llama_loss_mse(sa, ref, NULL, 0, NULL);
        s[2] += ds_llama_loss_ce(sa, targets, 0, NULL);
    }
    free(targets);
    ds_comm_allreduce_sum_f64(comm, s, s, 4);
    out->tokens = c->n_hold * T;
    out->predicted = c->n_hold * (T - 1);
    const double nt = out->tokens ? (double)out->tokens : 1, np = out->predicted ? (double)out->predicted : 1;
    out->kl = s[0] / nt;
    out->mse = s[1] / nt;
    out->nll = s[2] / np;
    out->nll_teacher = s[3] / np;
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
        rc = ds_err(DS_EXIT_INPUT, "%s: checkpoint is at step %lld, past --steps %ld", path, (long long)step, o->steps);
    if (!rc) rc = ds_ckpt_get_array(k, "scales", DS_DTYPE_F32, f->n_scales, f->scales);
    if (!rc) rc = ds_ckpt_get_array(k, "adam_m", DS_DTYPE_F64, f->n_scales, f->m);
    if (!rc) rc = ds_ckpt_get_array(k, "adam_v", DS_DTYPE_F64, f->n_scales, f->v);
    ds_ckpt_free(k);
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    f->step = step;
    ds_fitscales_rebuild(f);
    if (!ctx->quiet)
        ds_printf0(ctx, "[fit-scales] resuming from %s at step %lld%s\n", path, (long long)step,
               ranks != ctx->size ? " (saved with another number of ranks: results may differ in rounding)" : "");
    return 0;
}

/* ---- output: the input delta with the fitted scales, written through a
 * staging name (OUT.part) so that the fit's provenance attributes can be
 * added after ds_delta_commit, then renamed to OUT: OUT appears complete or
 * not at all. */
typedef struct {
    double objective_before, objective_after;
    const held_stats *before, *after;
} fit_summary;

static int write_attrs(const char *path, const opts *o, const calib *c, const ds_delta_meta *dm,
                       const fit_summary *s)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) return ds_err(DS_EXIT_OUTPUT, "%s: cannot reopen to record the fit", path);
    int rc = ds_h5_attr_set_int(file, "scale_fit_steps", o->steps);
    if (!rc) rc = ds_h5_attr_set_double(file, "scale_fit_lr", o->lr);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_batch", o->batch);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_seq_len", o->seq_len);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_samples", c->n_train);
    if (!rc) rc = ds_h5_attr_set_int(file, "scale_fit_seed", o->seed);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_calib_sha256", c->sha);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_from", dm->scale_fit);
    if (!rc) rc = ds_h5_attr_set_str(file, "scale_fit_input_sha256", dm->content_sha256);
    /* The objective on the held-out windows (none with --holdout 0). */
    if (!rc && c->n_hold) rc = ds_h5_attr_set_double(file, "scale_fit_objective_initial", s->objective_before);
    if (!rc && c->n_hold) rc = ds_h5_attr_set_double(file, "scale_fit_objective_final", s->objective_after);
    if (H5Fclose(file) < 0 && !rc) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot close after recording the fit", path);
    return rc;
}

static int write_output(const ds_ctx *ctx, const opts *o, const calib *c, inputs *in, const ds_fitscales *f,
                        const fit_summary *s)
{
    const ds_delta_meta *dm = ds_delta_get_meta(in->delta);
    ds_delta_meta meta = *dm;
    snprintf(meta.scale_fit, sizeof meta.scale_fit, "%s", ds_fit_objective_name(o->objective));
    char stage[4200];
    snprintf(stage, sizeof stage, "%s.part", o->out);
    ds_delta_file *d;
    int rc = ds_delta_create(stage, ctx->comm, &meta, 1, &d);
    if (rc) return rc;
    const int n = dm->n;
    int64_t *sizes = ds_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int *owner = ds_malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int k = 0; k < n; k++) sizes[k] = (int64_t)ds_delta_entry_bytes(&dm->entries[k], NULL);
    ds_shard_by_size(n, sizes, ctx->size, owner);
    for (int k = 0, c_i = 0; k < n && !rc; k++) {
        const ds_delta_entry *e = &dm->entries[k];
        const int ci = e->coded ? c_i++ : -1; /* coded entries are in f->t in delta order */
        if (owner[k] != ctx->rank) continue;
        if (e->coded) {
            rc = ds_delta_write_signs(d, k, f->t[ci].bits);
            if (!rc) rc = ds_delta_write_scales(d, k, f->scales + f->t[ci].off);
        } else {
            void *buf = ds_malloc((size_t)ds_tinfo_bytes(&e->t) + 1);
            rc = ds_delta_read_dense(in->delta, k, e->t.dtype, buf);
            if (!rc) rc = ds_delta_write_dense(d, k, buf);
            free(buf);
        }
    }
    free(sizes);
    free(owner);
    rc = ds_delta_commit(d, ds_ctx_agree(ctx, rc), dm->base_sha256, NULL);
    if (rc) return rc;
    if (ctx->rank == 0) {
        rc = write_attrs(stage, o, c, dm, s);
        if (!rc && rename(stage, o->out) != 0) rc = ds_err(DS_EXIT_OUTPUT, "%s: cannot rename from %s", o->out, stage);
        if (rc) unlink(stage);
    }
    return ds_ctx_agree(ctx, rc);
}

static int write_report(const ds_ctx *ctx, const opts *o, const calib *c, const fit_summary *s, double first,
                        double last, double secs)
{
    json_t *r = NULL; /* built on rank 0, written there */
    if (ctx->rank == 0) {
        r = json_pack("{s:s, s:s, s:s, s:i, s:f, s:i, s:i, s:I, s:I, s:s, s:i, s:n, s:n, s:{s:I}, s:{}, s:f}",
                              "objective", ds_fit_objective_name(o->objective), "delta", o->delta, "output", o->out,
                              "steps", (int)o->steps, "lr", o->lr, "batch", (int)o->batch, "seq_len", (int)o->seq_len,
                              "train_windows", (json_int_t)c->n_train, "heldout_windows", (json_int_t)c->n_hold,
                              "calib_sha256", c->sha, "ranks", ctx->size, "objective_before", "objective_after",
                              "heldout", "windows", (json_int_t)c->n_hold, "train", "seconds", secs);
        if (c->n_hold) {
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
        if (isfinite(first)) json_object_set_new(tr, "batch_objective_first_step", json_real(first));
        if (isfinite(last)) json_object_set_new(tr, "batch_objective_last_step", json_real(last));
    }
    int rc = ds_out_write_json(ctx, o->report, r, JSON_INDENT(2) | JSON_REAL_PRECISION(10), 0);
    json_decref(r);
    return rc;
}

/* The objective of a held-out evaluation. */
static double held_objective(const opts *o, const held_stats *h) { return o->objective == DS_FIT_MSE ? h->mse : h->kl; }

static int run_fit(ds_ctx *ctx, const opts *o)
{
    int rc;
    if ((rc = ds_out_begin(ctx, o->out, o->overwrite))) return rc;
    if (o->report && (rc = ds_out_begin(ctx, o->report, o->overwrite))) return rc;
    inputs in;
    if ((rc = load_inputs(ctx, o, &in))) {
        inputs_free(&in);
        return rc;
    }
    calib c;
    if ((rc = ds_ctx_agree(ctx, calib_build(o, &in, &c)))) {
        calib_free(&c);
        inputs_free(&in);
        return rc;
    }
    ds_llama_threads_auto(ctx);
    ds_comm *comm;
    if ((rc = ds_comm_init(&comm, ctx, DS_COMM_MPI))) {
        calib_free(&c);
        inputs_free(&in);
        return rc;
    }
    ds_fitscales f;
    ds_fitscales_init(&f, &in.student, in.n_coded, in.coded, o->objective, o->lr);
    const int T = c.T;
    int64_t lo, hi;
    ds_shard_range(o->batch, ctx->rank, ctx->size, &lo, &hi);
    const int nloc = (int)(hi - lo), maxb = nloc > 0 ? nloc : 1;
    /* Held-out windows go in pieces of up to one batch per rank. */
    const int evb = (int)o->batch;
    ds_llama_act *sa = ds_llama_act_new(&in.student, evb > maxb ? evb : maxb, T);
    ds_llama_act *ta = ds_llama_act_new(&in.teacher, evb > maxb ? evb : maxb, T);
    if (!ctx->quiet)
        ds_printf0(ctx,
               "[fit-scales] %s: %d coded tensors, %lld scales; %lld calibration tokens, %lld train / %lld held-out "
               "windows of %d; objective %s, %ld steps, batch %ld, lr %g, %d rank(s)\n",
               o->delta, f.n, (long long)f.n_scales, (long long)c.stream_tokens, (long long)c.n_train,
               (long long)c.n_hold, T, ds_fit_objective_name(o->objective), o->steps, o->batch, o->lr, ctx->size);

    held_stats before, after;
    eval_heldout(ctx, comm, &c, &in.student, &in.teacher, sa, ta, evb, &before);

    /* Resume, or start at step 0. */
    char ckpath[4200] = "";
    ds_ckpt *rec = NULL;
    if (o->ckpt) {
        snprintf(ckpath, sizeof ckpath, "%s/%s", o->ckpt, CKPT_FILE);
        rec = ckpt_record(o, &in, &c, &f);
        rc = ds_ctx_agree(ctx, ctx->rank == 0 ? ds_ckpt_mkdir(o->ckpt) : 0);
        if (!rc) rc = ckpt_restore(ctx, ckpath, rec, &f, o);
    }

    int *tokens = ds_malloc((size_t)maxb * T * sizeof(int));
    double *red = ds_malloc((size_t)(f.n_scales + 2) * sizeof(double));
    epoch_cache ec = {-1, ds_malloc((size_t)c.n_train * sizeof(int64_t))};
    const float gscale = (float)(1.0 / ((double)o->batch * T));
    double first = NAN, last = NAN, t0 = ds_now();
    int stopped = 0;
    const int64_t start = f.step;
    ds_progress prog;
    ds_progress_init(&prog, ctx, "step", o->steps - start);
    for (int64_t step = start + 1; !rc && step <= o->steps; step++) {
        for (int b = 0; b < nloc; b++)
            memcpy(tokens + b * T, train_window(&c, (uint64_t)o->seed, &ec, (step - 1) * o->batch + lo + b),
                   (size_t)T * sizeof(int));
        ds_fitscales_zero_grad(&f);
        double loss = 0;
        if (nloc > 0) {
            const float *ref = ds_llama_forward(&in.teacher, ta, tokens, nloc, T);
            loss = ds_fitscales_accumulate(&f, sa, tokens, nloc, T, ref, gscale);
        }
        /* One reduction: scale gradients, objective, and whether any rank
         * was signalled (so that all ranks stop after the same step). */
        memcpy(red, f.grad, (size_t)f.n_scales * sizeof(double));
        red[f.n_scales] = loss;
        red[f.n_scales + 1] = ds_ckpt_stop_requested() != 0;
        ds_comm_allreduce_sum_f64(comm, red, red, (size_t)f.n_scales + 2);
        memcpy(f.grad, red, (size_t)f.n_scales * sizeof(double));
        ds_fitscales_adam_step(&f);
        last = red[f.n_scales] / ((double)o->batch * T);
        if (step == start + 1) first = last;
        ds_progress_step(&prog, step - start, "%s %.6f", ds_fit_objective_name(o->objective), last);
        stopped = red[f.n_scales + 1] > 0;
        if (o->ckpt && (stopped || step % o->every == 0) && step < o->steps)
            rc = ckpt_save(ctx, ckpath, rec, &f, o);
        if (stopped && step < o->steps) break;
        stopped = 0;
    }
    const double secs = ds_now() - t0;
    free(tokens);
    free(red);
    free(ec.perm);

    if (!rc && stopped) {
        ds_printf0(ctx, "[fit-scales] signal: checkpoint at step %lld written to %s; run again to resume\n",
                   (long long)f.step, ckpath);
        rc = DS_EXIT_CHECKPOINTED;
    }
    if (!rc) {
        eval_heldout(ctx, comm, &c, &in.student, &in.teacher, sa, ta, evb, &after);
        fit_summary s = {held_objective(o, &before), held_objective(o, &after), &before, &after};
        rc = write_output(ctx, o, &c, &in, &f, &s);
        if (!rc && o->report) rc = write_report(ctx, o, &c, &s, first, last, secs);
        if (!rc && !ctx->quiet && !c.n_hold)
            ds_printf0(ctx, "[fit-scales] wrote %s: %ld steps in %.1fs on %d rank(s); no held-out windows\n", o->out,
                       o->steps, secs, ctx->size);
        if (!rc && !ctx->quiet && c.n_hold) {
            ds_printf0(ctx,
                       "[fit-scales] wrote %s: %ld steps in %.1fs (%.3f s/step) on %d rank(s)\n"
                       "held-out (%lld windows of %d tokens)   %-12s %-12s %s\n"
                       "  KL(finetuned || student)         %-12.6f %-12.6f -\n"
                       "  logit MSE                        %-12.6f %-12.6f -\n"
                       "  NLL (nats/token)                 %-12.6f %-12.6f %.6f\n",
                       o->out, o->steps, secs, o->steps > start ? secs / (double)(o->steps - start) : 0.0,
                       ctx->size, (long long)c.n_hold, T, "before", "after", "finetuned", before.kl, after.kl,
                       before.mse, after.mse, before.nll, after.nll, before.nll_teacher);
        }
        /* Done: a later run with the same folder starts over. */
        if (!rc && o->ckpt && ctx->rank == 0) {
            unlink(ckpath);
            rmdir(o->ckpt);
        }
    }
    ds_ckpt_free(rec);
    ds_llama_act_free(sa);
    ds_llama_act_free(ta);
    ds_fitscales_free(&f);
    ds_comm_free(comm);
    calib_free(&c);
    inputs_free(&in);
    return rc;
}

static int run(ds_ctx *ctx, const opts *o)
{
    /* Every rank catches the signals from the start (Slurm signals all
     * tasks, mpiexec forwards SIGUSR1); the flag is read after each step. */
    ds_ckpt_signals saved;
    if (o->ckpt) ds_ckpt_signals_catch(&saved);
    int rc = run_fit(ctx, o);
    if (o->ckpt) ds_ckpt_signals_restore(&saved);
    return rc;
}

int ds_job_fit_scales(ds_ctx *ctx, int argc, char **argv)
{
    opts o;
    int rc = parse(ctx, argc, argv, &o);
    if (rc < 0) {
        usage(ctx);
        return 0;
    }
    if ((rc = ds_ctx_agree(ctx, rc))) return rc;
    return run(ctx, &o);
}
